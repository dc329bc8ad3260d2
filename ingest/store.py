"""Writing a callback to the inbox in as few round trips (and as little Python) as possible.

The webhook's whole job is this one write. On PostgreSQL each web thread keeps
one autocommit connection of its own and runs a server-side prepared INSERT on
it: one round trip that commits by itself (durable when it returns), no pool
checkout, no BEGIN/COMMIT, no statement compiled per request. A connection
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
    def for_database(cls, engine: Engine, *, timeout: float | None = None) -> InboxWriter:
        """The writer for ``engine``'s database; on PostgreSQL a write (and the connect
        before it) gives up after ``timeout`` seconds when the server does not answer."""
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            url = engine.url.render_as_string(hide_password=False)
            deadlines = None
            if timeout is not None:
                deadlines = Deadlines(timeout, statement_seconds=timeout, connect_seconds=timeout)
            # one connection held per web thread (a sync gunicorn worker has one thread)
            own = make_engine(
                url, deadlines=deadlines, pool_size=4, max_overflow=-1, pool_pre_ping=False
            )
            return PostgresInboxWriter(own, owned=True)
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
    """A held autocommit psycopg connection per thread and a prepared INSERT."""

    def __init__(self, engine: Engine, *, owned: bool) -> None:
        super().__init__(engine, owned=owned)
        self._local = threading.local()
        #: until when (monotonic) writes skip a database that just failed to answer
        self._silent_until = 0.0
        # the statement SQLAlchemy would send, compiled once, with positional parameters
        # (psycopg then skips mapping names to positions on every call)
        statement = insert(TABLE).values({c: bindparam(c) for c in COLUMNS}).inline()
        compiled = statement.compile(dialect=postgresql_psycopg.dialect(paramstyle="format"))
        self.sql = str(compiled)
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        assert sorted(self.order) == sorted(COLUMNS)

    def _cursor(self) -> psycopg.Cursor[Any]:
        cursor: psycopg.Cursor[Any] | None = getattr(self._local, "cursor", None)
        if cursor is None:
            # a pooled connection kept checked out by this thread for its lifetime
            held = self.engine.raw_connection()
            connection = held.driver_connection
            assert isinstance(connection, psycopg.Connection)
            connection.autocommit = True
            self._local.held, self._local.cursor = held, connection.cursor()
            cursor = self._local.cursor
        return cursor

    def _drop(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = self._local.cursor = None
        if held is not None:
            held.invalidate()

    def store(self, row: dict[str, Any]) -> None:
        if self._silent_until and time.monotonic() < self._silent_until:
            raise StoreFailed("the database did not answer a moment ago; not waiting on it again")
        params = [row[c] for c in self.order]
        params[self.order.index("headers")] = Json(row["headers"])
        for attempt in (1, 2):
            try:
                cursor = self._cursor()
            except (psycopg.Error, DBAPIError) as exc:
                # the pool hands connect errors on unwrapped: the database is unreachable
                self._note_silence(exc)
                raise StoreFailed(f"cannot connect: {exc}") from exc
            try:
                cursor.execute(self.sql, params, prepare=True)
                self._silent_until = 0.0
                return
            except ValueError as exc:  # the driver could not encode a value (UnicodeError too)
                raise RowRefused(refusal_detail(exc)) from exc
            except psycopg.Error as exc:
                if is_refusal(exc):
                    # autocommit: the failed statement left the connection as good as before
                    raise RowRefused(refusal_detail(exc)) from exc
                # a server that turned read-only (a failover) is dropped too: the next
                # connection may reach the new primary
                broken = cursor.connection.closed or isinstance(
                    exc, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction
                )
                if broken:
                    self._drop()
                if attempt == 1 and broken and not self._note_silence(exc):
                    continue  # a connection from before a restart: a fresh one may work
                raise StoreFailed(str(exc)) from exc

    def _note_silence(self, exc: BaseException) -> bool:
        """Was ``exc`` the database not answering in time? Then skip it for a while."""
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        if not isinstance(cause, NoAnswer | psycopg.errors.ConnectionTimeout):
            return False
        self._silent_until = time.monotonic() + SILENT_HOLD_SECONDS
        return True

    def close(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = self._local.cursor = None
        if held is not None:
            held.close()
        super().close()


class StoreFailed(SQLAlchemyError):
    """The database could not take the row (unreachable, say): the spool is next."""
