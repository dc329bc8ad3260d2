"""M-PESA statements: the CSV the M-PESA organisation portal exports, for shortcodes
whose callbacks were missed (or never set up) and that have no pull API.

``read_statement`` finds the header row among the portal's title lines and sorts the
rows: each completed Paid In row is an ``Entry`` whose body (the row as JSON, keyed by
the portal's column names) is stored in the inbox as kind ``statement`` and parsed by
the M-PESA adapter (``entry_fields`` here, then the adapter's field readers), so a
payment recovered from a statement is recorded exactly like a callback: same provider,
same receipt code, a known one a duplicate. A completed reversal (a Withdrawn row whose
Details say "Reversal" and name the receipt reversed) is an ``Entry`` too: the adapter
reads it as the reversal of that payment. Other withdrawals, charges and rows that are not
completed are ``Skipped``; a row that cannot be read is ``Malformed``, with its line
number, and the rest of the file is still read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from matcher.notifications import InvalidCallback

#: the inbox kind of a statement row; never a callback URL (no provider posts it)
STATEMENT: Final = "statement"
#: the channel a payment recovered from a statement is recorded with
CHANNEL: Final = "statement"
COMPLETED: Final = "completed"

RECEIPT_NO: Final = "Receipt No."
COMPLETION_TIME: Final = "Completion Time"
INITIATION_TIME: Final = "Initiation Time"
DETAILS: Final = "Details"
STATUS: Final = "Transaction Status"
PAID_IN: Final = "Paid In"
WITHDRAWN: Final = "Withdrawn"
BALANCE: Final = "Balance"
OTHER_PARTY: Final = "Other Party Info"
ACCOUNT: Final = "A/C No."

#: the portal's columns, by their name reduced to letters (case, spaces, dots ignored)
COLUMNS: Final = {
    re.sub(r"[^a-z]", "", name.casefold()): name
    for name in (
        RECEIPT_NO,
        COMPLETION_TIME,
        INITIATION_TIME,
        DETAILS,
        STATUS,
        PAID_IN,
        WITHDRAWN,
        BALANCE,
        OTHER_PARTY,
        ACCOUNT,
    )
}
#: without these a statement cannot say which payments were made
REQUIRED: Final = (RECEIPT_NO, COMPLETION_TIME, STATUS, PAID_IN)

# "1500", "1500.00", "1,500.00": thousands groups of three only, so "1,50" is no amount
_STATEMENT_AMOUNT: Final = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
_TIME_FORMATS: Final = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
)
_SHOWN_MAX: Final = 60
#: a reversal row's Details: the word "reversal" and the receipt reversed. Chosen, not
#: confirmed: the portal's exact wording is not published; statements users shared write
#: e.g. "Reversal of QK81AB12CD" or "Pay Bill Reversal ... QK81AB12CD", and this reads any
#: text holding both.
_REVERSAL_WORD: Final = re.compile(r"\brevers(?:al|ed)\b", re.IGNORECASE)
_RECEIPT_IN_TEXT: Final = re.compile(r"\b(?=[A-Z0-9]*[0-9])[A-Z][A-Z0-9]{9}\b")


@dataclass(frozen=True)
class Entry:
    """A completed Paid In row: a payment, to be stored in the inbox as ``body``."""

    line: int
    receipt: str
    body: bytes


@dataclass(frozen=True)
class Skipped:
    """A row that is no payment: ``why`` is "not_completed" or "withdrawal"."""

    line: int
    receipt: str
    why: str


@dataclass(frozen=True)
class Malformed:
    """A row that cannot be read; ``message`` says what is wrong with it."""

    line: int
    message: str


Row = Entry | Skipped | Malformed


class NotAStatement(ValueError):
    """The file has no header row with the portal's columns."""


def _key(cell: str) -> str:
    return re.sub(r"[^a-z]", "", cell.casefold())


def _header(cells: list[str]) -> dict[int, str] | None:
    """Column index -> the portal's column name, when ``cells`` is the header row."""
    found = {i: COLUMNS[_key(c)] for i, c in enumerate(cells) if _key(c) in COLUMNS}
    return found if set(REQUIRED) <= set(found.values()) else None


def read_statement(lines: Iterable[str]) -> Iterator[Row]:
    """Every row below the header, in order; raises NotAStatement when there is no header.

    Lines before the header (the portal's title, the account, the period) are ignored,
    as are blank rows.
    """
    reader = csv.reader(iter(lines))
    columns: dict[int, str] | None = None
    for cells in reader:
        if columns is None:
            columns = _header(cells)
            continue
        if not any(cell.strip() for cell in cells):
            continue
        yield _row(reader.line_num, cells, columns)
    if columns is None:
        needed = ", ".join(REQUIRED)
        raise NotAStatement(
            f"no header row with the columns {needed}: expected the CSV the M-PESA "
            "organisation portal exports (Statement, Export, CSV)"
        )


def _row(line: int, cells: list[str], columns: dict[int, str]) -> Row:
    if len(cells) < max(columns) + 1:
        return Malformed(
            line, f"has {len(cells)} fields, fewer than the header's {max(columns) + 1}"
        )
    row = {name: cells[i].strip() for i, name in columns.items()}
    receipt = row[RECEIPT_NO]
    if row[STATUS].casefold() != COMPLETED:
        return Skipped(line, receipt, "not_completed")
    paid_in, withdrawn = row[PAID_IN], row.get(WITHDRAWN, "")
    if _is_zero(paid_in):
        if _is_zero(withdrawn):
            return Malformed(line, f"receipt {receipt!r} has neither Paid In nor Withdrawn")
        if reversed_receipt(row.get(DETAILS, ""), receipt) is not None:
            return Entry(line, receipt, json.dumps(row, ensure_ascii=False).encode("utf-8"))
        return Skipped(line, receipt, "withdrawal")  # a payment out, or a charge
    if not _is_zero(withdrawn):
        return Malformed(
            line, f"receipt {receipt!r} has both Paid In {paid_in!r} and Withdrawn {withdrawn!r}"
        )
    return Entry(line, receipt, json.dumps(row, ensure_ascii=False).encode("utf-8"))


def _is_zero(text: str) -> bool:
    return text.lstrip("+-").replace(",", "").strip("0.") == ""


@dataclass(frozen=True)
class Fields:
    """A stored statement row's payment fields, as text for the adapter's field readers."""

    receipt: str
    #: Paid In without its thousands separators
    amount: str
    #: Completion Time written YYYYMMDDHHMMSS, Nairobi wall-clock time
    local_time: str
    number: str | None
    payer_name: str | None
    account: str | None


@dataclass(frozen=True)
class ReversalFields:
    """A stored statement row that reverses a payment: its own receipt, the receipt it
    reversed, and its amount and time as text for the adapter's field readers."""

    receipt: str
    original_receipt: str
    amount: str
    local_time: str
    details: str


def reversed_receipt(details: str, own_receipt: str) -> str | None:
    """The receipt a reversal row's Details name, or None when it is no reversal."""
    if not _REVERSAL_WORD.search(details):
        return None
    named = [code for code in _RECEIPT_IN_TEXT.findall(details) if code != own_receipt]
    return named[0] if len(set(named)) == 1 else None


def entry_fields(body: bytes) -> Fields | ReversalFields:
    """The payment (or the reversal) a stored statement row describes, or InvalidCallback
    with a reason."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCallback(f"statement row is not JSON ({exc})", "invalid_json") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise InvalidCallback("statement row is not an object of strings", "not_an_object")
    for name in REQUIRED:
        if name != PAID_IN and not doc.get(name, "").strip():
            raise InvalidCallback(f"{name} is empty", "missing_field")
    if doc[STATUS].strip().casefold() != COMPLETED:
        raise InvalidCallback(
            f"{STATUS} {_show(doc[STATUS])} is not Completed: no money moved", "not_a_payment"
        )
    paid_in = doc.get(PAID_IN, "").strip()
    if _is_zero(paid_in):
        return _reversal_fields(doc)
    if not _STATEMENT_AMOUNT.fullmatch(paid_in):
        raise InvalidCallback(
            f"{PAID_IN} {_show(paid_in)} is not an amount like '1,500.00'", "invalid_amount"
        )
    number, payer = _other_party(doc.get(OTHER_PARTY, ""))
    return Fields(
        receipt=doc[RECEIPT_NO],
        amount=paid_in.replace(",", ""),
        local_time=_compact_time(doc[COMPLETION_TIME]),
        number=number,
        payer_name=payer,
        account=doc.get(ACCOUNT, "").strip() or None,
    )


_PERIOD: Final = re.compile(r"from\s+(.+?)\s+to\s+(.+)", re.IGNORECASE)


def statement_period(lines: Iterable[str]) -> tuple[datetime, datetime] | None:
    """The span the statement says it covers (its "Time Period:" title line, "From
    01-11-2025 00:00:00 To 03-11-2025 23:59:59"), as naive Nairobi wall-clock times;
    None when the title lines name none, or name one that cannot be read."""
    for cells in csv.reader(iter(lines)):
        if _header(cells) is not None:
            return None
        for index, cell in enumerate(cells):
            if _key(cell) != "timeperiod":
                continue
            found = _PERIOD.search(" ".join(cells[index + 1 :]))
            if found is None:
                return None
            start, end = _naive_time(found.group(1)), _naive_time(found.group(2))
            return (start, end) if start and end and start <= end else None
    return None


def entries_span(entries: Iterable[Entry]) -> tuple[datetime, datetime] | None:
    """From the earliest to the latest Completion Time of ``entries`` (naive Nairobi
    wall-clock times); None without any readable one."""
    times = []
    for entry in entries:
        try:
            doc = json.loads(entry.body)
        except ValueError:
            continue
        when = _naive_time(str(doc.get(COMPLETION_TIME, "")))
        if when is not None:
            times.append(when)
    return (min(times), max(times)) if times else None


def covered_span(span: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """The span a statement covers, from its first second up to (not including) the one
    after its last: the portal's times are to the second and its last one is included
    ("To 03-11-2025 23:59:59" covers the whole day), while coverage ends where the next
    span may start."""
    first, last = span
    return first, last + timedelta(seconds=1)


def _naive_time(value: str) -> datetime | None:
    text = " ".join(value.split())
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _reversal_fields(doc: dict[str, str]) -> ReversalFields:
    withdrawn = doc.get(WITHDRAWN, "").strip().lstrip("-")
    original = reversed_receipt(doc.get(DETAILS, ""), doc[RECEIPT_NO].strip())
    if original is None:
        raise InvalidCallback(
            f"{PAID_IN} is zero and {DETAILS} {_show(doc.get(DETAILS, ''))} names no reversed "
            "receipt: the row moved no money in",
            "not_a_payment",
        )
    if not _STATEMENT_AMOUNT.fullmatch(withdrawn):
        raise InvalidCallback(
            f"{WITHDRAWN} {_show(doc.get(WITHDRAWN, ''))} is not an amount like '1,500.00'",
            "invalid_amount",
        )
    return ReversalFields(
        receipt=doc[RECEIPT_NO].strip(),
        original_receipt=original,
        amount=withdrawn.replace(",", ""),
        local_time=_compact_time(doc[COMPLETION_TIME]),
        details=" ".join(doc.get(DETAILS, "").split()),
    )


def _compact_time(value: str) -> str:
    """``value`` as YYYYMMDDHHMMSS (what ``parse_local_time`` reads), or InvalidCallback."""
    # naive on purpose: Nairobi wall-clock time, zoned by parse_local_time
    when = _naive_time(value)
    if when is not None:
        return when.strftime("%Y%m%d%H%M%S")
    raise InvalidCallback(
        f"{COMPLETION_TIME} {_show(value)} is not a time like '2025-11-03 14:30:15'",
        "invalid_time",
    )


def _other_party(value: str) -> tuple[str | None, str | None]:
    """ "254712345678 - JOHN DOE" -> (number, name); either may be missing."""
    number, sep, name = value.partition(" - ")
    if not sep:
        text = value.strip()
        # no separator: a number alone, or a name alone (a bank, another organisation)
        if text and not any(ch.isalpha() for ch in text.replace("x", "").replace("X", "")):
            return text, None
        return None, text or None
    return number.strip() or None, " ".join(name.split()) or None


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_MAX else shown[: _SHOWN_MAX - 3] + "..."
