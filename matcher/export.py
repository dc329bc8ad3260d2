"""Payments and ledger entries as CSV rows for accountants, over local days.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage
return) as a formula, and payer names and notes come from outside: such a text cell is
written with a leading apostrophe, which spreadsheets show as plain text. Amounts are
written as they are ("-50.00" is a debit, not a formula), money as decimal strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from matcher.models import Customer, LedgerEntry, Payment
from matcher.money import format_minor

PAYMENT_COLUMNS = (
    "id",
    "paid_at",
    "provider",
    "channel",
    "code",
    "amount",
    "currency",
    "status",
    "account_number",
    "payer_name",
    "phone",
    "account_reference",
    "reason",
    "confirmed_at",
    "reversed_at",
)

LEDGER_COLUMNS = (
    "id",
    "at",
    "account_number",
    "kind",
    "amount",
    "currency",
    "payment_id",
    "payment_code",
    "purchase_id",
    "created_by",
    "note",
)

#: what a spreadsheet would take for the start of a formula
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: rows read from the database at a time: an export of years holds one batch in memory
BATCH = 1000


def local_span(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """From the start of local day ``first`` to the start of the day after ``last``."""
    return (
        datetime.combine(first, time.min, zone),
        datetime.combine(last + timedelta(days=1), time.min, zone),
    )


def as_text(value: str | None) -> str:
    """Text from outside, safe to open in a spreadsheet."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat() if value is not None else ""


def payment_rows(
    session: Session, first: date, last: date, zone: ZoneInfo
) -> Iterator[dict[str, Any]]:
    """Every payment paid in local days ``first``..``last`` (both included), in the order
    they were paid, whatever list it is in."""
    start, end = local_span(first, last, zone)
    query = (
        select(Payment, Customer.account_number)
        .outerjoin(Customer, Customer.id == Payment.customer_id)
        .where(Payment.paid_at >= start, Payment.paid_at < end)
        .order_by(Payment.paid_at, Payment.id)
        .execution_options(yield_per=BATCH)
    )
    for payment, account in session.execute(query):
        yield {
            "id": payment.id,
            "paid_at": _when(payment.paid_at, zone),
            "provider": payment.provider,
            "channel": payment.channel,
            "code": as_text(payment.code),
            "amount": format_minor(payment.amount_minor),
            "currency": payment.currency,
            "status": payment.status,
            "account_number": as_text(account),
            "payer_name": as_text(payment.payer_name),
            "phone": payment.phone or "",
            "account_reference": as_text(payment.account_reference),
            "reason": payment.reason or "",
            "confirmed_at": _when(payment.confirmed_at, zone),
            "reversed_at": _when(payment.reversed_at, zone),
        }


def ledger_rows(
    session: Session, first: date, last: date, zone: ZoneInfo, currency: str
) -> Iterator[dict[str, Any]]:
    """Every balance movement made in local days ``first``..``last``, oldest first: credits
    positive, debits negative."""
    start, end = local_span(first, last, zone)
    paid = aliased(Payment)
    query = (
        select(LedgerEntry, Customer.account_number, paid.code)
        .join(Customer, Customer.id == LedgerEntry.customer_id)
        .outerjoin(paid, paid.id == LedgerEntry.payment_id)
        .where(LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
        .execution_options(yield_per=BATCH)
    )
    for entry, account, code in session.execute(query):
        yield {
            "id": entry.id,
            "at": _when(entry.created_at, zone),
            "account_number": as_text(account),
            "kind": entry.kind,
            "amount": format_minor(entry.amount_minor),
            "currency": currency,
            "payment_id": entry.payment_id if entry.payment_id is not None else "",
            "payment_code": as_text(code),
            "purchase_id": entry.purchase_id if entry.purchase_id is not None else "",
            "created_by": as_text(entry.created_by),
            "note": as_text(entry.note),
        }
