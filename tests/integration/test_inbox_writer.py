"""The webhook's inbox write on real PostgreSQL: a few held autocommit connections, shared."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from core.config import Settings
from ingest.providers import build_runtime
from ingest.refusal import RowRefused
from ingest.spool import Spool
from ingest.store import COLUMNS, InboxWriter, PostgresInboxWriter, StoreFailed, inbox_row
from matcher.db import make_engine, make_session_factory
from matcher.migrate import upgrade
from matcher.models import INBOX_REJECTED, InboxItem
from momo.app import create_app
from tests.conftest import PATH_TOKEN, mpesa_block, sample_bytes, webhook_url
from tests.integration.conftest import ADMIN_URL, wait_until

pytestmark = pytest.mark.integration

NAIROBI = timezone(timedelta(hours=3))
#: what pg_stat_activity shows for a backend whose last statement was the writer's INSERT
WRITER_QUERY = "INSERT INTO inbox %"


@pytest.fixture
def engine(fresh_pg_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=[1, 64], ids=["per-row", "group"])
def writer(engine: Engine, request: pytest.FixtureRequest) -> Iterator[PostgresInboxWriter]:
    """The writer with one commit per row, and with group commit (the default)."""
    writer = InboxWriter.for_database(engine, batch=request.param)
    assert isinstance(writer, PostgresInboxWriter)
    yield writer
    writer.close()


@pytest.fixture
def admin(fresh_pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own to the same database, beside the writer's."""
    url = make_url(fresh_pg_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        yield conn


def confirmation(code: str, **changes: Any) -> dict[str, Any]:
    body = sample_bytes("c2b_confirmation_paybill_plain.json").replace(b"TKQ4A91B2C", code.encode())
    values: dict[str, Any] = {
        "provider": "mpesa",
        "kind": "c2b/confirmation",
        "body": body,
        "headers": {"Content-Type": "application/json", "User-Agent": "Daraja/\u00e9 1.0"},
        "client_addr": "196.201.214.200",
        "code": code,
    }
    values.update(changes)
    return inbox_row(**values)


def stored(engine: Engine, code: str) -> list[dict[str, Any]]:
    with make_session_factory(engine)() as session:
        items = session.scalars(select(InboxItem).where(InboxItem.code == code))
        return [{c: getattr(item, c) for c in COLUMNS} for item in items]


def inbox_count(engine: Engine) -> int:
    with make_session_factory(engine)() as session:
        return int(session.scalar(select(func.count()).select_from(InboxItem)) or 0)


def writer_backends(admin: psycopg.Connection[Any]) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE %s"
        " ORDER BY pid",
        (WRITER_QUERY,),
    ).fetchall()
    return [pid for (pid,) in rows]


@contextmanager
def refusing_connections(database_url: str) -> Iterator[None]:
    """While inside, the database takes no new connections (as during a restart)."""
    name = make_url(database_url).database
    with psycopg.connect(ADMIN_URL, autocommit=True) as server:
        server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            yield
        finally:
            server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def terminate(admin: psycopg.Connection[Any], pid: int) -> None:
    assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    wait_until(lambda: pid not in writer_backends(admin), timeout=10)


class TestStore:
    @pytest.mark.parametrize(
        "row",
        [
            confirmation("TKPGROW001"),
            confirmation(
                "TKPGROW002", received_at=datetime(2025, 11, 3, 14, 30, 15, tzinfo=NAIROBI)
            ),
            inbox_row(
                provider="mpesa",
                kind="stk",
                body=b"\x00\xff not json",
                client_addr=None,
                status=INBOX_REJECTED,
                reason="invalid_json",
                detail="not JSON: line 1",
                code="TKPGROW003",
            ),
        ],
        ids=["pending", "local-time", "rejected"],
    )
    def test_a_row_reads_back_with_every_column_as_built(
        self, writer: PostgresInboxWriter, engine: Engine, row: dict[str, Any]
    ) -> None:
        writer.store(row)

        [back] = stored(engine, row["code"])  # from another connection: committed already
        assert back == row
        assert isinstance(back["body"], bytes)
        assert back["received_at"].utcoffset() == timedelta(0)
        assert back["received_at"] == row["received_at"]

    def test_the_prepared_insert_stores_what_the_core_insert_stores(
        self, writer: PostgresInboxWriter, engine: Engine
    ) -> None:
        when = datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)
        writer.store(confirmation("TKPGSAME01", received_at=when))
        InboxWriter(engine, owned=False).store(confirmation("TKPGSAME02", received_at=when))

        [fast] = stored(engine, "TKPGSAME01")
        [core] = stored(engine, "TKPGSAME02")
        assert core["body"].replace(b"TKPGSAME02", b"TKPGSAME01") == fast["body"]
        del fast["body"], fast["code"], core["body"], core["code"]
        assert fast == core


class TestBrokenConnection:
    def test_after_its_connection_is_killed_the_next_store_reconnects_and_stores_once(
        self, writer: PostgresInboxWriter, engine: Engine, admin: psycopg.Connection[Any]
    ) -> None:
        writer.store(confirmation("TKPGKILL01"))
        [pid] = writer_backends(admin)
        terminate(admin, pid)

        writer.store(confirmation("TKPGKILL02"))

        assert len(stored(engine, "TKPGKILL02")) == 1
        assert inbox_count(engine) == 2
        [new_pid] = writer_backends(admin)
        assert new_pid != pid

    def test_a_database_still_refusing_connections_after_the_kill_raises_an_sqlalchemy_error(
        self, writer: PostgresInboxWriter, admin: psycopg.Connection[Any], fresh_pg_url: str
    ) -> None:
        writer.store(confirmation("TKPGDOWN01"))
        [pid] = writer_backends(admin)
        with refusing_connections(fresh_pg_url):
            terminate(admin, pid)
            with pytest.raises(SQLAlchemyError):  # the webhook's signal to spool
                writer.store(confirmation("TKPGDOWN02"))

    def test_once_the_database_is_back_the_writer_stores_again(
        self,
        writer: PostgresInboxWriter,
        engine: Engine,
        admin: psycopg.Connection[Any],
        fresh_pg_url: str,
    ) -> None:
        writer.store(confirmation("TKPGBACK01"))
        [pid] = writer_backends(admin)
        with refusing_connections(fresh_pg_url):
            terminate(admin, pid)
            # which exception is the test above; here only that nothing was stored
            with pytest.raises((SQLAlchemyError, psycopg.Error)):
                writer.store(confirmation("TKPGBACK02"))

        writer.store(confirmation("TKPGBACK03"))

        counts = [len(stored(engine, c)) for c in ("TKPGBACK01", "TKPGBACK02", "TKPGBACK03")]
        assert counts == [1, 0, 1]

    def test_a_database_that_cannot_be_reached_raises_an_sqlalchemy_error(
        self, fresh_pg_url: str
    ) -> None:
        url = make_url(fresh_pg_url).set(database="momo_no_such_database")
        engine = make_engine(url.render_as_string(hide_password=False))
        writer = InboxWriter.for_database(engine)
        try:
            with pytest.raises(SQLAlchemyError):
                writer.store(confirmation("TKPGNODB01"))
        finally:
            writer.close()
            engine.dispose()


def test_the_webhook_spools_and_acknowledges_while_postgresql_is_unreachable(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    url = make_url(fresh_pg_url).set(database="momo_no_such_database")
    runtime = build_runtime(
        Settings(
            database_url=url.render_as_string(hide_password=False),
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
    )
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
    runtime.spool = spool
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    try:
        response = app.test_client().post(
            webhook_url("c2b/confirmation"),
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            content_type="application/json",
        )

        assert response.status_code == 200
        assert response.get_json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
        assert spool.has_records()
    finally:
        runtime.close()


class TestRefusedRow:
    @pytest.mark.parametrize(
        "change",
        [
            {"provider": "p" * 33},  # VARCHAR(32)
            {"kind": "k" * 41},  # VARCHAR(40)
            {"detail": "a NUL \x00 byte"},  # text cannot hold NUL
            {"reason": "ws_CO_\ud800"},  # a lone surrogate cannot be encoded at all
        ],
        ids=["provider-too-long", "kind-too-long", "nul-in-text", "lone-surrogate"],
    )
    def test_a_refused_row_raises_row_refused_and_the_next_row_still_stores(
        self,
        writer: PostgresInboxWriter,
        engine: Engine,
        admin: psycopg.Connection[Any],
        change: dict[str, Any],
    ) -> None:
        writer.store(confirmation("TKPGREF001"))
        [pid] = writer_backends(admin)

        with pytest.raises(RowRefused) as refused:
            writer.store(confirmation("TKPGREF002", **change))

        # not an SQLAlchemyError: the webhook must not take it for "database down" and spool it
        assert not isinstance(refused.value, SQLAlchemyError)
        assert refused.value.detail.startswith("the database refused the row: ")
        writer.store(confirmation("TKPGREF003"))
        assert stored(engine, "TKPGREF002") == []
        assert len(stored(engine, "TKPGREF003")) == 1
        assert inbox_count(engine) == 2
        assert writer_backends(admin) == [pid]  # a refused row is no reason to reconnect

    def test_the_core_writer_also_tells_a_refused_row_from_an_unreachable_database(
        self, engine: Engine
    ) -> None:
        writer = InboxWriter(engine, owned=False)
        with pytest.raises(RowRefused):
            writer.store(confirmation("TKPGREF004", detail="NUL \x00"))
        with pytest.raises(RowRefused):
            writer.store(confirmation("TKPGREF005", reason="\udfff"))
        writer.store(confirmation("TKPGREF006"))
        assert inbox_count(engine) == 1


class TestThreads:
    def test_two_threads_storing_at_once_use_at_most_a_connection_each_and_every_row_lands(
        self, writer: PostgresInboxWriter, engine: Engine, admin: psycopg.Connection[Any]
    ) -> None:
        per_thread = 50
        stored_all = threading.Barrier(3, timeout=30)
        checked = threading.Event()
        errors: list[BaseException] = []

        def store_many(n: int) -> None:
            try:
                for i in range(per_thread):
                    writer.store(confirmation(f"TKPGT{n}{i:04d}"))
                    if i == 0:
                        time.sleep(0.05)  # let the other thread start writing too
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
            finally:
                stored_all.wait()
                checked.wait(30)

        threads = [threading.Thread(target=store_many, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        try:
            stored_all.wait()
            backends = writer_backends(admin)
        finally:
            checked.set()
            for t in threads:
                t.join(30)

        assert errors == []
        assert 1 <= len(backends) <= 2  # shared: a thread may take the other's idle one
        with make_session_factory(engine)() as session:
            codes = set(session.scalars(select(InboxItem.code)))
        assert codes == {f"TKPGT{n}{i:04d}" for n in range(2) for i in range(per_thread)}
        assert inbox_count(engine) == 2 * per_thread

    def test_a_write_held_by_a_lock_fails_to_the_spool_and_keeps_its_connection(
        self, engine: Engine, admin: psycopg.Connection[Any]
    ) -> None:
        writer = InboxWriter.for_database(engine, timeout=1, connections=1)
        assert isinstance(writer, PostgresInboxWriter)
        writer.store(confirmation("TKPGBUSY01"))
        backends = writer_backends(admin)
        try:
            with admin.transaction():
                admin.execute("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
                # the server gives up at its lock_timeout, inside the write deadline
                with pytest.raises(StoreFailed, match="lock timeout"):
                    writer.store(confirmation("TKPGBUSYX1"))
            # the connection was fine: kept, not dropped for a new one beside its backend
            assert writer_backends(admin) == backends
            writer.store(confirmation("TKPGBUSY03"))
        finally:
            writer.close()
        assert {r["code"] for r in stored(engine, "TKPGBUSY03")} == {"TKPGBUSY03"}
        assert inbox_count(engine) == 2

    def test_a_write_that_finds_every_connection_busy_past_the_deadline_fails_to_the_spool(
        self, engine: Engine
    ) -> None:
        writer = InboxWriter.for_database(engine, timeout=1, connections=1)
        assert isinstance(writer, PostgresInboxWriter)
        try:
            # the one connection is another write's for longer than the deadline
            assert writer._slots.acquire(timeout=1)
            try:
                with pytest.raises(StoreFailed, match="MOMO_DB_WRITE_CONNECTIONS"):
                    writer.store(confirmation("TKPGBUSY02"))
            finally:
                writer._slots.release()
            writer.store(confirmation("TKPGBUSY04"))
        finally:
            writer.close()
        assert {r["code"] for r in stored(engine, "TKPGBUSY04")} == {"TKPGBUSY04"}
