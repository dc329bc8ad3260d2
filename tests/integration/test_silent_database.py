"""A database that stops answering without closing its connections (a partition, a failover
whose old address went quiet): nothing in momo waits on it for ever.

A ``SilentProxy`` of the test's own sits between momo and the machine's PostgreSQL; the
fault is in the proxy, so the shared server is never disturbed. Deadlines are set short
here; the request timeouts below only turn a hang into a failure instead of a stuck run.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from ingest import store
from ingest.providers import build_runtime, load_settings
from ingest.store import InboxWriter, StoreFailed, inbox_row
from matcher.db import make_engine
from matcher.migrate import upgrade
from matcher.models import INBOX_PENDING, INBOX_PROCESSED, InboxItem, Payment
from matcher.notifications import Callback
from tasks.work import _one_batch, drain_inbox, parser_for
from tests.conftest import PATH_TOKEN, sample_bytes
from tests.integration.conftest import VENV_BIN, free_port, wait_healthy, wait_until
from tests.processes import start_process
from tests.silent_proxy import SilentProxy

pytestmark = pytest.mark.integration

#: longer than any deadline below; only reached when something hangs
HANG = 20


def body(code: str) -> bytes:
    return sample_bytes("c2b_confirmation_paybill_plain.json").replace(b"TKQ4A91B2C", code.encode())


@pytest.fixture
def engine(fresh_pg_url: str) -> Iterator[Engine]:
    """The database itself, straight (not through the proxy): what the test checks with."""
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def proxy(fresh_pg_url: str) -> Iterator[SilentProxy]:
    url = make_url(fresh_pg_url)
    with SilentProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


def through(proxy: SilentProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def inbox_codes(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.scalars(select(InboxItem.code)))


def spooled_bodies(spool_dir: Path) -> list[bytes]:
    bodies = []
    for path in spool_dir.glob("spool-*.jsonl*"):
        for line in path.read_bytes().splitlines():
            if line.strip():
                bodies.append(base64.b64decode(json.loads(line)["body"]))
    return bodies


def confirmation(code: str) -> dict[str, Any]:
    return inbox_row(provider="mpesa", kind="c2b/confirmation", body=body(code), code=code)


class TestInboxWriter:
    @pytest.mark.timeout(60)
    def test_after_a_write_gets_no_answer_the_next_ones_go_to_the_spool_at_once(
        self,
        fresh_pg_url: str,
        engine: Engine,
        proxy: SilentProxy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(store, "SILENT_HOLD_SECONDS", 600.0)
        source = make_engine(through(proxy, fresh_pg_url))  # names the database, connects not
        writer = InboxWriter.for_database(source, timeout=1)
        try:
            writer.store(confirmation("TKSILENT04"))
            proxy.go_silent()
            with pytest.raises(StoreFailed, match="did not answer within 1s"):
                writer.store(confirmation("TKSILENT05"))
            proxy.speak()
            with pytest.raises(StoreFailed, match="did not answer a moment ago"):
                writer.store(confirmation("TKSILENT06"))
        finally:
            writer.close()
            source.dispose()
        assert inbox_codes(engine) == {"TKSILENT04"}


class TestWebhook:
    @pytest.fixture
    def server(
        self, fresh_pg_url: str, engine: Engine, proxy: SilentProxy, redis_url: str, tmp_path: Path
    ) -> Iterator[str]:
        port = free_port()
        env = {
            **os.environ,
            "MOMO_DATABASE_URL": through(proxy, fresh_pg_url),
            "MOMO_BROKER_URL": redis_url,
            "MOMO_MPESA_PATH_TOKEN": PATH_TOKEN,
            "MOMO_INSTANCE_PATH": str(tmp_path / "instance"),
            "MOMO_DB_WRITE_TIMEOUT_SECONDS": "1",
            "MOMO_SPOOL_DRAIN_SECONDS": "1",
        }
        with (tmp_path / "web.log").open("ab") as log:
            web = start_process(
                # gunicorn's own worker timeout far off: a hang must show as one
                [
                    *(str(VENV_BIN / "gunicorn"), "--workers", "1", "--timeout", "120"),
                    *("--bind", f"127.0.0.1:{port}", "momo.wsgi:app()"),
                ],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            yield base
        finally:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(timeout=10)

    def post(self, base: str, code: str) -> requests.Response:
        return requests.post(
            f"{base}/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation",
            data=body(code),
            headers={"Content-Type": "application/json"},
            timeout=(5, HANG),
        )

    def test_callback_is_spooled_and_acknowledged_while_the_database_is_silent(
        self, server: str, proxy: SilentProxy, engine: Engine, tmp_path: Path
    ) -> None:
        assert self.post(server, "TKSILENT01").status_code == 200  # the held connection
        assert "TKSILENT01" in inbox_codes(engine)

        proxy.go_silent()
        response = self.post(server, "TKSILENT02")

        assert response.status_code == 200, response.text
        assert response.json()["ResultCode"] == 0
        assert any(b"TKSILENT02" in b for b in spooled_bodies(tmp_path / "instance" / "spool"))
        assert "TKSILENT02" not in inbox_codes(engine)

        health = requests.get(f"{server}/healthz", timeout=(5, HANG))
        assert health.status_code == 503

        proxy.speak()
        wait_until(lambda: "TKSILENT02" in inbox_codes(engine), timeout=60)
        assert requests.get(f"{server}/healthz", timeout=(5, HANG)).status_code == 200


class TestEngines:
    """Every other connection (worker, API, drainer, commands) comes from build_runtime."""

    @pytest.fixture
    def runtime_env(self, fresh_pg_url: str, proxy: SilentProxy) -> dict[str, str]:
        return {
            "MOMO_DATABASE_URL": through(proxy, fresh_pg_url),
            "MOMO_DB_STATEMENT_TIMEOUT_SECONDS": "1",
        }

    @pytest.mark.timeout(60)
    def test_a_session_query_raises_instead_of_waiting(
        self, runtime_env: dict[str, str], engine: Engine, proxy: SilentProxy
    ) -> None:
        runtime = build_runtime(load_settings(runtime_env))
        try:
            with runtime.sessions() as session:
                assert session.scalar(text("SELECT 1")) == 1
                proxy.go_silent()
                with pytest.raises(OperationalError, match="did not answer"):
                    session.scalar(text("SELECT 2"))
        finally:
            runtime.close()

    @pytest.mark.timeout(60)
    def test_a_worker_batch_cut_off_mid_way_rolls_back_and_is_done_once_later(
        self, runtime_env: dict[str, str], engine: Engine, proxy: SilentProxy
    ) -> None:
        with engine.begin() as connection:
            connection.execute(InboxItem.__table__.insert(), confirmation("TKSILENT03"))
        runtime = build_runtime(load_settings(runtime_env))
        parse = parser_for(runtime)

        def parse_then_fall_silent(item: Any) -> Callback:
            proxy.go_silent()  # the batch has claimed its rows; its writes get no answer
            return parse(item)

        try:
            with pytest.raises(OperationalError):
                _one_batch(runtime, parse_then_fall_silent)
            with engine.connect() as connection:
                status, attempts = connection.execute(
                    select(InboxItem.status, InboxItem.attempts)
                ).one()
                payments = connection.scalar(select(func.count()).select_from(Payment))
            assert (status, attempts, payments) == (INBOX_PENDING, 0, 0)

            proxy.speak()
            # the server holds the cut-off batch's row lock until it learns that session is
            # gone (its end of stream arrives with the healing, or at worst the
            # idle_in_transaction_session_timeout ends it); the sweeper asks again meanwhile
            wait_until(lambda: drain_inbox(runtime).claimed, timeout=HANG, interval=0.5)
            with engine.connect() as connection:
                status = connection.scalar(select(InboxItem.status))
                codes = list(connection.scalars(select(Payment.code)))
            assert (status, codes) == (INBOX_PROCESSED, ["TKSILENT03"])
        finally:
            runtime.close()
