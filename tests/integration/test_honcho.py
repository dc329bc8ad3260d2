"""The Procfile under honcho, as README runs it: `honcho run momo db upgrade`, then
`honcho start web api worker beat flower` in a folder holding the Procfile and a `.env`,
against a fresh PostgreSQL database and Redis database 7 (flushed first). A C2B
confirmation posted to the web process is credited, the balance is read from the api
process, Flower's API (with the login it asks for) shows the task that credited it, and a
SIGTERM to honcho stops every process it started.

honcho gives each process a PORT of its own (5000, 5100, ... in the order started); the
Procfile ignores it under honcho and binds the ports README names, here moved to free ones
through WEB_PORT, API_PORT and FLOWER_PORT in `.env`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.conftest import ROOT, sample_bytes
from tests.integration.conftest import (
    PATH_TOKEN,
    REDIS_URL,
    VENV_BIN,
    _unavailable,
    free_port,
    redis_only,
    wait_healthy,
    wait_until,
)
from tests.integration.test_granian import accepted_callbacks
from tests.processes import process_table, start_process

# README's Procfile set-up, on Redis whatever the broker under test
pytestmark = [pytest.mark.integration, redis_only]

#: what README tells an operator to start (every Procfile process but `release`)
PROCESSES = ("web", "api", "worker", "beat", "flower")
#: a Redis database no other test uses: honcho's worker must not take their tasks
REDIS_DB = 7
#: Flower's login (FLOWER_BASIC_AUTH), which its API asks for
FLOWER_LOGIN = ("it-ops", "flower-password-4e1d9c27b8a3")


@pytest.fixture
def honcho_redis_url() -> str:
    url = f"{REDIS_URL.rpartition('/')[0]}/{REDIS_DB}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    client.flushdb()
    return url


def process_groups_under(pid: int) -> set[int]:
    """The process groups of ``pid``'s descendants: honcho starts each Procfile process in a
    session (and group) of its own, so signalling honcho's group would miss them."""
    table = process_table()
    groups: set[int] = set()
    parents = {pid}
    while parents:
        children = {child for child, stat in table.items() if stat.ppid in parents}
        groups |= {table[child].group for child in children}
        parents = children
    return groups


def members(groups: set[int]) -> list[int]:
    return [pid for pid, stat in process_table().items() if stat.group in groups]


def listening_addresses(port: int) -> set[str]:
    """The local addresses something listens on at TCP ``port`` (IPv4 in dotted form)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, _, state = line.split()[1:4]
                address, _, hex_port = local.partition(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                if len(address) == 8:
                    found.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


@dataclass
class Honcho:
    proc: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]
    admin_token: str
    groups: set[int] = field(default_factory=set)

    def base(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.base('api')}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
            **kwargs,
        )

    def flower_tasks(self, name: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.base('flower')}/api/tasks",
            params={"taskname": name},
            auth=FLOWER_LOGIN,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return list(response.json().values())

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM to honcho, as a terminal's Ctrl-C or a supervisor would: it stops its
        processes and exits."""
        self.groups |= process_groups_under(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextmanager
def honcho_started(workdir: Path, env: dict[str, str], ports: dict[str, int]) -> Iterator[Honcho]:
    """README's steps in ``workdir``: migrate, make an admin token, start the processes.
    Whatever happens, honcho and every process under it are gone on leaving."""
    honcho = str(VENV_BIN / "honcho")
    migrated = subprocess.run(
        [honcho, "run", "momo", "db", "upgrade"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    made = subprocess.run(
        [honcho, "run", "momo", "token", "create", "--name", "it-honcho", "--role", "admin"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    log = workdir / "honcho.log"
    with log.open("ab") as out:
        # a SIGKILLed honcho leaves the processes it started (each in a session of its
        # own) running; on SIGTERM it stops them all
        proc = start_process(
            [honcho, "start", *PROCESSES],
            on_parent_death=signal.SIGTERM,
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Honcho(proc, log, ports, made.stdout.strip().splitlines()[-1], {proc.pid})
    try:
        yield running
    finally:
        running.groups |= process_groups_under(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        for group in running.groups:
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        proc.wait(timeout=10)
        # shown by pytest when the test failed
        print(f"--- honcho output ---\n{running.output()[-20000:]}")


def test_honcho_runs_the_procfile_and_credits_a_payment(
    fresh_pg_url: str, honcho_redis_url: str, tmp_path: Path
) -> None:
    ports = {"web": free_port(), "api": free_port(), "flower": free_port()}
    shutil.copy(ROOT / "Procfile", tmp_path / "Procfile")
    (tmp_path / ".env").write_text(
        "\n".join(
            [
                f"MOMO_DATABASE_URL={fresh_pg_url}",
                f"MOMO_BROKER_URL={honcho_redis_url}",
                f"MOMO_MPESA_PATH_TOKEN={PATH_TOKEN}",
                f"MOMO_SPOOL_DIR={tmp_path / 'spool'}",
                f"MOMO_INSTANCE_PATH={tmp_path / 'instance'}",
                # beat queues a sweep every second: Flower is seen watching before the callback
                "MOMO_SWEEP_INTERVAL_SECONDS=1",
                f"WEB_PORT={ports['web']}",
                f"API_PORT={ports['api']}",
                f"FLOWER_PORT={ports['flower']}",
                "FLOWER_BASIC_AUTH={}:{}".format(*FLOWER_LOGIN),
                f"BEAT_SCHEDULE={tmp_path / 'beat-schedule'}",
                "WEB_CONCURRENCY=1",
                "API_CONCURRENCY=1",
                "WORKER_CONCURRENCY=1",
                "",
            ]
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOMO_", "HONCHO_", "FLOWER_")) and k != "PORT"
    }
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")

    with honcho_started(tmp_path, env, ports) as honcho:
        wait_healthy(honcho.base("web"))
        wait_healthy(honcho.base("api"))
        # the ports README names (moved here by .env), on loopback only, not honcho's PORT
        for name, port in ports.items():
            assert wait_until(lambda port=port: listening_addresses(port)) == {"127.0.0.1"}, name

        def swept() -> bool:
            try:
                tasks = honcho.flower_tasks("momo.sweep_inbox")
            except requests.ConnectionError:
                return False
            return any(task["state"] == "SUCCESS" for task in tasks)

        # beat queued a sweep, the worker ran it and Flower's API saw it succeed
        wait_until(swept, timeout=90, interval=0.5)
        anonymous = requests.get(f"{honcho.base('flower')}/api/tasks", timeout=10)
        assert anonymous.status_code == 401, anonymous.text

        made = honcho.api(
            "POST",
            "/customers",
            json={"account_number": "ACC1042", "name": "Wanjiku", "phones": ["0712 345 678"]},
        )
        assert made.status_code == 201, made.text
        callback = requests.post(
            f"{honcho.base('web')}/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation",
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert callback.status_code == 200, callback.text
        assert callback.json()["ResultCode"] == 0

        def balance() -> str:
            response = honcho.api("GET", "/customers/ACC1042")
            assert response.status_code == 200, response.text
            return str(response.json()["balance"])

        wait_until(lambda: balance() == "1500.00", timeout=60)
        payments = honcho.api("GET", "/payments", params={"status": "associated"}).json()
        assert [p["code"] for p in payments["items"]] == ["TKQ4A91B2C"], json.dumps(payments)
        wait_until(
            lambda: any(
                task["state"] == "SUCCESS" for task in honcho.flower_tasks("momo.process_inbox")
            ),
            timeout=30,
        )

        # web counts in the directory its line made (one of its own, beside the api's)
        metrics = requests.get(f"{honcho.base('web')}/metrics", timeout=30).text
        assert accepted_callbacks(metrics) == 1, metrics
        assert list((tmp_path / "instance" / "metrics-web").glob("counter_*.db"))
        assert list((tmp_path / "instance" / "metrics-api").glob("*.db"))
        # `momo check` as README runs it leaves its result where the api's /metrics reads it
        checked = subprocess.run(
            [str(VENV_BIN / "honcho"), "run", "momo", "check"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        shown = requests.get(f"{honcho.base('api')}/metrics", timeout=30).text
        assert "\nmomo_check_ok 1.0\n" in shown, shown

        honcho.stop()
        # each line's shell ends with honcho; what it started finishes its own graceful stop
        wait_until(lambda: not members(honcho.groups), timeout=30)
        output = honcho.output()
        for name in PROCESSES:
            assert f"{name}.1 stopped" in output, name
