"""Engines and sessions for PostgreSQL (production) and SQLite (embedded default).

The caller owns the transaction: a request, a task or a CLI command opens it
with ``with session_factory.begin() as session:``; domain functions take the
session and never commit.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    any_,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

#: BIGINT ids on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime in, an aware UTC datetime out, on every database.

    SQLite has no time zones, so values are stored as naive UTC there and
    made aware again on load; a naive value on the way in is a bug and fails.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def upsert_insert(session: Session, table: Any) -> Any:
    """An INSERT on ``table`` that takes ON CONFLICT clauses, in the session's dialect
    (PostgreSQL, or SQLite for the embedded default)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(table)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deadlines:
    """How long a PostgreSQL connection waits for the server before it gives up.

    A server that stops answering without closing the connection (a network
    partition, a failover whose old address goes quiet) still has its TCP
    segments acknowledged by whatever sits in between, so neither keepalives
    nor the server's own ``statement_timeout`` end the wait: the client cuts it.
    """

    #: the client gives up on any one round trip (a statement, a commit) after this
    answer_seconds: float
    #: the server cancels a statement after this (None: only the client's deadline)
    statement_seconds: float | None = None
    #: opening a connection gives up after this (libpq counts whole seconds, at least 2)
    connect_seconds: float = 5

    @classmethod
    def for_statements(cls, seconds: float) -> Deadlines:
        """The server cancels a statement after ``seconds``; the client waits a little longer,
        so a slow statement ends with the server's clear error and a usable connection, and
        only a server that does not answer at all is cut off."""
        answer = seconds + max(1.0, seconds / 4)
        return cls(answer, statement_seconds=seconds, connect_seconds=min(5.0, answer))


class NoAnswer(psycopg.OperationalError):
    """The server did not answer within the deadline; the connection was closed."""


RV = TypeVar("RV")

#: a shorter deadline for what this thread does inside ``answer_within``
_shorter = threading.local()


@contextmanager
def answer_within(seconds: float) -> Iterator[None]:
    """Every round trip (and connect) this thread makes in the block, on an engine made with
    deadlines, gives up after ``seconds`` at most: a health probe must answer quickly where
    statements may take longer."""
    before = getattr(_shorter, "seconds", None)
    _shorter.seconds = seconds if before is None else min(before, seconds)
    try:
        yield
    finally:
        _shorter.seconds = before


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait on the server has a deadline.

    psycopg runs each round trip (execute, commit, rollback, prepare, COPY) through
    ``wait``; giving it a timeout bounds the wait in the driver itself, at no cost per
    statement beyond reading one attribute. A round trip cut off mid-way leaves the
    protocol in an unknown state, so the connection is closed and never reused.
    """

    answer_seconds: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        limit = self.answer_seconds
        shorter = getattr(_shorter, "seconds", None)
        if shorter is not None and (limit is None or shorter < limit):
            limit = shorter
        if limit is None or (timeout is not None and timeout <= limit):
            return super().wait(gen, interval, timeout)  # the caller's own, shorter timeout
        try:
            return super().wait(gen, interval, limit)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise NoAnswer(
                f"the database did not answer within {limit:g}s; the connection was closed "
                "(is PostgreSQL up and reachable from this host?)"
            ) from None


def _postgres_options(deadlines: Deadlines | None) -> dict[str, Any]:
    """Connection arguments: keepalives always; server-side timeouts when deadlines are set."""
    connect_args: dict[str, Any] = {
        # An unreachable server must fail fast: the webhook then spools instead of hanging.
        "connect_timeout": 5,
        # Notice a peer that vanished (host down, cable cut) on idle pooled connections.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if deadlines is None:
        return connect_args
    connect_args["connect_timeout"] = max(2, math.ceil(deadlines.connect_seconds))
    if deadlines.statement_seconds is not None:
        ms = int(deadlines.statement_seconds * 1000)
        options = [
            f"-c statement_timeout={ms}",
            # a lock wait fails on its own, before the statement as a whole does
            f"-c lock_timeout={max(1, ms // 2)}",
            # a client cut off mid-transaction (its last statement never reached the
            # server) does not hold its row locks for long: the server ends the session
            f"-c idle_in_transaction_session_timeout={4 * ms}",
        ]
        connect_args["options"] = " ".join(options)
    return connect_args


def make_engine(url: str, *, deadlines: Deadlines | None = None, **kwargs: Any) -> Engine:
    """An engine tuned for momo's use of each database.

    With ``deadlines`` (every long-running process and command passes them), no
    PostgreSQL wait is unbounded: statements, commits and connects give up and raise
    ``OperationalError``, and the connection that timed out is discarded.

    Its errors never show the statement's bound values: those are payers' phones and
    names, and errors travel to logs, inbox rows and task events.
    """
    kwargs["hide_parameters"] = True
    if url.startswith("sqlite"):
        # One writer at a time is SQLite's nature. Waiting for the lock (timeout) and
        # taking it at BEGIN (IMMEDIATE) turns "database is locked" races between the web
        # thread and the embedded worker into short waits.
        connect_args = {"timeout": 30, "check_same_thread": False}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_conn.cursor()
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # a connection older than this is replaced: no failover leaves one behind for long
    kwargs.setdefault("pool_recycle", 1800)
    connect_args = _postgres_options(deadlines)
    extra = dict(kwargs.pop("connect_args", {}))
    if "options" in extra and "options" in connect_args:
        extra["options"] = f"{connect_args['options']} {extra['options']}"
    connect_args.update(extra)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    if deadlines is not None and engine.dialect.driver == "psycopg":
        answer_seconds = deadlines.answer_seconds

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            shorter = getattr(_shorter, "seconds", None)
            if shorter is not None:
                timeout = max(2, math.ceil(shorter))  # libpq's least
                cparams = {
                    **cparams,
                    "connect_timeout": min(cparams.get("connect_timeout", timeout), timeout),
                }
            connection = DeadlineConnection.connect(*cargs, **cparams)
            connection.answer_seconds = answer_seconds
            return connection

    return engine


def first_line(exc: BaseException) -> str | None:
    """The first line of what the database (or its driver) said, None when it said nothing.

    Later lines, such as PostgreSQL's DETAIL, quote the row's values: payers' phones and
    names never go further than this.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig if isinstance(orig, BaseException) else exc).strip()
    return text.splitlines()[0] if text else None


def describe_error(exc: BaseException) -> str:
    """An error in one line that holds no bound value: its class and, for a database
    error, the database's own first line."""
    return f"{type(exc).__name__}: {first_line(exc) or 'no message'}"


@contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """A read-only session in which every query sees the database as of one moment.

    On PostgreSQL it is one REPEATABLE READ READ ONLY transaction: a writer committing
    between two queries cannot make their answers disagree (the default, READ COMMITTED,
    gives each statement a snapshot of its own). SQLite's one transaction is one view.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with Session(bind=connection) as session, session.begin():
            yield session


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def refuses_writes(connection: Connection) -> str | None:
    """Why the database behind ``connection`` takes no writes now, or None when it does.

    A database can answer reads and refuse every write: a failover onto a read-only
    standby, or ``default_transaction_read_only`` set. Whoever must write (the spool's
    drainer) or promise to (a health check) asks this, not merely whether it answers.
    """
    if connection.dialect.name != "postgresql":
        return None
    standby, read_only = connection.execute(
        text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
    ).one()
    if standby:
        return "it is a standby in recovery, read-only"
    if read_only == "on":
        return "its transactions are read-only (default_transaction_read_only is on)"
    return None


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} has no JSON form for a row")


def _as_json(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON text: one parameter whatever the count, which the server reads
    into the table's own row type (``json_populate_recordset``). Dumping one string is
    far cheaper for the driver than one typed array per column."""
    return json.dumps(rows, default=_json_value, separators=(",", ":"))


def insert_rows(
    session: Session, table: Any, rows: list[dict[str, Any]], returning: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (dicts with the same keys) into ``table``; the ``returning`` columns
    of the rows inserted (in no promised order: map them by a key). All or none: a row
    that breaks a constraint fails the statement.

    On PostgreSQL one ``INSERT ... SELECT`` whose text is the same whatever the count (the
    driver converts it once, the server plans it once); SQLite (the embedded default,
    one writer) takes plain statements.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name != "postgresql":
        if not returning:
            session.execute(table.insert(), rows)
            return []
        statement = table.insert().returning(*(table.c[name] for name in returning))
        return [tuple(session.execute(statement, row).one()) for row in rows]
    names = ", ".join(table.c[name].name for name in rows[0])
    answer = f" RETURNING {', '.join(returning)}" if returning else ""
    statement = text(
        f"INSERT INTO {table.name} ({names}) SELECT {names} "  # noqa: S608 - names from the model
        f"FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json)){answer}"
    )
    result = session.execute(statement, {"rows": _as_json(rows)})
    return [tuple(row) for row in result] if returning else []


def update_rows(session: Session, table: Any, key: str, rows: list[dict[str, Any]]) -> None:
    """Set each row's columns (dicts with the same keys, ``key`` among them) on the row of
    ``table`` whose ``key`` matches: one ``UPDATE ... FROM`` on PostgreSQL, one
    executemany on SQLite. The caller holds the rows (or the order they lock in does not
    matter)."""
    if not rows:
        return
    names = [table.c[name].name for name in rows[0] if name != key]
    if session.get_bind().dialect.name != "postgresql":
        statement = (
            table.update()
            .where(table.c[key] == bindparam("k_" + key))
            .values({name: bindparam("v_" + name) for name in names})
        )
        session.execute(
            statement,
            [{("k_" if n == key else "v_") + n: v for n, v in row.items()} for row in rows],
        )
        return
    sets = ", ".join(f"{name} = v.{name}" for name in names)
    statement = text(
        f"UPDATE {table.name} SET {sets} "  # noqa: S608 - names from the model
        f"FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json)) AS v "
        f"WHERE {table.name}.{key} = v.{key}"
    )
    session.execute(statement, {"rows": _as_json(rows)})


def one_of(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """``column`` is one of ``values``: ``= ANY(array)`` on PostgreSQL, whose text is the
    same for any count (converted and planned once, where ``IN (...)`` is new text for
    each count), and ``IN (...)`` on SQLite."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)
