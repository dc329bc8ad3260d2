"""Group commit in the webhook's inbox writer, on real PostgreSQL: rows stored at once on
several threads share one INSERT and one commit, and each caller still learns the fate
of its own row (stored, refused, or the spool's turn) and of no other.

To make "at once" certain rather than likely, a test holds a SHARE lock on the inbox
while the first write is in flight: that write waits on the lock, the rows stored
meanwhile queue behind it, and the test lets go once they have all queued.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine, make_url

from ingest.refusal import RowRefused
from ingest.store import InboxWriter, PostgresInboxWriter, StoreFailed, inbox_row
from matcher.db import make_engine
from matcher.migrate import upgrade
from matcher.models import InboxItem
from tests.conftest import sample_bytes
from tests.integration.conftest import wait_until
from tests.silent_proxy import SilentProxy

pytestmark = pytest.mark.integration

#: longer than any write deadline here; a thread still running after it is hanging
HANG = 30


def confirmation(code: str, **changes: Any) -> dict[str, Any]:
    body = sample_bytes("c2b_confirmation_paybill_plain.json").replace(b"TKQ4A91B2C", code.encode())
    values: dict[str, Any] = {
        "provider": "mpesa",
        "kind": "c2b/confirmation",
        "body": body,
        "headers": {"Content-Type": "application/json"},
        "client_addr": "196.201.214.200",
        "code": code,
    }
    values.update(changes)
    return inbox_row(**values)


@pytest.fixture
def engine(fresh_pg_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def admin(fresh_pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    url = make_url(fresh_pg_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        yield conn


def make_writer(engine: Engine, **options: Any) -> PostgresInboxWriter:
    # a lock_timeout (half the deadline) well past the time the tests hold their lock
    options.setdefault("timeout", 20)
    writer = InboxWriter.for_database(engine, **options)
    assert isinstance(writer, PostgresInboxWriter)
    return writer


def inbox_codes(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.scalars(select(InboxItem.code)))


def transactions_that_wrote(admin: psycopg.Connection[Any]) -> int:
    """How many transactions the inbox's rows were committed in (rows of one share xmin)."""
    row = admin.execute("SELECT count(DISTINCT xmin::text) FROM inbox").fetchone()
    assert row is not None
    return int(row[0])


class Callers:
    """Threads that each store one row and keep what happened to it."""

    def __init__(self, writer: PostgresInboxWriter) -> None:
        self.writer = writer
        self.outcomes: dict[str, BaseException | None] = {}
        self.threads: list[threading.Thread] = []

    def store(self, row: dict[str, Any]) -> None:
        thread = threading.Thread(target=self._store, args=(row,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _store(self, row: dict[str, Any]) -> None:
        try:
            self.writer.store(row)
        except Exception as exc:  # kept for the test's assertions
            self.outcomes[row["code"]] = exc
        else:
            self.outcomes[row["code"]] = None

    def join(self) -> dict[str, BaseException | None]:
        for thread in self.threads:
            thread.join(HANG)
        assert [t for t in self.threads if t.is_alive()] == [], "a caller is still waiting"
        return self.outcomes


def queued(writer: PostgresInboxWriter) -> int:
    with writer._group_lock:
        return len(writer._queue)


def waiting_on_lock(admin: psycopg.Connection[Any]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO inbox %'"
    ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def held_inbox(database_url: str) -> Iterator[None]:
    """While inside, a SHARE lock on the inbox, from a connection of its own: inserts wait."""
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        conn.execute("LOCK TABLE inbox IN SHARE MODE")
        yield
        conn.commit()


class TestBatching:
    def test_a_quiet_caller_is_written_at_once_in_a_batch_of_one(self, engine: Engine) -> None:
        writer = make_writer(engine)
        try:
            writer.store(confirmation("TKGCQUIET1"))
            assert (writer.commits, writer.rows) == (1, 1)
            writer.store(confirmation("TKGCQUIET2"))
            assert (writer.commits, writer.rows) == (2, 2)
        finally:
            writer.close()
        assert inbox_codes(engine) == ["TKGCQUIET1", "TKGCQUIET2"]

    def test_rows_stored_while_a_write_is_in_flight_share_the_next_commit(
        self, engine: Engine, admin: psycopg.Connection[Any], fresh_pg_url: str
    ) -> None:
        writer = make_writer(engine)
        callers = Callers(writer)
        codes = [f"TKGCSHARE{n:02d}" for n in range(16)]
        try:
            with held_inbox(fresh_pg_url):
                callers.store(confirmation(codes[0]))
                wait_until(lambda: waiting_on_lock(admin) == 1)
                for code in codes[1:]:
                    callers.store(confirmation(code))
                wait_until(lambda: queued(writer) == 15)
            outcomes = callers.join()
        finally:
            writer.close()

        assert outcomes == dict.fromkeys(codes)
        assert inbox_codes(engine) == codes  # each once
        # the first row alone, then the fifteen that queued behind it in one commit
        assert transactions_that_wrote(admin) == 2
        assert (writer.commits, writer.rows) == (2, 16)

    def test_a_write_takes_at_most_the_batch_cap_of_the_queued_rows(
        self, engine: Engine, admin: psycopg.Connection[Any], fresh_pg_url: str
    ) -> None:
        writer = make_writer(engine, batch=4, connections=1)
        callers = Callers(writer)
        codes = [f"TKGCCAP{n:03d}" for n in range(10)]
        try:
            with held_inbox(fresh_pg_url):
                callers.store(confirmation(codes[0]))
                wait_until(lambda: waiting_on_lock(admin) == 1)
                for code in codes[1:]:
                    callers.store(confirmation(code))
                wait_until(lambda: queued(writer) == 9)
            outcomes = callers.join()
        finally:
            writer.close()

        assert outcomes == dict.fromkeys(codes)
        assert inbox_codes(engine) == codes
        assert transactions_that_wrote(admin) == 4  # 1, then 4, 4 and 2

    def test_many_threads_storing_at_once_store_every_row_once(
        self, engine: Engine, admin: psycopg.Connection[Any]
    ) -> None:
        writer = make_writer(engine)
        threads, per_thread = 16, 25
        go = threading.Barrier(threads, timeout=HANG)
        errors: list[BaseException] = []

        def store_many(n: int) -> None:
            go.wait()
            for i in range(per_thread):
                try:
                    writer.store(confirmation(f"TKGCMANY{n:02d}{i:03d}"))
                except Exception as exc:  # reported by the assertion below
                    errors.append(exc)

        workers = [threading.Thread(target=store_many, args=(n,)) for n in range(threads)]
        try:
            for t in workers:
                t.start()
            for t in workers:
                t.join(HANG)
        finally:
            writer.close()

        assert errors == []
        expected = sorted(
            f"TKGCMANY{n:02d}{i:03d}" for n in range(threads) for i in range(per_thread)
        )
        assert inbox_codes(engine) == expected
        assert writer.rows == threads * per_thread
        assert transactions_that_wrote(admin) == writer.commits


class TestTheWriteDeadline:
    def test_rows_still_queued_at_the_deadline_fail_to_the_spool_and_leave_no_trace(
        self, engine: Engine, fresh_pg_url: str
    ) -> None:
        # no server-side timeouts: the write in flight waits on the lock for as long as
        # the test holds it, and only the queued callers' deadline (0.5 s) can end theirs
        writer = PostgresInboxWriter(make_engine(fresh_pg_url), owned=True, wait=0.5)
        callers = Callers(writer)
        try:
            with held_inbox(fresh_pg_url):
                callers.store(confirmation("TKGCLATE00"))
                wait_until(lambda: writer._in_flight == 1)
                for n in range(1, 6):
                    callers.store(confirmation(f"TKGCLATE{n:02d}"))
                wait_until(lambda: len(callers.outcomes) == 5, timeout=HANG)
                assert queued(writer) == 0  # each took its row out of the queue
            outcomes = callers.join()
            writer.store(confirmation("TKGCLATE06"))  # nothing left behind in the writer
        finally:
            writer.close()

        assert outcomes.pop("TKGCLATE00") is None
        assert len(outcomes) == 5
        for exc in outcomes.values():
            assert isinstance(exc, StoreFailed)
            assert "had not returned within 0.5s" in str(exc)
        assert inbox_codes(engine) == ["TKGCLATE00", "TKGCLATE06"]


class TestARefusedRowInABatch:
    @pytest.mark.parametrize(
        "change",
        [
            {"kind": "k" * 41},  # VARCHAR(40): the server refuses the statement
            {"detail": "a NUL \x00 byte"},  # the driver refuses before sending
            {"reason": "ws_CO_\ud800"},  # a lone surrogate cannot be encoded at all
        ],
        ids=["kind-too-long", "nul-in-text", "lone-surrogate"],
    )
    def test_only_the_bad_rows_caller_gets_row_refused_and_the_others_are_stored(
        self,
        engine: Engine,
        admin: psycopg.Connection[Any],
        fresh_pg_url: str,
        change: dict[str, Any],
    ) -> None:
        writer = make_writer(engine)
        callers = Callers(writer)
        good = [f"TKGCGOOD{n:02d}" for n in range(6)]
        try:
            with held_inbox(fresh_pg_url):
                callers.store(confirmation(good[0]))
                wait_until(lambda: waiting_on_lock(admin) == 1)
                for code in good[1:3]:
                    callers.store(confirmation(code))
                wait_until(lambda: queued(writer) == 2)
                callers.store(confirmation("TKGCBAD001", **change))
                wait_until(lambda: queued(writer) == 3)
                for code in good[3:]:
                    callers.store(confirmation(code))
                wait_until(lambda: queued(writer) == 6)
            outcomes = callers.join()
        finally:
            writer.close()

        refused = outcomes.pop("TKGCBAD001")
        assert isinstance(refused, RowRefused)
        assert refused.detail.startswith("the database refused the row: ")
        assert outcomes == dict.fromkeys(good)
        assert inbox_codes(engine) == good


class TestADatabaseThatFallsSilentMidBurst:
    @pytest.mark.timeout(120)
    def test_every_waiting_caller_gets_store_failed_and_none_hangs(
        self, fresh_pg_url: str, engine: Engine
    ) -> None:
        url = make_url(fresh_pg_url)
        with SilentProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            through = url.set(host="127.0.0.1", port=proxy.port)
            source = make_engine(through.render_as_string(hide_password=False))
            writer = make_writer(source, timeout=2)
            callers = Callers(writer)
            try:
                writer.store(confirmation("TKGCSIL000"))  # a connection, open and warm
                proxy.go_silent()
                callers.store(confirmation("TKGCSIL001"))
                wait_until(lambda: writer._in_flight == 1, timeout=HANG, interval=0.01)
                for n in range(2, 12):
                    callers.store(confirmation(f"TKGCSIL{n:03d}"))
                outcomes = callers.join()
            finally:
                proxy.speak()
                writer.close()
                source.dispose()

        assert len(outcomes) == 11
        assert all(isinstance(exc, StoreFailed) for exc in outcomes.values()), outcomes
        assert inbox_codes(engine) == ["TKGCSIL000"]
