"""What the benchmarks share: their own database, servers they start, medians, reporting."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy.engine import make_url

from tests.processes import start_process, stop_group

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get(
    "MOMO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MOMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PATH_TOKEN = "bench-path-token-6b1f0e9d8c7a5b4e3d2c"  # noqa: S105 - a throw-away path segment for a local run
RESULTS = ROOT / "bench" / "results"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bench_database() -> Iterator[str]:
    """A database of the benchmark's own on the PostgreSQL server, dropped afterwards."""
    name = f"momo_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name, drivername="postgresql+psycopg")
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def momo_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
    env.update(
        MOMO_DATABASE_URL=database_url,
        MOMO_BROKER_URL=REDIS_URL,
        MOMO_MPESA_PATH_TOKEN=PATH_TOKEN,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


class Server:
    """A process the benchmark started, in its own process group; stopped by pid only, and
    sent ``on_parent_death`` if the benchmark dies without stopping it (killed, or a
    SIGTERM): SIGKILL for gunicorn and Celery, whose workers then go by themselves,
    SIGTERM for granian, whose workers outlive a SIGKILLed main process."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        logdir: Path,
        on_parent_death: int = signal.SIGKILL,
    ) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        #: where this process's lines begin in a log an earlier one of the same name wrote
        self.log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = start_process(
                argv,
                on_parent_death=on_parent_death,
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        stop_group(self.proc)

    def pids(self) -> list[int]:
        """This process and its children (gunicorn and Celery workers fork)."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [self.proc.pid, *(int(p) for p in out.split())]


def rss_mb(pids: list[int]) -> float:
    """The largest resident set among ``pids``, in MB (one process, not their sum)."""
    largest = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]))
        except OSError:
            continue
    return largest / 1024


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


#: a sync worker waits on its commit about as long as it computes, so one worker more than
#: cores keeps the CPUs busy (the same default as the Procfile's WEB_CONCURRENCY advice)
WEB_WORKERS = (os.cpu_count() or 1) + 1


#: the WSGI servers a bench can serve a target under (bench.accept --servers)
SERVERS = ("gunicorn-sync", "gunicorn-gthread", "granian")
#: threads per worker for the threaded servers when a bench is not told otherwise
SERVER_THREADS = 4
BACKLOG = 2048


def factory(target: str) -> tuple[str, bool]:
    """gunicorn's ``module:call()`` spelling as granian's: the name, and whether to call it
    (granian's --factory) rather than serve the object itself."""
    if target.endswith("()"):
        return target[:-2], True
    return target, False


def server_argv(
    kind: str, target: str, port: int, *, workers: int, threads: int, backlog: int = BACKLOG
) -> list[str]:
    """The command line that serves the WSGI ``target`` under ``kind`` on 127.0.0.1:``port``.

    ``threads`` is gthread's --threads and granian's --blocking-threads (the threads of
    each worker that run the application); gunicorn-sync has one per worker."""
    if kind in ("gunicorn-sync", "gunicorn-gthread"):
        threaded = ["--worker-class", "gthread", "--threads", str(threads)]
        return [
            str(BIN / "gunicorn"),
            *(threaded if kind == "gunicorn-gthread" else []),
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--backlog",
            str(backlog),
            "--log-level",
            "warning",
            target,
        ]
    if kind == "granian":
        name, call = factory(target)
        return [
            str(BIN / "granian"),
            "--interface",
            "wsgi",
            *(["--factory"] if call else []),
            "--workers",
            str(workers),
            "--blocking-threads",
            str(threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backlog",
            str(backlog),
            # info: its lifecycle lines only (no access log), which serve() waits on
            "--log-level",
            "info",
            name,
        ]
    raise ValueError(f"unknown server {kind!r}: one of {', '.join(SERVERS)}")


def started_workers(server: Server) -> int:
    """How many of granian's workers have said they started."""
    with server.log.open("rb") as log:
        log.seek(server.log_start)
        return log.read().count(b"Started worker-")


def serve(
    kind: str,
    name: str,
    target: str,
    env: dict[str, str],
    logdir: Path,
    workers: int = WEB_WORKERS,
    threads: int = SERVER_THREADS,
) -> tuple[Server, str]:
    """``target`` under the server ``kind`` (one of SERVERS), answering: its Server and base
    URL. Any answer to a POST counts as ready (the API answers it 404)."""
    port = free_port()
    argv = server_argv(kind, target, port, workers=workers, threads=threads)
    server = Server(
        name,
        argv,
        env,
        logdir,
        on_parent_death=signal.SIGTERM if kind == "granian" else signal.SIGKILL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                break  # it stopped by itself (a target that cannot load): no use waiting
            try:
                requests.post(f"{base}/warmup", data=b"{}", timeout=5)
                if kind != "granian" or started_workers(server) >= workers:
                    # granian ignores a SIGTERM that finds a worker still loading the
                    # application, so a server it may have to stop must be fully up
                    return server, base
                time.sleep(0.2)
            except (requests.ConnectionError, requests.Timeout):
                # not listening yet, or a worker still busy starting (a loaded machine)
                time.sleep(0.2)
    except BaseException:
        server.stop()  # never leave a server behind the caller cannot stop
        raise
    server.stop()
    raise RuntimeError(f"{name} ({kind}) did not start; see {server.log}")


def gunicorn(
    name: str,
    target: str,
    env: dict[str, str],
    logdir: Path,
    workers: int = WEB_WORKERS,
    threads: int = 1,
) -> tuple[Server, str]:
    """gunicorn with ``workers`` sync workers, or gthread workers when ``threads`` > 1."""
    kind = "gunicorn-gthread" if threads > 1 else "gunicorn-sync"
    return serve(kind, name, target, env, logdir, workers=workers, threads=threads)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def have_wrk() -> bool:
    return shutil.which("wrk") is not None
