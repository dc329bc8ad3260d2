"""The chaos run: M-PESA callbacks through a real momo while its parts are broken on purpose.

    .venv/bin/python -m bench.chaos [--callbacks N] [--short] [--seed S] [--json PATH] [--keep]

It starts its own PostgreSQL, Redis, gunicorn (``momo.wsgi:app()``, 2 workers, otherwise
with deploy/momo-web.service's options: threaded workers), on a listening socket the run
opens once and holds, handed over as systemd's socket activation does:
deploy/momo-web.socket), two Celery worker processes (``momo worker --concurrency
1``, so one can be killed while the other keeps working, like two hosts) and beat, all on
free loopback ports with their data under a temporary directory; it never touches the
machine's shared services. It seeds customers, then sends a paced stream of C2B
confirmations from 8 sender threads (about 10% of them sent twice, some of those
concurrently) while a fault thread, spaced through the stream:

1. ``kill -9``s a worker's process group while it holds claimed inbox rows (seen in
   ``pg_locks``, each process has its own ``application_name``), then restarts it (twice
   per round);
2. stops Redis for a few seconds and starts it again, and once FLUSHALLs it;
3. restarts PostgreSQL (``pg_ctl stop -m fast``, 4 s down, start): callbacks answered then
   must be spooled by the webhook, acknowledged, and credited later;
4. restarts the web server on the socket the run holds (SIGTERM to the gunicorn master,
   which lets its workers finish their requests): callbacks sent meanwhile wait in the
   socket's backlog and the new gunicorn answers them, so none may go unanswered;
5. puts a poison record in the spool: during a PostgreSQL outage an STK result whose
   CheckoutRequestID (the inbox row's code) holds a NUL is posted, and another is
   written into the spool file of a host that no longer exists, as a webhook that did
   not check the text would have; good callbacks are spooled around them. Afterwards
   both must be rejected inbox rows (the adapter refuses the posted one's reference,
   ``invalid_field``; the drainer the written one's text, ``unstorable_text``) while
   every good callback drains and is credited.
6. makes PostgreSQL silent for a few seconds: momo's processes reach it through a
   loopback proxy of the bench's own, which then keeps every connection open and drops
   every byte (a partition, a failover whose old address went quiet). Callbacks answered
   then must come from the spool, within the write deadline: none unanswered or 5xx.

``--short`` (CI) runs one round over ~75 s; the full form runs two rounds over ~200 s, the
second harsher: Redis SIGTERM instead of SIGKILL, ``pg_ctl stop -m immediate`` (a crash
and WAL recovery), gunicorn's whole process group SIGKILLed the moment a worker holds an
accepted callback (seen in ``/proc/net/tcp``): a crash, which cuts the requests its
workers held at that instant, while the ones queued on the socket are answered. Run it
from the project root (``bench`` is not an installed package).

Afterwards every callback answered 5xx or not answered at all is sent again until it is
acknowledged (bounded), the run waits for the inbox and the spool to drain, and reads
the books from the database: payments stored, credited (a net ledger credit equal to the
amount, on the right customer), lost (acknowledged, not credited), doubled (netting more
than the amount, or stored twice), ledger mismatches (balance != sum of entries), plus
``momo check``. It prints one summary line starting ``chaos: sent=`` and writes the same
figures (and more) as JSON:

- ``sent``: callbacks posted in the stream, duplicates included; ``acked``: answered 200
  with ``ResultCode`` 0; ``answered_5xx``: answered with a server error;
- ``unanswered``: no answer at all (refused, cut, timed out; the JSON splits them by
  cause), of which ``cut_by_crash``: in flight when a crash fault SIGKILLed the web
  server, and failed as a cut connection. No server can answer those (only a resend, or
  reconciling against the provider's records, brings them in); every other unanswered
  callback is one momo refused or dropped, and fails the run;
- ``resent_ok``: of those answered 5xx or not at all, how many were acknowledged when sent
  again (each must be);
- ``stored``, ``credited``: payments in the database, and those netting exactly their
  amount on the right customer; ``lost``: acknowledged and not credited; ``doubled``:
  netting more than the amount, or stored twice; ``mismatches``: customers whose balance
  is not the sum of their ledger entries;
- ``check``: ``momo check``'s verdict; ``spooled``: inbox rows that came through the spool;
  ``faults``: the faults that ran; ``elapsed``: seconds from the start to the books.

Exit status 0 only when nothing was lost, doubled or mismatched, no callback went
unanswered but those cut by a crash, none failed around the silent database
(``failed_in_silence``), every failed callback succeeded when sent again, ``momo check``
passed and every fault ran.

Like systemd's ``Restart=always`` (deploy/), a momo process that dies by itself is
restarted; each such exit is counted (``unexpected_exits``) and shown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import redis
import requests
import urllib3

from tests.deploy_units import server_options
from tests.processes import start_process
from tests.silent_proxy import SilentProxy

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SAMPLE = ROOT / "tests" / "samples" / "mpesa" / "c2b_confirmation_paybill_plain.json"
STK_FAILURE = ROOT / "tests" / "samples" / "mpesa" / "stk_callback_cancelled.json"
DEFAULT_JSON = ROOT / "bench" / "results" / "chaos.json"

CUSTOMERS = 200
SENDERS = 8
WORKERS = 2
#: the share of payments whose callback is sent twice; half of those concurrently
DUPLICATE_SHARE = 0.10
#: one round of faults; the full form runs two rounds
FAULT_PLAN = (
    "worker_kill",
    "redis_stop",
    "pg_restart",
    "worker_kill",
    "web_restart",
    "poison_spool",
    "redis_flush",
    "pg_silent",
)
ALL_FAULTS = (
    "worker_kill",
    "redis_stop",
    "redis_flush",
    "pg_restart",
    "web_restart",
    "poison_spool",
    "pg_silent",
)
OUTAGE_SECONDS = 4.0
#: longer than the webhook's write deadline (MOMO_DB_WRITE_TIMEOUT_SECONDS, 3 s)
SILENT_SECONDS = 6.0
RESEND_TRIES = 15
DRAIN_TIMEOUT = 120.0
REQUEST_TIMEOUT = (3.0, 20.0)
#: callbacks the held web socket queues while no gunicorn accepts (the kernel caps it at
#: net.core.somaxconn); a restart takes a few seconds at ~25 callbacks/s
WEB_BACKLOG = 2048
#: systemd's socket activation (sd_listen_fds(3)), done by hand: the inherited socket moved to
#: fd 3, LISTEN_FDS=1 and LISTEN_PID naming this process, which then becomes gunicorn (exec
#: keeps the pid)
SOCKET_ACTIVATE = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)

_T0 = time.monotonic()
_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready within {timeout:.0f}s")
        time.sleep(interval)


class HarnessError(RuntimeError):
    """The chaos run itself could not do something (not a finding about momo)."""


# --- the services ---------------------------------------------------------------------------


class Stack:
    """PostgreSQL, Redis, gunicorn, Celery workers and beat of our own, under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.run_dir = tmp / "run"
        self.pg_dir = tmp / "pg"
        self.pg_data = self.pg_dir / "data"
        self.pg_sock = self.pg_dir / "sock"
        self.redis_dir = tmp / "redis"
        self.spool_dir = tmp / "spool"
        self.pg_port, self.redis_port = free_ports(2)
        #: the web's listening socket, opened once and held for the whole run as systemd's
        #: momo-web.socket holds it (deploy/): gunicorn is started and restarted on it, so a
        #: callback that arrives while no gunicorn runs waits in the accept backlog
        self.web_socket = socket.create_server(("127.0.0.1", 0), backlog=WEB_BACKLOG)
        self.web_port = int(self.web_socket.getsockname()[1])
        self.path_token = secrets.token_hex(16)
        self.db_url = f"postgresql://postgres@127.0.0.1:{self.pg_port}/momo"
        #: momo's processes reach PostgreSQL through it (the bench's own checks do not)
        self.pg_proxy = SilentProxy("127.0.0.1", self.pg_port)
        self.broker_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.webhook = f"{self.base}/webhooks/mpesa/{self.path_token}/c2b/confirmation"
        self.admin_token = ""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        #: services stopped on purpose (a fault in progress): not restarted by supervise()
        self.down: set[str] = set()
        self.lock = threading.RLock()
        self.unexpected_exits: list[dict[str, Any]] = []
        self.as_postgres: list[str] = (
            ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
        self.env.update(
            {
                "MOMO_DATABASE_URL": self.db_url.replace(
                    f":{self.pg_port}/", f":{self.pg_proxy.port}/"
                ),
                "MOMO_BROKER_URL": self.broker_url,
                "MOMO_MPESA_PATH_TOKEN": self.path_token,
                "MOMO_SWEEP_AFTER_SECONDS": "3",
                "MOMO_SWEEP_INTERVAL_SECONDS": "1",
                "MOMO_SPOOL_DIR": str(self.spool_dir),
                "MOMO_SPOOL_DRAIN_SECONDS": "1",
                "MOMO_INSTANCE_PATH": str(self.run_dir / "instance"),
                "PYTHONUNBUFFERED": "1",
            }
        )

    # -- plumbing

    def _env(self, app_name: str) -> dict[str, str]:
        # libpq reads PGAPPNAME: pg_stat_activity then tells whose transaction is open.
        return {**self.env, "PGAPPNAME": app_name}

    def _spawn(
        self, name: str, argv: list[str], app_name: str, pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            # its own process group (signal the whole of it), SIGKILLed if the run dies: the
            # workers of gunicorn and Celery go by themselves, Redis is one process
            proc = start_process(
                argv,
                env=self._env(app_name),
                cwd=self.run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=pass_fds,
            )
        self.procs[name] = proc
        return proc

    def _signal_group(self, name: str, sig: int) -> None:
        proc = self.procs.get(name)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)

    def _stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop one of our processes: ``sig`` to its group, SIGKILL if it lingers."""
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(name, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(name, signal.SIGKILL)
                proc.wait(timeout=10)
        # the leader may be gone while children linger: make sure the group is empty
        self._signal_group(name, signal.SIGKILL)

    def log_size(self, name: str) -> int:
        path = self.logs / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def log_text(self, name: str, offset: int = 0) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def momo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "momo"), *args],
            env=self._env("chaos-cli"),
            cwd=self.run_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def connect(self, timeout: int = 3) -> psycopg.Connection[Any]:
        return psycopg.connect(self.db_url, connect_timeout=timeout, autocommit=True)

    # -- PostgreSQL

    def _pg_ctl(self, *args: str, timeout: float = 90) -> None:
        with (self.logs / "pg_ctl.log").open("ab") as log:
            subprocess.run(
                [*self.as_postgres, "pg_ctl", "-D", str(self.pg_data), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.pg_dir,
                start_new_session=True,
                timeout=timeout,
                check=True,
            )

    def init_postgres(self) -> None:
        for d in (self.pg_dir, self.pg_sock):
            d.mkdir(parents=True, exist_ok=True)
        pg_log = self.logs / "postgres.log"
        pg_log.touch()
        if self.as_postgres:
            for path in (self.pg_dir, self.pg_sock, pg_log):
                shutil.chown(path, "postgres", "postgres")
        with (self.logs / "pg_ctl.log").open("ab") as log:
            subprocess.run(
                [
                    *self.as_postgres,
                    "initdb",
                    "-D",
                    str(self.pg_data),
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.pg_dir,
                check=True,
                timeout=120,
            )

    def start_postgres(self) -> None:
        options = (
            f"-p {self.pg_port} -k {self.pg_sock} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200"
        )
        self._pg_ctl(
            "-l", str(self.logs / "postgres.log"), "-o", options, "-w", "-t", "60", "start"
        )

    def stop_postgres(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pg_data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postgres_alive(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait_postgres(self, database: str = "momo", timeout: float = 60) -> None:
        url = self.db_url.rsplit("/", 1)[0] + f"/{database}"

        def ready() -> bool:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        wait_for(ready, timeout, "PostgreSQL")

    def create_database(self) -> None:
        self.wait_postgres("postgres")
        url = self.db_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE momo")

    # -- Redis

    def start_redis(self) -> None:
        self.redis_dir.mkdir(exist_ok=True)
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.redis_dir),
                "--daemonize",
                "no",
            ],
            "chaos-redis",
        )
        client = self.redis()
        wait_for(client.ping, 30, "Redis")

    def redis(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.redis_port, socket_timeout=3, socket_connect_timeout=3
        )

    # -- momo

    def start_web(self) -> None:
        """gunicorn on the held socket, handed over as systemd's socket activation does (no
        ``--bind``: gunicorn reads ``LISTEN_FDS``), so the run starts it as deploy/ does."""
        fd = self.web_socket.fileno()
        self._spawn(
            "web",
            [
                sys.executable,
                "-c",
                SOCKET_ACTIVATE,
                str(fd),
                str(VENV_BIN / "gunicorn"),
                *server_options("momo-web"),
                # the run's own: fewer workers, a shorter stop, webhooks and API on one port
                "--workers",
                "2",
                "--graceful-timeout",
                "10",
                "--timeout",
                "60",
                "momo.wsgi:app()",
            ],
            "chaos-web",
            pass_fds=(fd,),
        )

        def healthy() -> bool:
            return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200

        wait_for(healthy, 60, "gunicorn")

    def stop_web(self) -> None:
        """Gracefully: SIGTERM to the gunicorn master, which lets its workers finish."""
        proc = self.procs.get("web")
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._signal_group("web", signal.SIGKILL)
                proc.wait(timeout=10)
        self._signal_group("web", signal.SIGKILL)

    def accepted_connections(self) -> int:
        """Open connections on the web port that a server process has accepted (Linux: in
        /proc/net/tcp one still in the listen queue has no inode yet)."""
        suffix = f":{self.web_port:04X}"
        held = 0
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                # local address, state 01 (ESTABLISHED), inode
                if fields[1].endswith(suffix) and fields[3] == "01" and fields[9] != "0":
                    held += 1
        return held

    def worker_names(self) -> list[str]:
        return [f"w{n}" for n in range(1, WORKERS + 1)]

    def start_worker(self, name: str, wait: bool = True) -> None:
        offset = self.log_size(name)
        self._spawn(
            name,
            [
                str(VENV_BIN / "momo"),
                "worker",
                "--concurrency",
                "1",
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            f"chaos-worker-{name}",
        )
        if wait:
            wait_for(partial(self._ready, name, offset), 90, f"worker {name}")

    def _ready(self, name: str, offset: int = 0) -> bool:
        return "ready." in self.log_text(name, offset)

    def start_beat(self) -> None:
        self._spawn(
            "beat",
            [str(VENV_BIN / "momo"), "beat", "--schedule", str(self.run_dir / "beat")],
            "chaos-beat",
        )

    def start_all(self) -> None:
        for d in (self.logs, self.run_dir, self.spool_dir):
            d.mkdir(parents=True, exist_ok=True)
        say(f"logs: {self.logs}")
        self.init_postgres()
        self.start_postgres()
        self.create_database()
        say(f"postgres on 127.0.0.1:{self.pg_port} (data {self.pg_data})")
        self.pg_proxy.start()
        say(f"momo reaches it through a proxy that can go silent, 127.0.0.1:{self.pg_proxy.port}")
        self.start_redis()
        say(f"redis on 127.0.0.1:{self.redis_port}")
        say(self.momo("db", "upgrade").stdout.strip())
        token = self.momo("token", "create", "--name", "chaos", "--role", "admin")
        self.admin_token = token.stdout.strip().splitlines()[-1]
        self.start_web()
        options = " ".join(server_options("momo-web"))
        say(f"gunicorn {options} momo.wsgi:app() on {self.base} (2 workers)")
        for name in self.worker_names():
            self.start_worker(name, wait=False)
        for name in self.worker_names():
            wait_for(partial(self._ready, name), 90, f"worker {name}")
        say(f"celery workers {', '.join(self.worker_names())} ready (concurrency 1 each)")
        self.start_beat()
        say("beat started (sweeper every 1s, rows pending over 3s re-queued)")

    def supervise(self) -> None:
        """Restart a process that died by itself (as systemd's Restart=always would)."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            for name, proc in list(self.procs.items()):
                if name in self.down or proc.poll() is None:
                    continue
                self._signal_group(name, signal.SIGKILL)
                tail = self.log_text(name, max(0, self.log_size(name) - 1500))
                self.unexpected_exits.append(
                    {"process": name, "returncode": proc.returncode, "at": _now()}
                )
                say(f"UNEXPECTED EXIT: {name} exited with {proc.returncode}; restarting it")
                say(f"  last output of {name}: {tail[-600:]!r}")
                self._restart(name)
            if "postgres" not in self.down and not self.postgres_alive():
                self.unexpected_exits.append({"process": "postgres", "at": _now()})
                say("UNEXPECTED EXIT: postgres is not running; starting it")
                self.start_postgres()
        finally:
            self.lock.release()

    def _restart(self, name: str) -> None:
        if name == "web":
            self.start_web()
        elif name == "beat":
            self.start_beat()
        elif name == "redis":
            self.start_redis()
        else:
            self.start_worker(name)

    def shutdown(self) -> None:
        with self.lock:
            self.down.update([*self.procs, "postgres"])
            self.stop_web()
            for name in [n for n in self.procs if n not in ("web", "redis")]:
                self._stop(name, signal.SIGTERM, timeout=10)
            self._stop("redis", signal.SIGKILL)
            if self.pg_data.exists():
                with contextlib.suppress(Exception):
                    self.stop_postgres("immediate")
                pid = self.postmaster_pid()
                if pid is not None and self.postgres_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self.web_socket.close()


def _now() -> float:
    return round(time.monotonic() - _T0, 2)


# --- the callbacks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    code: str
    account: str
    amount_minor: int
    body: bytes


@dataclass
class Send:
    index: int
    phase: str  # stream | resend
    outcome: str  # acked | 5xx | 4xx | unanswered
    status: int | None
    detail: str
    at: float  # when the answer (or the failure) came
    started: float = 0.0
    #: why an unanswered one got no answer: refused (no connection), cut (the connection
    #: closed or reset without an answer, or before its body), timeout, or error
    cause: str = ""


def unanswered_cause(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        # the answer's head came and the connection closed before its body: a threaded
        # worker writes the two apart, and a crash can fall between them
        return "cut"
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError names its cause
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return "refused"
        if isinstance(reason, urllib3.exceptions.ProtocolError | ConnectionError):
            return "cut"
    return "error"


def _code(rng: random.Random, taken: set[str]) -> str:
    alphabet = string.ascii_uppercase + string.digits
    while True:
        code = rng.choice(string.ascii_uppercase) + "".join(rng.choices(alphabet, k=9))
        if any(c.isdigit() for c in code) and code not in taken:
            taken.add(code)
            return code


def make_customers(rng: random.Random) -> list[tuple[str, str]]:
    phones: set[str] = set()
    customers = []
    for n in range(1, CUSTOMERS + 1):
        while True:
            phone = "2547" + rng.choice("012") + "".join(rng.choices(string.digits, k=7))
            if phone not in phones:
                phones.add(phone)
                break
        customers.append((f"CHX{n:04d}", phone))
    return customers


def make_payments(
    rng: random.Random, count: int, customers: list[tuple[str, str]]
) -> list[Payment]:
    template = json.loads(SAMPLE.read_text())
    taken: set[str] = set()
    nairobi = ZoneInfo("Africa/Nairobi")
    payments = []
    for _ in range(count):
        account, phone = rng.choice(customers)
        minor = rng.randint(10, 5000) * 100
        if rng.random() < 0.3:
            minor += rng.randint(1, 99)
        body = dict(template)
        body.update(
            TransID=_code(rng, taken),
            TransTime=datetime.now(nairobi).strftime("%Y%m%d%H%M%S"),
            TransAmount=f"{minor // 100}.{minor % 100:02d}",
            BillRefNumber=account,
            MSISDN=phone,
            OrgAccountBalance=f"{rng.randint(1000, 10**7)}.00",
            FirstName=rng.choice(["WANJIKU", "OTIENO", "AKINYI", "KIPCHUMBA", "NJERI"]),
        )
        payments.append(
            Payment(body["TransID"], account, minor, json.dumps(body).encode())  # type: ignore[arg-type]
        )
    return payments


def make_schedule(
    rng: random.Random, payments: list[Payment], posts: int, duration: float
) -> list[tuple[float, int]]:
    """(seconds from the start, payment index) for every post, duplicates included."""
    rate = len(payments) / duration
    events = [(i / rate, i) for i in range(len(payments))]
    for i in rng.sample(range(len(payments)), posts - len(payments)):
        t = i / rate
        if rng.random() < 0.5:
            events.append((t, i))  # concurrently with the first
        else:
            events.append((min(duration, t + rng.uniform(0.5, 12.0)), i))
    events.sort(key=lambda e: e[0])
    return events


# --- the run --------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    started: float
    ended: float = 0.0
    ok: bool = False
    detail: str = ""
    #: (from, to): the instant a crash fault killed processes, bracketed by the clock read
    #: just before the kill and just after the last of them was gone
    crash: tuple[float, float] | None = None


@dataclass
class Chaos:
    stack: Stack
    payments: list[Payment]
    schedule: list[tuple[float, int]]
    plan: list[str]
    duration: float
    stop: threading.Event = field(default_factory=threading.Event)
    sends: list[Send] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stream_started: float = 0.0
    stream_done: bool = False

    # -- sending

    def post(self, index: int, phase: str) -> Send:
        payment = self.payments[index]
        started = _now()
        try:
            response = requests.post(
                self.stack.webhook,
                data=payment.body,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as exc:
            send = Send(
                index,
                phase,
                "unanswered",
                None,
                f"{type(exc).__name__}: {exc}"[:300],
                _now(),
                started,
                unanswered_cause(exc),
            )
        else:
            status = response.status_code
            if 200 <= status < 300:
                try:
                    ok = response.json().get("ResultCode") == 0
                except ValueError:
                    ok = False
                outcome = "acked" if ok else "4xx"
            else:
                outcome = "5xx" if status >= 500 else "4xx"
            send = Send(index, phase, outcome, status, response.text[:300], _now(), started)
        with self.lock:
            self.sends.append(send)
        if send.outcome in ("5xx", "4xx"):
            say(f"answer {send.status} to {payment.code} ({phase}): {send.detail!r}")
        return send

    def run_stream(self, pool: ThreadPoolExecutor) -> None:
        futures: list[Future[Send]] = []
        for offset, index in self.schedule:
            if self.stop.is_set():
                break
            delay = self.stream_started + offset - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            futures.append(pool.submit(self.post, index, "stream"))
        wait_futures(futures)
        self.stream_done = True

    def resend_failed(self, pool: ThreadPoolExecutor) -> tuple[int, int, int]:
        """Send every post answered 5xx or not at all again until acknowledged (bounded)."""
        failed = [
            s for s in self.sends if s.phase == "stream" and s.outcome in ("5xx", "unanswered")
        ]
        if not failed:
            return 0, 0, 0

        def again(send: Send) -> bool:
            for attempt in range(RESEND_TRIES):
                if self.post(send.index, "resend").outcome == "acked":
                    return True
                time.sleep(min(5.0, 0.5 * (attempt + 1)))
            return False

        results = list(pool.map(again, failed))
        ok = sum(results)
        return len(failed), ok, len(failed) - ok

    # -- faults

    def run_faults(self) -> None:
        """The plan's faults, evenly spaced through the stream. A fault's second occurrence
        (the full form's second round) is the harsher variant: Redis SIGTERM after SIGKILL,
        PostgreSQL ``-m immediate`` (crash and WAL recovery), gunicorn SIGKILLed mid-request."""
        gap = self.duration / (len(self.plan) + 1)
        seen: Counter[str] = Counter()
        for n, name in enumerate(self.plan, start=1):
            due = self.stream_started + n * gap
            if self.stop.wait(max(0.0, due - time.monotonic())):
                return
            k = seen[name]
            seen[name] += 1
            fault = Fault(name, _now())
            self.faults.append(fault)
            say(f"FAULT {name}: starting")
            try:
                if name == "worker_kill":
                    fault.detail = self.worker_kill(k)
                elif name == "redis_stop":
                    fault.detail = self.redis_stop(signal.SIGTERM if k % 2 else signal.SIGKILL)
                elif name == "redis_flush":
                    fault.detail = self.redis_flush()
                elif name == "pg_restart":
                    fault.detail = self.pg_restart("immediate" if k % 2 else "fast")
                elif name == "web_restart":
                    fault.detail = self.web_restart(fault, hard=bool(k % 2))
                elif name == "poison_spool":
                    fault.detail = self.poison_spool()
                elif name == "pg_silent":
                    fault.detail = self.pg_silent()
                else:
                    raise HarnessError(f"unknown fault {name}")
                fault.ok = True
            except Exception as exc:
                fault.detail = f"FAILED: {type(exc).__name__}: {exc}"
            fault.ended = _now()
            say(f"FAULT {name}: {fault.detail} ({fault.ended - fault.started:.1f}s)")

    def worker_kill(self, n: int) -> str:
        """SIGKILL a worker's process group the moment it holds claimed, uncommitted inbox
        rows (``FOR UPDATE`` takes RowShareLock on ``inbox``; the sweeper's count only
        AccessShareLock), then restart it."""
        stack = self.stack
        preferred = stack.worker_names()[n % WORKERS]
        victim = None
        with stack.connect() as conn, stack.lock:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not self.stop.is_set():
                busy = [
                    r[0].removeprefix("chaos-worker-")
                    for r in conn.execute(
                        "SELECT DISTINCT a.application_name FROM pg_stat_activity a "
                        "JOIN pg_locks l ON l.pid = a.pid "
                        "WHERE a.application_name LIKE 'chaos-worker-%' "
                        "AND l.relation = 'inbox'::regclass "
                        "AND l.mode IN ('RowShareLock', 'RowExclusiveLock')"
                    ).fetchall()
                ]
                if busy:
                    victim = preferred if preferred in busy else busy[0]
                    break
                time.sleep(0.005)
            mid_txn = victim is not None
            victim = victim or preferred
            if victim not in stack.worker_names():
                raise HarnessError(f"{victim!r} is not one of our workers")
            stack.down.add(victim)
            stack._signal_group(victim, signal.SIGKILL)
            stack.procs[victim].wait(timeout=10)
            # the victim's claimed rows are pending again once PostgreSQL sees it gone
            time.sleep(0.2)
            row = conn.execute("SELECT count(*) FROM inbox WHERE status = 'pending'").fetchone()
            pending = int(row[0]) if row else 0
        try:
            time.sleep(1.0)
            with stack.lock:
                stack.start_worker(victim)
        finally:
            stack.down.discard(victim)
        where = "holding claimed inbox rows" if mid_txn else "with no claim seen in 20s"
        return f"kill -9 {victim} {where}; {pending} inbox rows pending after; restarted"

    def redis_stop(self, sig: int) -> str:
        stack = self.stack
        with stack.lock:
            stack.down.add("redis")
            try:
                depth = _queue_depth(stack)
                stack._stop("redis", sig)
                self.stop.wait(OUTAGE_SECONDS)
                stack.start_redis()
            finally:
                stack.down.discard("redis")
        return (
            f"redis {signal.Signals(sig).name}, down {OUTAGE_SECONDS:.0f}s "
            f"(queue held {depth}); started again"
        )

    def redis_flush(self) -> str:
        client = self.stack.redis()
        deadline = time.monotonic() + 10
        depth = _queue_depth(self.stack)
        while depth == "0 queued, 0 unacked" and time.monotonic() < deadline:
            time.sleep(0.01)
            depth = _queue_depth(self.stack)
        client.flushall()
        return f"FLUSHALL with {depth}"

    def pg_restart(self, mode: str) -> str:
        stack = self.stack
        before = _spooled_lines(stack)
        with stack.lock:
            stack.down.add("postgres")
            try:
                stack.stop_postgres(mode)
                down_at = time.monotonic()
                self.stop.wait(OUTAGE_SECONDS)
                stack.start_postgres()
                outage = time.monotonic() - down_at
            finally:
                stack.down.discard("postgres")
        spooled = _spooled_lines(stack) - before
        return f"pg_ctl stop -m {mode}, down {outage:.1f}s, started; {spooled} callbacks spooled"

    def poison_spool(self) -> str:
        """Poison records in the spool among good ones, during a PostgreSQL outage: one
        posted (the webhook keeps it), one written into a gone host's spool file as an
        unchecking webhook would have. Both must end as rejected inbox rows while the
        good callbacks around them drain (the books at the end say whether they did)."""
        from ingest.spool import Spool
        from matcher.models import InboxItem

        stack = self.stack
        marker = f"CHAOS{secrets.token_hex(4).upper()}"
        posted_ref, written_ref = f"ws_CO_{marker}P\x00", f"ws_CO_{marker}W\x00"
        template = json.loads(STK_FAILURE.read_text())

        def stk_failure(reference: str) -> bytes:
            body = json.loads(json.dumps(template))
            body["Body"]["stkCallback"]["CheckoutRequestID"] = reference
            return json.dumps(body).encode()  # the NUL as the JSON escape \u0000

        webhook = stack.webhook.replace("/c2b/confirmation", "/stk")
        before = _spooled_lines(stack)
        with stack.lock:
            stack.down.add("postgres")
            try:
                stack.stop_postgres("fast")
                down_at = time.monotonic()
                answer = requests.post(
                    webhook,
                    data=stk_failure(posted_ref),
                    headers={"Content-Type": "application/json"},
                    timeout=REQUEST_TIMEOUT,
                )
                Spool(stack.spool_dir, max_bytes=1 << 26, host="chaos-gone-host").append(
                    InboxItem(
                        provider="mpesa",
                        kind="stk",
                        body=stk_failure(written_ref),
                        headers={"Content-Type": "application/json"},
                        client_addr="127.0.0.1",
                        status="pending",
                        code=written_ref,
                        attempts=0,
                    )
                )
                self.stop.wait(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
                stack.start_postgres()
                outage = time.monotonic() - down_at
            finally:
                stack.down.discard("postgres")
        spooled = _spooled_lines(stack) - before
        if answer.status_code // 100 == 5:
            raise HarnessError(f"the poison callback got {answer.status_code}: {answer.text!r}")

        def rejected() -> list[tuple[str, str, str]] | None:
            with stack.connect() as conn:
                # by the body: a reference refused at the webhook leaves the row's code empty
                found = conn.execute(
                    "SELECT code, status, reason FROM inbox WHERE position(%s IN body) > 0",
                    (f"ws_CO_{marker}".encode(),),
                ).fetchall()
            return found if len(found) == 2 else None

        rows = wait_for(rejected, DRAIN_TIMEOUT, "the poison records in the inbox")
        if any(
            status != "rejected" or reason not in ("invalid_field", "unstorable_text")
            for _, status, reason in rows
        ):
            raise HarnessError(f"poison records stored as {rows}, not rejected")
        return (
            f"PostgreSQL down {outage:.1f}s; poison posted (answered {answer.status_code}) and "
            f"written to a gone host's spool among {spooled} spooled callbacks; both are "
            f"rejected inbox rows ({', '.join(sorted(r for _, _, r in rows))})"
        )

    def web_restart(self, fault: Fault, hard: bool) -> str:
        """Stop gunicorn and start it again on the socket the run holds: callbacks sent
        meanwhile wait in its backlog. Gracefully (SIGTERM: the workers finish what they
        hold) none may go unanswered; a crash (SIGKILL of the whole group) cuts the requests
        its workers held at that instant, and only those."""
        stack = self.stack
        held = 0
        with stack.lock:
            stack.down.add("web")
            try:
                if hard:
                    held = self._await_request_in_hand()
                stopped_at = time.monotonic()
                if hard:
                    killed_from = _now()
                    stack._stop("web", signal.SIGKILL)
                    fault.crash = (killed_from, _now())
                else:
                    stack.stop_web()
                stack.start_web()
                gap = time.monotonic() - stopped_at
            finally:
                stack.down.discard("web")
        how = (
            f"SIGKILLed (group) holding {held} accepted connections"
            if hard
            else "stopped (SIGTERM)"
        )
        return (
            f"gunicorn {how} and serving again on the held socket :{stack.web_port} "
            f"after {gap:.1f}s"
        )

    def _await_request_in_hand(self, timeout: float = 10.0) -> int:
        """Wait until a gunicorn worker holds an accepted callback connection, so the crash
        lands mid-request; return how many it holds (0: none seen within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            held = self.stack.accepted_connections()
            if held:
                return held
            time.sleep(0.0005)
        return 0

    def pg_silent(self) -> str:
        """PostgreSQL stops answering without closing anything, then heals."""
        stack = self.stack
        before = _spooled_lines(stack)
        stack.pg_proxy.go_silent()
        try:
            self.stop.wait(SILENT_SECONDS)
        finally:
            stack.pg_proxy.speak()
        spooled = _spooled_lines(stack) - before
        return (
            f"PostgreSQL silent {SILENT_SECONDS:.0f}s (connections kept, bytes dropped), "
            f"healed; {spooled} callbacks spooled"
        )


def failed_in_silence(chaos: Chaos) -> list[Send]:
    """Callbacks answered 5xx or not at all while PostgreSQL was silent (or soon after, while
    a request sent during the silence could still be waiting): each one is the webhook
    waiting on the database instead of spooling within its deadline."""
    windows = [
        (f.started, f.ended + REQUEST_TIMEOUT[1] + 1.0)
        for f in chaos.faults
        if f.name == "pg_silent" and f.ended
    ]
    return [
        s
        for s in chaos.sends
        if s.phase == "stream"
        and s.outcome in ("5xx", "unanswered")
        and any(start <= s.at <= end for start, end in windows)
    ]


def cut_by_crash(chaos: Chaos) -> list[Send]:
    """Callbacks unanswered because a crash cut their connection: in flight (sent, not yet
    answered) at the instant a crash fault killed the web server, and failed as a cut
    connection. Nothing a server does can answer those; any other unanswered callback is a
    connection momo refused or dropped."""
    windows = [f.crash for f in chaos.faults if f.crash is not None]
    return [
        s
        for s in chaos.sends
        if s.phase == "stream"
        and s.outcome == "unanswered"
        and s.cause == "cut"
        and any(s.started <= to and s.at >= since for since, to in windows)
    ]


def _queue_depth(stack: Stack) -> str:
    try:
        client = stack.redis()
        return f"{client.llen('momo')} queued, {client.hlen('unacked')} unacked"
    except redis.RedisError:
        return "unknown"


def _spooled_lines(stack: Stack) -> int:
    """How often a web process said it spooled a callback (from its log)."""
    return stack.log_text("web").count("callback spooled to")


def _spool_records(stack: Stack) -> int:
    total = 0
    if stack.spool_dir.exists():
        for path in stack.spool_dir.glob("spool-*"):
            with contextlib.suppress(OSError):
                total += sum(1 for line in path.read_bytes().splitlines() if line.strip())
    return total


def inbox_counts(stack: Stack) -> dict[str, int] | None:
    try:
        with stack.connect(timeout=2) as conn:
            rows = conn.execute("SELECT status, count(*) FROM inbox GROUP BY status").fetchall()
            payments = conn.execute("SELECT count(*) FROM payments").fetchone()
    except psycopg.Error:
        return None
    counts = {status: int(n) for status, n in rows}
    counts["payments"] = int(payments[0]) if payments else 0
    return counts


def seed_customers(
    stack: Stack, customers: list[tuple[str, str]], pool: ThreadPoolExecutor
) -> None:
    def create(customer: tuple[str, str]) -> None:
        account, phone = customer
        response = requests.post(
            f"{stack.base}/api/v1/customers",
            json={"account_number": account, "name": f"Chaos {account}", "phones": [phone]},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            timeout=30,
        )
        if response.status_code != 201:
            raise HarnessError(f"creating {account}: {response.status_code} {response.text}")

    list(pool.map(create, customers))


# --- the books ------------------------------------------------------------------------------


def read_books(stack: Stack, chaos: Chaos) -> dict[str, Any]:
    by_code = {p.code: p for p in chaos.payments}
    acked_codes = {chaos.payments[s.index].code for s in chaos.sends if s.outcome == "acked"}
    with stack.connect(timeout=10) as conn:
        rows = conn.execute(
            """
            SELECT p.id, p.code, p.amount_minor, p.status, c.account_number,
                   coalesce(sum(l.amount_minor), 0), count(l.id)
            FROM payments p
            LEFT JOIN customers c ON c.id = p.customer_id
            LEFT JOIN ledger_entries l ON l.payment_id = p.id
            WHERE p.provider = 'mpesa'
            GROUP BY p.id, c.account_number
            """
        ).fetchall()
        mismatched = conn.execute(
            """
            SELECT c.account_number, c.balance_minor, coalesce(s.total, 0)
            FROM customers c
            LEFT JOIN (SELECT customer_id, sum(amount_minor) AS total
                       FROM ledger_entries GROUP BY customer_id) s ON s.customer_id = c.id
            WHERE c.balance_minor <> coalesce(s.total, 0)
            """
        ).fetchall()
        balances = dict(conn.execute("SELECT account_number, balance_minor FROM customers"))
        inbox = dict(conn.execute("SELECT status, count(*) FROM inbox GROUP BY status"))
        spooled = conn.execute("SELECT count(*) FROM inbox WHERE spool_id IS NOT NULL").fetchone()
        stuck_rows = conn.execute(
            "SELECT id, code, reason, attempts, next_attempt_at, detail FROM inbox "
            "WHERE status IN ('pending', 'dead') ORDER BY id LIMIT 10"
        ).fetchall()
        diagnostics: dict[str, Any] = {}

        stored: Counter[str] = Counter()
        credited: set[str] = set()
        doubled: list[str] = []
        misrouted: list[str] = []
        phantom: list[str] = []
        for _pid, code, amount, status, account, net, _entries in rows:
            stored[code] += 1
            sent = by_code.get(code)
            if sent is None:
                phantom.append(code)
                continue
            if net > amount:
                doubled.append(code)
            if (
                status == "associated"
                and net == amount == sent.amount_minor
                and account == sent.account
            ):
                credited.add(code)
            elif status == "associated" and account != sent.account:
                misrouted.append(code)
        doubled += [code for code, n in stored.items() if n > 1 and code not in doubled]
        lost = sorted(acked_codes - credited)
        for code in (lost + doubled + misrouted)[:10]:
            diagnostics[code] = {
                "inbox": [
                    list(map(str, r))
                    for r in conn.execute(
                        "SELECT id, status, reason, attempts, spool_id, detail FROM inbox "
                        "WHERE code = %s ORDER BY id",
                        (code,),
                    )
                ],
                "ledger": [
                    list(map(str, r))
                    for r in conn.execute(
                        "SELECT l.id, l.amount_minor, l.kind, l.idempotency_key "
                        "FROM ledger_entries l JOIN payments p ON p.id = l.payment_id "
                        "WHERE p.code = %s ORDER BY l.id",
                        (code,),
                    )
                ],
                "sends": [asdict(s) for s in chaos.sends if chaos.payments[s.index].code == code],
            }

    expected: Counter[str] = Counter()
    for code in credited | set(lost):
        expected[by_code[code].account] += by_code[code].amount_minor
    balance_off = [
        account
        for account, balance in balances.items()
        if account.startswith("CHX") and balance != expected.get(account, 0)
    ]
    return {
        "stored": sum(1 for code in stored if code in by_code),
        "credited": len(credited),
        "lost": len(lost),
        "doubled": len(doubled),
        "mismatches": len(mismatched),
        "misrouted": len(misrouted),
        "phantom": len(phantom),
        "balance_off": len(balance_off),
        "spooled": int(spooled[0]) if spooled else 0,
        "inbox": {str(k): int(v) for k, v in inbox.items()},
        "examples": {
            "lost": lost[:20],
            "doubled": doubled[:20],
            "mismatched": [list(map(str, r)) for r in mismatched[:20]],
            "misrouted": misrouted[:20],
            "balance_off": balance_off[:20],
            "stuck_or_dead": [list(map(str, r)) for r in stuck_rows],
        },
        "diagnostics": diagnostics,
    }


def wait_for_drain(stack: Stack, chaos: Chaos, timeout: float) -> tuple[bool, float]:
    started = time.monotonic()
    last = 0.0
    while time.monotonic() - started < timeout:
        stack.supervise()
        spool = _spool_records(stack)
        counts = inbox_counts(stack)
        if counts is not None and spool == 0 and counts.get("pending", 0) == 0:
            return True, time.monotonic() - started
        if time.monotonic() - last > 5:
            last = time.monotonic()
            say(f"draining: spool={spool} inbox={counts}")
        time.sleep(0.5)
    return False, time.monotonic() - started


def fault_summary(faults: list[Fault]) -> str:
    counts: Counter[str] = Counter(f.name for f in faults if f.ok)
    return ",".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items())


def progress(stack: Stack, chaos: Chaos, total: int) -> None:
    with chaos.lock:
        outcomes = Counter(s.outcome for s in chaos.sends if s.phase == "stream")
    counts = inbox_counts(stack)
    done = sum(1 for f in chaos.faults if f.ended)
    db = (
        "db=down"
        if counts is None
        else f"inbox pending={counts.get('pending', 0)} processed={counts.get('processed', 0)} "
        f"payments={counts.get('payments', 0)}"
    )
    say(
        f"sent={sum(outcomes.values())}/{total} acked={outcomes['acked']} "
        f"5xx={outcomes['5xx']} 4xx={outcomes['4xx']} unanswered={outcomes['unanswered']} | "
        f"{db} spool={_spool_records(stack)} | faults done={done}/{len(chaos.plan)}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--callbacks",
        type=int,
        default=None,
        help="callbacks to send, duplicates included (default 5000; --short 400)",
    )
    parser.add_argument(
        "--short", action="store_true", help="the CI form: 400 callbacks, every fault once"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds the stream lasts (default 75 short, 200 full)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the figures go")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    posts = args.callbacks or (400 if args.short else 5000)
    if posts < 20:
        raise SystemExit("--callbacks must be at least 20")
    duration = args.duration or (75.0 if args.short else 200.0)
    plan = list(FAULT_PLAN) * (1 if args.short else 2)
    unique = posts - int(posts * DUPLICATE_SHARE / (1 + DUPLICATE_SHARE))

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    # Ctrl-C stops everything too, even when started where SIGINT was ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = Path(tempfile.mkdtemp(prefix="momo-chaos-"))
    tmp.chmod(0o755)  # the postgres user must reach its data directory
    stack = Stack(tmp)
    started = time.monotonic()
    say(
        f"chaos run: {posts} callbacks ({unique} payments, {posts - unique} duplicate posts) over "
        f"~{duration:.0f}s, {len(plan)} faults, seed {seed}, temp dir {tmp}"
    )
    status = 2
    pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="sender")
    chaos: Chaos | None = None
    try:
        stack.start_all()
        customers = make_customers(rng)
        seed_customers(stack, customers, pool)
        say(f"seeded {len(customers)} customers through the API")
        payments = make_payments(rng, unique, customers)
        schedule = make_schedule(rng, payments, posts, duration)
        chaos = Chaos(stack, payments, schedule, plan, duration)
        stream = threading.Thread(target=chaos.run_stream, args=(pool,), name="stream")
        chaos.stream_started = time.monotonic()
        stream.start()
        faults = threading.Thread(target=chaos.run_faults, name="faults")
        faults.start()
        last = 0.0
        try:
            while stream.is_alive() or faults.is_alive():
                stack.supervise()
                if time.monotonic() - last >= 5:
                    last = time.monotonic()
                    progress(stack, chaos, posts)
                time.sleep(0.25)
        except BaseException:
            chaos.stop.set()
            raise
        stream.join()
        faults.join()
        progress(stack, chaos, posts)

        resent, resent_ok, resend_failed = chaos.resend_failed(pool)
        if resent:
            say(f"resent {resent} callbacks answered 5xx or not at all: {resent_ok} acknowledged")
        drained, waited = wait_for_drain(stack, chaos, DRAIN_TIMEOUT)
        say(
            f"inbox and spool {'drained' if drained else 'NOT drained'} "
            f"{waited:.1f}s after the last callback"
        )
        books = read_books(stack, chaos)
        check = stack.momo("check", check=False)
        check_output = (check.stdout + check.stderr).strip()
        say(f"momo check exited {check.returncode}: {check_output}")

        stream_sends = [s for s in chaos.sends if s.phase == "stream"]
        silence_failed = failed_in_silence(chaos)
        if silence_failed:
            say(f"answered 5xx or not at all around a silent database: {silence_failed[:5]}")
        crash_cut = cut_by_crash(chaos)
        outcomes = Counter(s.outcome for s in stream_sends)
        causes = Counter(s.cause for s in stream_sends if s.outcome == "unanswered")
        cut_ids = {id(s) for s in crash_cut}
        not_cut = [s for s in stream_sends if s.outcome == "unanswered" and id(s) not in cut_ids]
        if not_cut:
            say(f"unanswered, and not cut by a crash: {not_cut[:5]}")
        missing_faults = [f for f in ALL_FAULTS if f not in {x.name for x in chaos.faults if x.ok}]
        failed_faults = [asdict(f) for f in chaos.faults if not f.ok]
        elapsed = time.monotonic() - started
        figures: dict[str, Any] = {
            "sent": len(stream_sends),
            "payments": len(payments),
            "acked": outcomes["acked"],
            "answered_5xx": outcomes["5xx"],
            "answered_4xx": outcomes["4xx"],
            "unanswered": outcomes["unanswered"],
            "cut_by_crash": len(crash_cut),
            "unanswered_other": outcomes["unanswered"] - len(crash_cut),
            "unanswered_by_cause": dict(causes),
            "resent": resent,
            "resent_ok": resent_ok,
            "resend_failed": resend_failed,
            "failed_in_silence": len(silence_failed),
            "stored": books["stored"],
            "credited": books["credited"],
            "lost": books["lost"],
            "doubled": books["doubled"],
            "mismatches": books["mismatches"],
            "balance_off": books["balance_off"],
            "misrouted": books["misrouted"],
            "phantom": books["phantom"],
            "spooled": books["spooled"],
            "stuck": 0 if drained else books["inbox"].get("pending", 0) or 1,
            "dead": books["inbox"].get("dead", 0),
            "inbox": books["inbox"],
            "check": "ok" if check.returncode == 0 else "fail",
            "check_exit": check.returncode,
            "check_output": check_output,
            "faults": fault_summary(chaos.faults),
            "fault_log": [asdict(f) for f in chaos.faults],
            "faults_missing": missing_faults,
            "faults_failed": failed_faults,
            "unexpected_exits": stack.unexpected_exits,
            "drain_seconds": round(waited, 1),
            "elapsed": round(elapsed),
            "seed": seed,
            "short": args.short,
            "duration": duration,
            "examples": books["examples"],
            "diagnostics": books["diagnostics"],
            "logs": str(stack.logs) if args.keep else None,
        }
        failures = [
            name
            for name in (
                "lost",
                "doubled",
                "mismatches",
                "balance_off",
                "misrouted",
                "phantom",
                "resend_failed",
                "failed_in_silence",
                "unanswered_other",
                "answered_4xx",
                "stuck",
                "dead",
            )
            if figures[name]
        ]
        if check.returncode != 0:
            failures.append("check")
        if missing_faults or failed_faults:
            failures.append("faults")
        figures["ok"] = not failures
        figures["failures"] = failures
        for kind, examples in books["examples"].items():
            if examples:
                say(f"{kind}: {examples}")
        for code, diag in books["diagnostics"].items():
            say(f"diagnosis {code}: {json.dumps(diag, default=str)[:1500]}")
        if failed_faults:
            say(f"faults that failed: {failed_faults}")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        say(f"figures written to {args.json}")
        status = 0 if not failures else 1
        if failures:
            say(f"FAILED: {', '.join(failures)} (logs in {stack.logs}; kept)")
            args.keep = True
        print(
            f"chaos: sent={figures['sent']} acked={figures['acked']} "
            f"answered_5xx={figures['answered_5xx']} unanswered={figures['unanswered']} "
            f"cut_by_crash={figures['cut_by_crash']} "
            f"resent_ok={resent_ok} stored={figures['stored']} credited={figures['credited']} "
            f"lost={figures['lost']} doubled={figures['doubled']} "
            f"mismatches={figures['mismatches']} check={figures['check']} "
            f"spooled={figures['spooled']} faults={figures['faults']} "
            f"elapsed={figures['elapsed']}s",
            flush=True,
        )
        return status
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        status = 130
        return status
    except Exception as exc:
        say(f"HARNESS ERROR: {type(exc).__name__}: {exc} (logs in {stack.logs}; kept)")
        args.keep = True
        raise
    finally:
        if chaos is not None:
            chaos.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        say("stopping services")
        stack.shutdown()
        stack.pg_proxy.close()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
