"""The real thing: PostgreSQL, Redis, a gunicorn server and Celery worker and beat processes.

Services come from MOMO_TEST_POSTGRES_URL (default the machine's PostgreSQL,
database ``postgres`` for admin) and MOMO_TEST_REDIS_URL. Each test session
gets its own database, created and dropped here, and its own Redis db number.
With MOMO_TEST_BROKER set to an amqp:// URL (say
``amqp://guest:guest@127.0.0.1:5672/momo_test``) the whole suite runs on that
RabbitMQ instead: its vhost and a second one for stacks of their own are made
afresh for the session with ``rabbitmqctl``, and Redis-only tests skip.
Without the services the tests skip with a message; with MOMO_REQUIRE_SERVICES=1
(as .ci/run sets) they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pytest
import redis
import requests
from kombu import Connection
from sqlalchemy.engine import make_url

from core.runtime import Runtime
from ingest.providers import build_runtime, load_settings
from tests.conftest import lacking
from tests.deploy_units import server_options
from tests.processes import start_process, stop_group

ADMIN_URL = os.environ.get(
    "MOMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MOMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
#: the broker every stack uses: Redis unless MOMO_TEST_BROKER names another
BROKER_URL = os.environ.get("MOMO_TEST_BROKER", "").strip() or REDIS_URL
ON_RABBITMQ = BROKER_URL.startswith(("amqp://", "amqps://"))
#: for a test of Redis itself or of a Redis set-up of its own, which the run on Redis covers
redis_only = pytest.mark.skipif(
    ON_RABBITMQ, reason="runs on a Redis of its own whatever the broker; the run on Redis covers it"
)
PATH_TOKEN = "it-path-token-5f1c2d8e9a0b7c6d4e3f2a1b"
VENV_BIN = Path(sys.executable).parent


def _unavailable(what: str, exc: Exception) -> None:
    message = (
        f"{what} is not reachable ({exc}). Integration tests need PostgreSQL and Redis: "
        "set MOMO_TEST_POSTGRES_URL / MOMO_TEST_REDIS_URL or start them locally."
    )
    lacking(message)


def _database() -> Iterator[str]:
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", exc)
    name = f"momo_it_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name, drivername="postgresql+psycopg")
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_runtime() -> Iterator[Runtime]:
    """A runtime on a database of its own, migrated to head; closed and dropped after."""
    from core.config import Settings
    from matcher.db import make_engine
    from matcher.migrate import upgrade
    from tests.conftest import PATH_TOKEN, mpesa_block

    databases = _database()
    url = next(databases)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(Settings(database_url=url, providers=mpesa_block(PATH_TOKEN)))
    try:
        yield runtime
    finally:
        runtime.close()
        next(databases, None)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database for this test session (shared by its tests), dropped afterwards."""
    yield from _database()


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A database of this test's own, for tests that count every row."""
    yield from _database()


def _rabbitmq_vhost(url: str) -> None:
    """The vhost of ``url`` made afresh, as ``flushdb`` empties a Redis database."""
    vhost = amqp_vhost(url)
    user = urlsplit(url).username or "guest"
    ctl = shutil.which("rabbitmqctl")
    if ctl is not None and vhost != "/":  # the default vhost is never deleted
        for args in (
            ["delete_vhost", vhost],
            ["add_vhost", vhost],
            ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        ):
            subprocess.run([ctl, "-q", *args], capture_output=True, timeout=60)
    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises the transport's own errors
        _unavailable(f"RabbitMQ (vhost {vhost!r})", exc)


def amqp_vhost(url: str) -> str:
    """The vhost an amqp:// URL names (``/`` when it names none)."""
    return unquote(urlsplit(url).path[1:]) or "/"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The session's broker: Redis, or RabbitMQ when MOMO_TEST_BROKER says so."""
    if ON_RABBITMQ:
        _rabbitmq_vhost(BROKER_URL)
        _rabbitmq_vhost(other_redis_db(BROKER_URL))
        return BROKER_URL
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    client.flushdb()
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_request(base: str, request: bytes) -> str:
    """Send ``request`` as-is to the server at ``base``; its whole answer, up to the close."""
    from urllib.parse import urlparse

    url = urlparse(base)
    answer = b""
    with socket.create_connection((url.hostname, url.port), timeout=20) as conn:
        conn.sendall(request)
        while chunk := conn.recv(65536):
            answer += chunk
    return answer.decode(errors="replace")


def ambiguous_post(path: str, body: bytes) -> bytes:
    """A POST whose body is framed twice: chunked ``body`` + junk, and a Content-Length that
    covers ``body`` alone (a server trusting it would store a prefix of the real body)."""
    real = body + b' , "more": "of the chunked body"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(real), real)
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunked


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def wait_healthy(base: str, timeout: float = 60.0) -> None:
    """Until the server at ``base`` answers /healthz with 200."""

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            # not listening yet, or a worker still starting on a loaded machine
            return False

    wait_until(healthy, timeout=timeout)


@contextmanager
def momo_serve(
    tmp_path: Path, *args: str, port: int | None = None, **env_vars: str
) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes]]]:
    """A real `momo serve` (extra ``args``, its env without the caller's MOMO_* but
    ``env_vars``) on ``port`` or a free one, answering; stopped with SIGINT, as a
    terminal would."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
    env.update(PYTHONUNBUFFERED="1", **env_vars)
    with (tmp_path / "serve.log").open("ab") as log:
        # one process (its worker is a thread): SIGKILLed if pytest dies
        proc = start_process(
            [str(VENV_BIN / "momo"), "serve", "--port", str(port), *args],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        yield base, env, proc
    finally:
        stop_group(proc, signal.SIGINT)


@dataclass
class Stack:
    """A running momo: gunicorn (webhooks + API), Celery worker and beat, on PG + Redis."""

    env: dict[str, str]
    base: str
    workdir: Path
    runtime: Runtime
    admin_token: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        """``argv`` (gunicorn, a Celery worker, beat, Flower), SIGKILLed if pytest dies: their
        workers and pool processes go by themselves once their main process is gone."""
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = start_process(
                argv,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            stop_group(proc, sig)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> None:
        self.start(
            name,
            # through the `momo worker` wrapper, as an operator runs it
            [
                str(VENV_BIN / "momo"),
                "worker",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        wait_until(lambda: "ready." in self.log(name), timeout=60)

    def post(self, kind: str, body: dict | bytes, token: str = PATH_TOKEN) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            f"{self.base}/webhooks/mpesa/{token}/{kind}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.base}/api/v1{path}", headers=headers, timeout=30, **kwargs
        )

    def add_customer(self, account: str, phone: str) -> None:
        made = self.api(
            "POST",
            "/customers",
            json={"account_number": account, "name": account, "phones": [phone]},
        )
        assert made.status_code == 201, made.text

    def settled(self, request_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """The payment request once it is no longer pending."""

        def done() -> dict[str, Any] | None:
            item = self.api("GET", f"/payment-requests/{request_id}").json()
            return item if item["status"] != "pending" else None

        result: dict[str, Any] = wait_until(done, timeout=timeout)
        return result

    def balance(self, account: str) -> str:
        response = self.api("GET", f"/customers/{account}")
        assert response.status_code == 200, response.text
        return str(response.json()["balance"])


@contextmanager
def running_stack(
    pg_url: str, redis_url: str, workdir: Path, *, port: int | None = None, **env_vars: str
) -> Iterator[Stack]:
    """gunicorn (webhooks + API, on ``port`` or a free one), a Celery worker and beat on
    ``pg_url`` and ``redis_url``, with ``env_vars`` added to their environment; stopped on
    leaving."""
    port = port or free_port()
    env = {
        **os.environ,
        "MOMO_DATABASE_URL": pg_url,
        "MOMO_BROKER_URL": redis_url,
        "MOMO_MPESA_PATH_TOKEN": PATH_TOKEN,
        "MOMO_SWEEP_AFTER_SECONDS": "2",
        "MOMO_SWEEP_INTERVAL_SECONDS": "1",
        "MOMO_INSTANCE_PATH": str(workdir / "instance"),
        "PYTHONUNBUFFERED": "1",
        **env_vars,
    }
    subprocess.run([str(VENV_BIN / "momo"), "db", "upgrade"], env=env, check=True, cwd=workdir)
    token = (
        subprocess.run(
            [str(VENV_BIN / "momo"), "token", "create", "--name", "it-admin", "--role", "admin"],
            env=env,
            check=True,
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    runtime = build_runtime(load_settings(env))
    stack = Stack(
        env=env,
        base=f"http://127.0.0.1:{port}",
        workdir=workdir,
        runtime=runtime,
        admin_token=token,
    )
    try:
        stack.start(
            "web",
            [
                str(VENV_BIN / "gunicorn"),
                # as deploy/ serves (threaded workers), with the stack's own sizes
                *server_options("momo-web"),
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "5",
                "momo.wsgi:app()",
            ],
        )
        stack.start_worker()
        stack.start(
            "beat",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "tasks",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(workdir / "beat-schedule"),
            ],
        )
        wait_healthy(stack.base)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)
        runtime.close()


def other_redis_db(url: str) -> str:
    """The same Redis, another database (the same RabbitMQ, another vhost): a stack's
    worker must not take the session stack's tasks."""
    if url.startswith(("amqp://", "amqps://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + quote(f"{amqp_vhost(url)}-other", "")))
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) + 1) % 16}"


@contextmanager
def stack_of_its_own(
    redis_url: str, workdir: Path, env_for: Callable[[str], dict[str, str]]
) -> Iterator[Stack]:
    """A running stack on a database of its own and the next Redis database, reached at
    its MOMO_PUBLIC_URL, with ``env_for(public_url)`` added to its environment; payment
    requests are asked about 5 s after they are made."""
    databases = _database()
    url = next(databases)
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    try:
        with running_stack(
            url,
            other_redis_db(redis_url),
            workdir,
            port=port,
            **{
                "MOMO_PUBLIC_URL": public_url,
                "MOMO_REQUEST_QUERY_AFTER_SECONDS": "5",
                **env_for(public_url),
            },
        ) as stack:
            yield stack
    finally:
        next(databases, None)


@pytest.fixture(scope="session")
def stack(pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(pg_url, redis_url, tmp_path_factory.mktemp("stack")) as running:
        yield running
