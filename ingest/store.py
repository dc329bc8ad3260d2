"""Writing a callback to the inbox in as few round trips (and as little Python) as possible.

The webhook's whole job is this one write. On PostgreSQL a web process keeps a
few autocommit connections (MOMO_DB_WRITE_CONNECTIONS, however many threads it
runs) and a write takes an idle one and runs a server-side prepared INSERT on
it: one round trip that commits by itself (durable when it returns), no
BEGIN/COMMIT, no statement compiled per request. A write that finds every
connection busy past the write deadline fails like an unreachable database
(the webhook spools it), so a burst cannot use up the server's connections. A connection
found dead (say after a database restart) is replaced and the write tried once
more before the caller falls back to the spool. A database that does not answer
at all gets no second try: past the write deadline the connection is dropped,
and for a few seconds this process's writes go straight to the spool rather
than each waiting out the deadline again. Other databases (the embedded
SQLite) take the same row through SQLAlchemy Core.

Group commit: callbacks served at once on a process's threads share a write. A write
that finds none in flight goes at once (a quiet process waits for no company); rows
that arrive while one is in flight queue, and when it returns the oldest of them leads
the next write, which takes every queued row (up to MOMO_DB_WRITE_BATCH) in one
INSERT: one round trip and one commit (one WAL flush) for all of them. Each caller
still returns only once its own row is committed, or raises for its own row: a row the
database refuses spoils the whole statement, so that write is done again row by row
and only the bad row is refused.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import Insert, Table, bindparam, insert
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ingest.refusal import RowRefused, is_refusal, refusal_detail
from matcher.db import Deadlines, NoAnswer, make_engine, utcnow
from matcher.models import INBOX_PENDING, InboxItem
from matcher.text import fit

TABLE: Table = InboxItem.__table__  # type: ignore[assignment]
COLUMNS = [c.key for c in TABLE.columns if c.key != "id"]

#: after the database failed to answer a write in time, writes skip it for this long
SILENT_HOLD_SECONDS = 5.0
#: how long a write waits for a free connection when the writer was given no deadline
SLOT_WAIT_SECONDS = 5.0
#: how the writer's connections show in pg_stat_activity
APPLICATION_NAME = "momo-webhook"
#: most rows one inbox write commits together (MOMO_DB_WRITE_BATCH); 1: one row a write
WRITE_BATCH = 64
SILENT_MESSAGE = "the database did not answer a moment ago; not waiting on it again"


def inbox_row(**values: Any) -> dict[str, Any]:
    """Every column of a new inbox row, the model's defaults filled in where not given."""
    row = dict.fromkeys(COLUMNS)
    row.update(headers={}, status=INBOX_PENDING, attempts=0)
    row.update(values)
    if row["received_at"] is None:
        row["received_at"] = utcnow()
    if row["client_addr"] is not None:
        # what a proxy put in X-Forwarded-For is only a note: it never costs a callback
        row["client_addr"] = fit(row["client_addr"], InboxItem.client_addr)
    return row


class InboxWriter:
    """Through SQLAlchemy Core: any database, one short transaction per row."""

    def __init__(self, engine: Engine, *, owned: bool) -> None:
        self.engine = engine
        self.owned = owned
        self._insert: Insert = insert(TABLE)

    @classmethod
    def for_database(
        cls,
        engine: Engine,
        *,
        timeout: float | None = None,
        connections: int = 4,
        batch: int = WRITE_BATCH,
    ) -> InboxWriter:
        """The writer for ``engine``'s database. On PostgreSQL it opens at most
        ``connections`` connections, whatever the number of threads, and a write (a wait
        for a free connection, the connect, the INSERT) gives up after ``timeout`` seconds
        when the server does not answer; rows stored at once on several threads are
        committed together, up to ``batch`` in one statement (1: each on its own)."""
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            url = engine.url.render_as_string(hide_password=False)
            deadlines = None
            if timeout is not None:
                deadlines = Deadlines(timeout, statement_seconds=timeout, connect_seconds=timeout)
            connect_args = {}
            if "application_name" not in engine.url.query:
                connect_args["application_name"] = APPLICATION_NAME
            # the writer hands its connections out itself (below): the pool only opens them
            own = make_engine(
                url,
                deadlines=deadlines,
                pool_size=connections,
                max_overflow=0,
                pool_timeout=timeout if timeout is not None else SLOT_WAIT_SECONDS,
                pool_pre_ping=False,
                connect_args=connect_args,
            )
            return PostgresInboxWriter(
                own,
                owned=True,
                connections=connections,
                wait=timeout or SLOT_WAIT_SECONDS,
                batch=batch,
            )
        return cls(engine, owned=False)

    def store(self, row: dict[str, Any]) -> None:
        """Commit the row, or raise: the caller must not acknowledge without one or the other.

        Raises RowRefused when the database refuses the row for its content (no use
        trying again), an SQLAlchemyError when it cannot be reached.
        """
        for attempt in (1, 2):
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._insert, row)
                return
            except DBAPIError as exc:
                if attempt == 1 and exc.connection_invalidated:
                    continue  # a connection from before a restart: a fresh one may work
                if is_refusal(exc):
                    raise RowRefused(refusal_detail(exc)) from exc
                raise
            except ValueError as exc:  # the driver could not encode a value (UnicodeError too)
                raise RowRefused(refusal_detail(exc)) from exc

    def close(self) -> None:
        if self.owned:
            self.engine.dispose()


class PostgresInboxWriter(InboxWriter):
    """At most ``connections`` autocommit psycopg connections, each with a prepared INSERT,
    shared by every thread: a burst of callbacks on many threads never opens more, and
    rows stored at once on several threads go in one statement and one commit."""

    def __init__(
        self,
        engine: Engine,
        *,
        owned: bool,
        connections: int = 4,
        wait: float = SLOT_WAIT_SECONDS,
        batch: int = WRITE_BATCH,
    ) -> None:
        super().__init__(engine, owned=owned)
        self.connections = connections
        self.wait = wait
        self.batch = max(1, batch)
        #: one per connection this writer may use: taken for a write, given back after it
        self._slots = threading.BoundedSemaphore(connections)
        #: (pooled connection, cursor) pairs not in use; the last one given back goes first,
        #: so a quiet process keeps using one warm connection
        self._idle: list[tuple[Any, psycopg.Cursor[Any]]] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        #: until when (monotonic) writes skip a database that just failed to answer
        self._silent_until = 0.0
        #: rows waiting for the write in flight to return, oldest first, and how many
        #: writes are in flight (or handed to the thread that will lead them)
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._group_lock = threading.Lock()
        #: how many writes committed, and how many rows they held (for benches and tests)
        self.commits = 0
        self.rows = 0
        self._count_lock = threading.Lock()
        # the statement SQLAlchemy would send, compiled once, with positional parameters
        # (psycopg then skips mapping names to positions on every call)
        statement = insert(TABLE).values({c: bindparam(c) for c in COLUMNS}).inline()
        compiled = statement.compile(dialect=postgresql_psycopg.dialect(paramstyle="format"))
        self.sql = str(compiled)
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        assert sorted(self.order) == sorted(COLUMNS)
        self._headers = self.order.index("headers")
        #: the INSERT of n rows, by n (each prepared on first use, per connection)
        self._batch_sql: dict[int, str] = {1: self.sql}

    def _take(self) -> tuple[Any, psycopg.Cursor[Any]]:
        """An idle connection, or a new one (the caller holds a slot, so one may open)."""
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        # a pooled connection, kept checked out while the writer uses it
        held = self.engine.raw_connection()
        connection = held.driver_connection
        assert isinstance(connection, psycopg.Connection)
        connection.autocommit = True
        return held, connection.cursor()

    def _give_back(self, pair: tuple[Any, psycopg.Cursor[Any]]) -> None:
        with self._idle_lock:
            if not self._closed:
                self._idle.append(pair)
                return
        pair[0].close()

    def store(self, row: dict[str, Any]) -> None:
        if self._silent_until and time.monotonic() < self._silent_until:
            raise StoreFailed(SILENT_MESSAGE)
        params = [row[c] for c in self.order]
        params[self._headers] = Json(row["headers"])
        if self.batch > 1:
            self._store_grouped(params)
            return
        if not self._slots.acquire(timeout=self.wait):
            raise StoreFailed(self._busy())
        try:
            self._execute(self.sql, params)
        finally:
            self._slots.release()
        self._count(1)

    def _busy(self) -> str:
        return (
            f"all {self.connections} inbox connections (MOMO_DB_WRITE_CONNECTIONS) stayed "
            f"busy for {self.wait:g}s"
        )

    def _store_grouped(self, params: list[Any]) -> None:
        """Lead a write at once when none is in flight (or a full batch waits and a
        connection is free); otherwise queue behind it and either be taken into the next
        write, be handed the lead of it, or give up at the write deadline."""
        mine = _Pending(params)
        deadline = time.monotonic() + self.wait
        with self._group_lock:
            if self._in_flight == 0 or (
                len(self._queue) >= self.batch - 1 and self._in_flight < self.connections
            ):
                self._in_flight += 1
                mine.state = _LEAD
            else:
                mine.done = threading.Lock()
                mine.done.acquire()  # released once: when handed the lead, or when done
                self._queue.append(mine)
        if mine.done is not None:
            mine.done.acquire(timeout=max(0.0, deadline - time.monotonic()))
            # handed the lead, or done, or still queued at the deadline (so given up)
            with self._group_lock:
                if mine.state == _QUEUED:
                    self._queue.remove(mine)
                    raise StoreFailed(
                        f"the inbox write ahead of this one had not returned within "
                        f"{self.wait:g}s (MOMO_DB_WRITE_TIMEOUT_SECONDS): the database is "
                        "slow, locked or not answering"
                    )
            if mine.state == _TAKEN:
                # another thread's write carries this row; it has a deadline of its own
                mine.done.acquire()
            if mine.state == _DONE:
                if mine.error is not None:
                    raise mine.error
                return
        self._lead(mine, deadline)

    def _lead(self, mine: _Pending, deadline: float) -> None:
        """Write this row and the oldest queued ones in one statement, tell each waiting
        thread how its row fared, and hand the lead of the next write on."""
        with self._group_lock:
            batch = [mine]
            while self._queue and len(batch) < self.batch:
                other = self._queue.popleft()
                other.state = _TAKEN
                batch.append(other)
            mine.state = _TAKEN
        outcomes: list[BaseException | None] | None = None
        try:
            outcomes = self._write([p.params for p in batch], deadline)
        finally:
            if outcomes is None:  # interrupted (the leader's own exception is on its way)
                interrupted = "the write carrying this row was interrupted"
                outcomes = [StoreFailed(interrupted) for _ in batch]
            with self._group_lock:
                self._in_flight -= 1
                for pending, outcome in zip(batch, outcomes, strict=True):
                    pending.error = outcome
                    pending.state = _DONE
                following = None
                if self._queue and (self._in_flight == 0 or len(self._queue) >= self.batch):
                    following = self._queue.popleft()
                    following.state = _LEAD
                    self._in_flight += 1
            if following is not None:
                following.wake()  # the next write first: its rows have waited longest
            for pending in batch[1:]:
                pending.wake()
        if outcomes[0] is not None:
            raise outcomes[0]

    def _write(self, rows: list[list[Any]], deadline: float) -> list[BaseException | None]:
        """Commit ``rows`` in one statement; for each row, None or why it is not stored."""
        if self._silent_until and time.monotonic() < self._silent_until:
            return [StoreFailed(SILENT_MESSAGE) for _ in rows]
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return [StoreFailed(self._busy()) for _ in rows]
        try:
            params = rows[0] if len(rows) == 1 else [v for row in rows for v in row]
            outcome = self._attempt(self._sql_for(len(rows)), params)
            if outcome is None:
                self._count(len(rows))
                return [None for _ in rows]
            if isinstance(outcome, RowRefused) and len(rows) > 1:
                # one row's content spoilt the statement, which stored nothing: alone,
                # each row is stored or refused on its own
                return [self._one(row) for row in rows]
            return [outcome, *(_again(outcome) for _ in rows[1:])]
        finally:
            self._slots.release()

    def _one(self, params: list[Any]) -> BaseException | None:
        if self._silent_until and time.monotonic() < self._silent_until:
            return StoreFailed(SILENT_MESSAGE)
        outcome = self._attempt(self.sql, params)
        if outcome is None:
            self._count(1)
        return outcome

    def _attempt(self, sql: str, params: list[Any]) -> RowRefused | StoreFailed | None:
        try:
            self._execute(sql, params)
        except (RowRefused, StoreFailed) as exc:
            return exc
        return None

    def _count(self, rows: int) -> None:
        with self._count_lock:
            self.commits += 1
            self.rows += rows

    def _sql_for(self, n: int) -> str:
        sql = self._batch_sql.get(n)
        if sql is None:
            values = ", ".join(["(" + ", ".join(["%s"] * len(self.order)) + ")"] * n)
            sql = self.sql[: self.sql.index(" VALUES ")] + " VALUES " + values
            self._batch_sql[n] = sql
        return sql

    def _execute(self, sql: str, params: list[Any]) -> None:
        for attempt in (1, 2):
            try:
                held, cursor = self._take()
            except (psycopg.Error, SQLAlchemyError) as exc:
                # the pool hands connect errors on unwrapped: the database is unreachable
                self._note_silence(exc)
                raise StoreFailed(f"cannot connect: {exc}") from exc
            try:
                cursor.execute(sql, params, prepare=True)
            except ValueError as exc:  # the driver could not encode a value (UnicodeError too)
                self._give_back((held, cursor))
                raise RowRefused(refusal_detail(exc)) from exc
            except psycopg.Error as exc:
                if is_refusal(exc):
                    # autocommit: the failed statement left the connection as good as before
                    self._give_back((held, cursor))
                    raise RowRefused(refusal_detail(exc)) from exc
                if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
                    # the server ended it at the write deadline (statement_timeout) or its
                    # lock_timeout: the connection is fine (dropping it would leave its
                    # backend behind while a new one opens), and a second try would wait
                    # as long again
                    self._give_back((held, cursor))
                    raise StoreFailed(str(exc)) from exc
                # a server that turned read-only (a failover) is dropped too: the next
                # connection may reach the new primary
                broken = cursor.connection.closed or isinstance(
                    exc, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction
                )
                if broken:
                    held.invalidate()
                else:
                    self._give_back((held, cursor))
                if attempt == 1 and broken and not self._note_silence(exc):
                    continue  # a connection from before a restart: a fresh one may work
                raise StoreFailed(str(exc)) from exc
            except BaseException:
                held.invalidate()  # interrupted mid-statement: its state is unknown
                raise
            self._give_back((held, cursor))
            self._silent_until = 0.0
            return

    def _note_silence(self, exc: BaseException) -> bool:
        """Was ``exc`` the database not answering in time? Then skip it for a while."""
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        if not isinstance(cause, NoAnswer | psycopg.errors.ConnectionTimeout):
            return False
        self._silent_until = time.monotonic() + SILENT_HOLD_SECONDS
        return True

    def close(self) -> None:
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for held, _cursor in idle:
            held.close()
        super().close()


# what became of a row handed to the group writer
_QUEUED, _LEAD, _TAKEN, _DONE = range(4)


class _Pending:
    """One thread's row on its way through a shared write."""

    __slots__ = ("done", "error", "params", "state")

    def __init__(self, params: list[Any]) -> None:
        self.params = params
        #: for a queued row, a lock its thread waits on (cheaper than an Event): released
        #: when the thread is handed the lead of the next write, or when the row is done
        #: (a thread that leads at once needs none)
        self.done: threading.Lock | None = None
        self.state = _QUEUED
        self.error: BaseException | None = None

    def wake(self) -> None:
        assert self.done is not None  # only queued rows are woken, and they have one
        self.done.release()


def _again(exc: BaseException) -> StoreFailed:
    """The same failure for another row of the write: each thread raises its own."""
    again = StoreFailed(str(exc))
    again.__cause__ = exc.__cause__
    return again


class StoreFailed(SQLAlchemyError):
    """The database could not take the row (unreachable, say): the spool is next."""
