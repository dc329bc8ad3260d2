"""A server started through tests.processes ends, with every process under it, when the
process that started it is SIGKILLed: as pytest's servers do when pytest is killed.

A small Python parent starts real servers through ``start_process`` and sleeps; the test waits
until each server and its children are up, notes every process under the parent (pid and
start time, from /proc), SIGKILLs the parent and waits until none of them is left. What is
left whatever happens is SIGKILLed by pid at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.deploy_units import server_options
from tests.integration.conftest import (
    VENV_BIN,
    _database,
    free_port,
    wait_until,
)
from tests.integration.test_granian import momo_env
from tests.processes import process_table, start_process

pytestmark = pytest.mark.integration

#: the parent: starts each [argv, signal name, log, from a thread of its own] it is given,
#: says so, and waits
PARENT = """\
import json, signal, sys, threading, time
from tests.processes import start_process
def run(argv, sig, log):
    with open(log, "ab") as out:
        start_process(argv, on_parent_death=signal.Signals[sig], stdout=out, stderr=out)
for argv, sig, log, threaded in json.loads(sys.argv[1]):
    if threaded:
        thread = threading.Thread(target=run, args=(argv, sig, log))
        thread.start()
        thread.join()  # the thread has ended: the server must not end with it
    else:
        run(argv, sig, log)
print("started", flush=True)
time.sleep(600)
"""

#: how long the processes may take to go once the parent is gone: gunicorn's sync workers
#: look at their parent pid every half --timeout (15 s), honcho SIGKILLs after 5 s, the
#: watchdog after 30 s
GONE_WITHIN = 90.0


@dataclass(frozen=True)
class Process:
    pid: int
    started: int  # clock ticks after boot: tells a pid's process from a later one's
    command: str

    def running(self) -> bool:
        """Whether this very process still runs (not a zombie, not a later one's pid)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone
            return False
        return fields[0] not in ("Z", "X") and int(fields[19]) == self.started


def descendants(root: int) -> list[Process]:
    """Every process under ``root``, read from /proc."""
    table = process_table()
    found: list[Process] = []
    parents = {root}
    while parents:
        children = {pid for pid, stat in table.items() if stat.ppid in parents}
        for pid in sorted(children):
            with suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(Process(pid, table[pid].started, command.decode(errors="replace")))
        parents = children
    return found


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A migrated database for this module's servers, dropped after."""
    databases = _database()
    url = next(databases)
    subprocess.run(
        [str(VENV_BIN / "momo"), "db", "upgrade"],
        env={"PATH": os.environ["PATH"], "MOMO_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    yield url
    next(databases, None)


@dataclass
class Case:
    """The servers a parent starts, how many processes they make at least, and when they
    are up (from the logs in the test's folder and the processes under the parent)."""

    servers: list[tuple[list[str], str, str]]  # argv, signal on the parent's death, log
    processes: int
    up: Callable[[Path, list[Process]], bool]
    threaded: bool = False  # started from a thread of the parent's that has ended since


def log_says(tmp_path: Path, name: str, text: str, times: int = 1) -> bool:
    log = tmp_path / name
    return log.exists() and log.read_text(errors="replace").count(text) >= times


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def worker_argv(queue: str) -> list[str]:
    # a queue of its own: this worker must never take another test's (or session's) task
    return [
        str(VENV_BIN / "momo"),
        "worker",
        "--concurrency",
        "2",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def granian_argv(port: int, target: str = "momo.wsgi:web") -> list[str]:
    return [
        str(VENV_BIN / "granian"),
        *("--interface", "wsgi", "--factory", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "2", "--blocking-threads", "4", target),
    ]


def case(kind: str, tmp_path: Path, queue: str) -> Case:
    port = free_port()
    if kind in ("gunicorn-gthread", "gunicorn-sync"):
        # gthread as deploy/ and the stacks serve; sync as test_edge and the silent database
        options = server_options("momo-web") if kind == "gunicorn-gthread" else []
        argv = [str(VENV_BIN / "gunicorn"), *options, "--workers", "2"]
        argv += ["--bind", f"127.0.0.1:{port}", "momo.wsgi:app()"]
        return Case(
            [(argv, "SIGKILL", "gunicorn.log")],
            3,
            lambda _, tree: len(tree) >= 3 and answers(f"http://127.0.0.1:{port}/healthz"),
        )
    if kind in ("celery-worker", "celery-worker-from-a-thread"):
        return Case(
            [(worker_argv(queue), "SIGKILL", "worker.log")],
            3,
            lambda path, tree: len(tree) >= 3 and log_says(path, "worker.log", "ready."),
            threaded=kind == "celery-worker-from-a-thread",
        )
    if kind == "granian":
        return Case(
            [(granian_argv(port), "SIGTERM", "granian.log")],
            3,
            lambda path, _: log_says(path, "granian.log", "Started worker-", times=2),
        )
    if kind == "granian-still-loading":
        # its workers held inside the application's factory (MOMO_TEST_GO_FILE never
        # comes): the SIGTERM that granian loses
        target = "tests.integration.test_granian:web_after_go"
        return Case(
            [(granian_argv(port, target), "SIGTERM", "granian.log")],
            3,
            lambda path, tree: (
                len(tree) >= 3 and log_says(path, "granian.log", "Spawning worker-", times=2)
            ),
        )
    assert kind == "honcho"
    (tmp_path / "Procfile").write_text(
        f"web: {' '.join(granian_argv(port))}\nworker: {' '.join(worker_argv(queue))}\n"
    )
    return Case(
        [([str(VENV_BIN / "honcho"), "start"], "SIGTERM", "honcho.log")],
        # honcho, granian and its 2 workers, the Celery worker and its 2 children
        7,
        lambda path, _: (
            log_says(path, "honcho.log", "Started worker-", times=2)
            and log_says(path, "honcho.log", "ready.")
        ),
    )


@pytest.mark.parametrize(
    "kind",
    [
        "gunicorn-gthread",
        "gunicorn-sync",
        "celery-worker",
        "celery-worker-from-a-thread",
        "granian",
        "granian-still-loading",
        "honcho",
    ],
)
def test_every_process_of_a_server_ends_when_the_process_that_started_it_is_killed(
    kind: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    queue = f"momo-test-processes-{uuid.uuid4().hex[:8]}"
    servers = case(kind, tmp_path, queue)
    env = momo_env(
        database_url,
        redis_url,
        tmp_path,
        MOMO_TEST_GO_FILE=str(tmp_path / "go"),
        PATH=f"{VENV_BIN}:{os.environ['PATH']}",
        PYTHONPATH=str(ROOT),
    )
    specs = [
        (argv, sig, str(tmp_path / log), servers.threaded) for argv, sig, log in servers.servers
    ]
    parent = start_process(
        [sys.executable, "-c", PARENT, json.dumps(specs)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    seen: list[Process] = []
    assert parent.stdout is not None
    try:
        assert parent.stdout.readline() == b"started\n"
        wait_until(lambda: servers.up(tmp_path, descendants(parent.pid)), timeout=90, interval=0.2)
        seen = descendants(parent.pid)
        assert len(seen) >= servers.processes, seen

        parent.kill()
        parent.wait(timeout=10)

        def left() -> list[Process]:
            return [p for p in seen if p.running()]

        with suppress(AssertionError):
            wait_until(lambda: not left(), timeout=GONE_WITHIN, interval=0.2)
        assert left() == [], f"still running once their parent was killed: {left()}"
    finally:
        if parent.poll() is None:
            seen += descendants(parent.pid)
            parent.kill()
            parent.wait(timeout=10)
        parent.stdout.close()
        for process in seen:
            if process.running():
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
