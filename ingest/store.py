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
"""

from __future__ import annotations

import threading
import time
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
        cls, engine: Engine, *, timeout: float | None = None, connections: int = 4
    ) -> InboxWriter:
        """The writer for ``engine``'s database. On PostgreSQL it opens at most
        ``connections`` connections, whatever the number of threads, and a write (a wait
        for a free connection, the connect, the INSERT) gives up after ``timeout`` seconds
        when the server does not answer."""
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
                own, owned=True, connections=connections, wait=timeout or SLOT_WAIT_SECONDS
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
    shared by every thread: a burst of callbacks on many threads never opens more."""

    def __init__(
        self,
        engine: Engine,
        *,
        owned: bool,
        connections: int = 4,
        wait: float = SLOT_WAIT_SECONDS,
    ) -> None:
        super().__init__(engine, owned=owned)
        self.connections = connections
        self.wait = wait
        #: one per connection this writer may use: taken for a write, given back after it
        self._slots = threading.BoundedSemaphore(connections)
        #: (pooled connection, cursor) pairs not in use; the last one given back goes first,
        #: so a quiet process keeps using one warm connection
        self._idle: list[tuple[Any, psycopg.Cursor[Any]]] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        #: until when (monotonic) writes skip a database that just failed to answer
        self._silent_until = 0.0
        # the statement SQLAlchemy would send, compiled once, with positional parameters
        # (psycopg then skips mapping names to positions on every call)
        statement = insert(TABLE).values({c: bindparam(c) for c in COLUMNS}).inline()
        compiled = statement.compile(dialect=postgresql_psycopg.dialect(paramstyle="format"))
        self.sql = str(compiled)
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        assert sorted(self.order) == sorted(COLUMNS)

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
            raise StoreFailed("the database did not answer a moment ago; not waiting on it again")
        params = [row[c] for c in self.order]
        params[self.order.index("headers")] = Json(row["headers"])
        if not self._slots.acquire(timeout=self.wait):
            raise StoreFailed(
                f"all {self.connections} inbox connections (MOMO_DB_WRITE_CONNECTIONS) stayed "
                f"busy for {self.wait:g}s"
            )
        try:
            self._store(params)
        finally:
            self._slots.release()

    def _store(self, params: list[Any]) -> None:
        for attempt in (1, 2):
            try:
                held, cursor = self._take()
            except (psycopg.Error, SQLAlchemyError) as exc:
                # the pool hands connect errors on unwrapped: the database is unreachable
                self._note_silence(exc)
                raise StoreFailed(f"cannot connect: {exc}") from exc
            try:
                cursor.execute(self.sql, params, prepare=True)
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


class StoreFailed(SQLAlchemyError):
    """The database could not take the row (unreachable, say): the spool is next."""
