"""Telling "the database is unreachable" from "the database refuses this row".

The two call for opposite answers. An unreachable database is a passing state:
the callback waits in the spool and is acknowledged. A row the database refuses
for its content (a NUL character, a lone surrogate, text longer than its column,
a violated constraint) is refused every time, so waiting only blocks what comes
after it. Such a row is stored instead in a form every database takes (the raw
body bytes, which are always storable, with the offending text fields escaped)
and marked rejected with the reason, where an operator can see it.

Most refusals are known before the INSERT (``unstorable``); the database's own
verdict (``is_refusal``) catches the rest.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from sqlalchemy import String, Table
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from matcher.db import first_line
from matcher.models import INBOX_REJECTED, InboxItem
from matcher.text import unfit

#: the reason of an inbox row stored in its safe form
UNSTORABLE = "unstorable_text"

TABLE: Table = InboxItem.__table__  # type: ignore[assignment]
#: text columns of an inbox row and their length bound (None: unbounded)
TEXT_COLUMNS: dict[str, int | None] = {
    c.key: c.type.length for c in TABLE.columns if isinstance(c.type, String)
}
SPOOL_ID_CONSTRAINT = "uq_inbox_spool_id"


class RowRefused(Exception):
    """The database refuses this row for its content; trying again changes nothing.

    Deliberately not an SQLAlchemyError: whoever handles "database unreachable" (by
    spooling) must not take this for it.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def unstorable(row: dict[str, Any]) -> str | None:
    """Why a database would refuse this inbox row's text, or None when it would take it.

    The same on every database (SQLite would keep a NUL PostgreSQL refuses), so a
    callback gets the same answer in the embedded default as in production.
    """
    problems = []
    for column, bound in TEXT_COLUMNS.items():
        value = row.get(column)
        if isinstance(value, str):
            problem = unfit(value, bound)
            if problem:
                problems.append(f"{column} {problem}")
    return "; ".join(problems) or None


def _safe_text(value: str, bound: int | None) -> str:
    """``value`` with NUL and lone surrogates written as escapes, cut to ``bound``."""
    text = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if bound is not None and len(text) > bound:
        text = text[: bound - 3] + "..."
    return text


def refused_row(row: dict[str, Any], why: str) -> dict[str, Any]:
    """The row as every database takes it: raw body kept, text escaped, marked rejected."""
    safe = dict(row)
    for column, bound in TEXT_COLUMNS.items():
        value = safe.get(column)
        if isinstance(value, str):
            safe[column] = _safe_text(value, bound)
    earlier = f" (it was already rejected: {safe['detail']})" if safe.get("detail") else ""
    safe.update(
        status=INBOX_REJECTED,
        reason=UNSTORABLE,
        detail=_safe_text(
            f"the database cannot store this callback as sent: {why}. The raw body is "
            f"kept; its text fields are stored escaped{earlier}",
            None,
        ),
    )
    return safe


def _cause(exc: BaseException) -> BaseException:
    """The driver's own exception behind an SQLAlchemy wrapper."""
    if isinstance(exc, StatementError) and exc.orig is not None:
        return exc.orig
    return exc


def refusal_detail(exc: BaseException) -> str:
    """What the database (or its driver) said, on one line."""
    return f"the database refused the row: {first_line(exc) or type(exc).__name__}"


def is_duplicate_spool_id(exc: BaseException) -> bool:
    """A row with this spool id is in the inbox already (another drainer stored it)."""
    cause = _cause(exc)
    if isinstance(cause, psycopg.IntegrityError):
        return cause.diag.constraint_name == SPOOL_ID_CONSTRAINT
    if isinstance(cause, sqlite3.IntegrityError):
        return "inbox.spool_id" in str(cause)
    return False


def is_refusal(exc: BaseException) -> bool:
    """Does ``exc`` say the database refuses the row's content (not that it is unreachable)?

    Refusals: bad data (PostgreSQL's class 22: NUL in text, text too long, invalid
    encoding), text the driver cannot encode, and constraint violations other than the
    spool id's (which means "stored already"). Everything else (connection failures,
    timeouts, a read-only standby, a missing table) is the database not being able to
    take anything right now: the caller spools and tries again later.
    """
    cause = _cause(exc)
    refused_types = (psycopg.DataError, psycopg.IntegrityError, sqlite3.DataError)
    if isinstance(exc, DataError | IntegrityError) or isinstance(
        cause, (*refused_types, sqlite3.IntegrityError)
    ):
        return not is_duplicate_spool_id(exc)
    # raised by the driver while encoding the parameters, before anything was sent
    return isinstance(cause, UnicodeError | ValueError)
