"""`momo serve`'s own server: bounded in threads and in how long it waits on a connection,
and, on PostgreSQL, in the connections its webhook writes open."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from ingest.store import APPLICATION_NAME
from tests.conftest import sample_bytes
from tests.integration.conftest import (
    PATH_TOKEN,
    VENV_BIN,
    momo_serve,
    wait_until,
)

pytestmark = pytest.mark.integration


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class Peak:
    """The highest value ``measure`` gave while the block ran (sampled on a thread)."""

    def __init__(self, measure: Any) -> None:
        self.measure = measure
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, self.measure())
            self._stop.wait(0.01)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.value = max(self.value, self.measure())


def half_sent(base: str, path: str) -> socket.socket:
    """A connection that sent the headers and part of the body, then went quiet."""
    host, port = base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        'Content-Length: 600\r\n\r\n{"TransactionType": '.encode()
    )
    return conn


def read_to_close(conn: socket.socket, patience: float) -> bytes:
    """Everything the server sends until it closes the connection; raises TimeoutError when
    it keeps the connection open without a word for ``patience`` seconds."""
    conn.settimeout(patience)
    answer = b""
    with conn:
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_half_sent_requests_are_dropped_after_the_timeout_and_never_hold_more_threads(
    tmp_path: Path,
) -> None:
    threads, timeout, senders = 4, 2, 16
    with momo_serve(tmp_path, "--threads", str(threads), "--timeout", str(timeout)) as (
        base,
        _env,
        proc,
    ):
        token = (tmp_path / "instance" / "mpesa_path_token").read_text().strip()
        path = f"/webhooks/mpesa/{token}/c2b/confirmation"
        idle = thread_count(proc.pid)
        with Peak(lambda: thread_count(proc.pid)) as peak:
            conns = [half_sent(base, path) for _ in range(senders)]
            # every one is closed by the server, however long its sender stays quiet; the
            # patience is far beyond what the queue of them needs (senders/threads rounds)
            answers = [read_to_close(conn, patience=10 * timeout) for conn in conns]

        assert peak.value <= idle + threads + 1, (idle, peak.value)
        assert all(b" 200 " not in answer for answer in answers)
        response = requests.post(
            f"{base}{path}",
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}


def confirmation(code: str) -> bytes:
    doc = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
    doc["TransID"] = code
    return json.dumps(doc).encode()


def test_a_burst_of_callbacks_never_opens_more_than_the_bound_of_connections_and_each_is_kept(
    fresh_pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    bound, callbacks = 3, 30
    env = {
        "MOMO_DATABASE_URL": fresh_pg_url,
        "MOMO_BROKER_URL": redis_url,
        "MOMO_MPESA_PATH_TOKEN": PATH_TOKEN,
        "MOMO_INSTANCE_PATH": str(tmp_path / "instance"),
        "MOMO_DB_WRITE_CONNECTIONS": str(bound),
        # one write per callback, so the burst takes every connection at once (group commit
        # would queue it behind a single write in flight)
        "MOMO_DB_WRITE_BATCH": "1",
        "MOMO_DB_WRITE_TIMEOUT_SECONDS": "2",
        "MOMO_SPOOL_DRAIN_SECONDS": "1",
    }
    subprocess.run(
        [str(VENV_BIN / "momo"), "db", "upgrade"],
        env={"PATH": os.environ["PATH"], **env},
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    admin_url = make_url(fresh_pg_url).set(drivername="postgresql")
    admin_url_text = admin_url.render_as_string(hide_password=False)
    database = admin_url.database
    codes = [f"TKBURST{n:03d}" for n in range(callbacks)]

    with (
        psycopg.connect(admin_url_text, autocommit=True) as watcher,
        psycopg.connect(admin_url_text) as locker,
        momo_serve(tmp_path, "--threads", str(2 * callbacks), **env) as (base, _env, _proc),
    ):

        def connections() -> tuple[int, int]:
            """(webhook writer's, every other backend on the database but ours)"""
            rows = watcher.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = %s"
                " AND pid NOT IN (pg_backend_pid(), %s)",
                (database, locker.info.backend_pid),
            ).fetchall()
            return sum(1 for (name,) in rows if name == APPLICATION_NAME), len(rows)

        def waiting_on_the_lock() -> int:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event_type = 'Lock'",
                (database,),
            ).fetchone()
            return int(row[0]) if row else 0

        url = f"{base}/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"

        def post(code: str) -> requests.Response:
            return requests.post(
                url,
                data=confirmation(code),
                headers={"Content-Type": "application/json"},
                timeout=60,
            )

        # while the inbox is locked every write waits on the server, holding its connection
        locker.execute("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
        with (
            ThreadPoolExecutor(callbacks) as pool,
            Peak(lambda: connections()[1]) as everyone,
            Peak(lambda: connections()[0]) as writers,
        ):
            futures = [pool.submit(post, code) for code in codes]
            wait_until(lambda: waiting_on_the_lock() >= bound, timeout=30)
            wait_until(lambda: sum(f.done() for f in futures) >= 1, timeout=30)
            locker.rollback()  # the lock goes; the rest are written or spooled
            responses = [f.result() for f in futures]

        # the web process's other pool (spool drainer, health) adds at most a couple
        assert everyone.value <= bound + 2, everyone.value
        assert writers.value == bound  # the bound was reached, and never passed
        assert [r.status_code for r in responses] == [200] * callbacks
        assert all(r.json()["ResultCode"] == 0 for r in responses)

        def inbox_codes() -> set[str]:
            rows = watcher.execute("SELECT code FROM inbox").fetchall()
            return {code for (code,) in rows}

        # each is in the inbox, directly or through the spool's drainer, exactly once
        wait_until(lambda: inbox_codes() == set(codes), timeout=60)
        [(stored,)] = watcher.execute("SELECT count(*) FROM inbox").fetchall()
        assert stored == callbacks
