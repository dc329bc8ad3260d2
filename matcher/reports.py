"""Read models for operators: the transaction log and revenue."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session

from matcher.errors import InvalidInput
from matcher.ledger import DISASSOCIATION, MANUAL_PAYMENT, PAYMENT_CREDIT, PURCHASE, REVERSAL
from matcher.matching import account_key
from matcher.models import (
    Customer,
    LedgerEntry,
    Payment,
    PaymentAttempt,
    Purchase,
)
from matcher.revenue import between, totals_since
from matcher.search import text_conditions

FAILED_ATTEMPT = "failed_attempt"
TRANSACTION_KINDS = (
    PAYMENT_CREDIT,
    MANUAL_PAYMENT,
    DISASSOCIATION,
    REVERSAL,
    PURCHASE,
    FAILED_ATTEMPT,
)
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
TRANSACTION_STATUSES = (COMPLETED, FAILED, CANCELLED)
#: provider name -> the attempt result codes that mean the payer cancelled (not failed);
#: supplied by the caller, which has it from the provider adapters
CancelledCodes = Mapping[str, Collection[int]]


@dataclass(frozen=True)
class TransactionFilter:
    account_number: str | None = None
    kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None


@dataclass(frozen=True)
class TransactionCursor:
    at: datetime
    source: str
    id: int


def transactions(
    session: Session,
    flt: TransactionFilter,
    *,
    region: str,
    limit: int,
    cancelled_codes: CancelledCodes,
    after: TransactionCursor | None = None,
) -> list[dict[str, Any]]:
    """Every balance movement and every attempt that moved no money, newest first.

    An attempt is ``cancelled`` when its provider lists its result code in
    ``cancelled_codes``, otherwise ``failed``.
    """
    parts: list[Any] = []
    wants_ledger = flt.kind != FAILED_ATTEMPT and flt.status in (None, COMPLETED)
    wants_attempts = (
        flt.kind in (None, FAILED_ATTEMPT)
        and flt.status in (None, FAILED, CANCELLED)
        and flt.account_number is None
    )
    # Each part is read newest first through its own (created_at, id) index and cut at
    # ``limit`` before the parts are merged: a union of whole tables would be sorted whole.
    if wants_ledger:
        part = _ledger_part(flt, region).where(
            *_after(LedgerEntry.created_at, LedgerEntry.id, "ledger", after)
        )
        parts.append(
            part.order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(limit)
        )
    if wants_attempts:
        part = _attempt_part(flt, cancelled_codes).where(
            *_after(PaymentAttempt.created_at, PaymentAttempt.id, "attempt", after)
        )
        parts.append(
            part.order_by(PaymentAttempt.created_at.desc(), PaymentAttempt.id.desc()).limit(limit)
        )
    if not parts:
        return []
    pieces = [part.subquery() for part in parts]
    rows = union_all(*(select(piece) for piece in pieces)).subquery()
    query = select(rows).order_by(rows.c.at.desc(), rows.c.source.desc(), rows.c.id.desc())
    return [dict(row._mapping) for row in session.execute(query.limit(limit))]


def _after(
    at: Any, ident: Any, source: str, after: TransactionCursor | None
) -> list[ColumnElement[bool]]:
    """Rows of one part that come after the cursor in (at, source, id) descending order."""
    if after is None:
        return []
    if source < after.source:
        return [at <= after.at]
    if source > after.source:
        return [at < after.at]
    return [tuple_(at, ident) < tuple_(after.at, after.id)]


def _time_range(column: Any, flt: TransactionFilter) -> list[ColumnElement[bool]]:
    conditions = []
    if flt.since is not None:
        conditions.append(column >= flt.since)
    if flt.until is not None:
        conditions.append(column < flt.until)
    return conditions


def _ledger_part(flt: TransactionFilter, region: str) -> Any:
    query: Any = (
        select(
            literal("ledger", String).label("source"),
            LedgerEntry.id.label("id"),
            LedgerEntry.created_at.label("at"),
            LedgerEntry.kind.label("kind"),
            literal(COMPLETED, String).label("status"),
            Customer.account_number.label("account_number"),
            LedgerEntry.amount_minor.label("amount_minor"),
            Payment.code.label("code"),
            Payment.phone.label("phone"),
            LedgerEntry.payment_id.label("payment_id"),
            Purchase.voucher_code.label("voucher_code"),
            LedgerEntry.created_by.label("created_by"),
            LedgerEntry.note.label("note"),
            cast(null(), String).label("result_code"),
            cast(null(), String).label("result_desc"),
        )
        .join(Customer, Customer.id == LedgerEntry.customer_id)
        .outerjoin(Payment, Payment.id == LedgerEntry.payment_id)
        .outerjoin(Purchase, Purchase.id == LedgerEntry.purchase_id)
        .where(*_time_range(LedgerEntry.created_at, flt))
    )
    if flt.kind is not None:
        query = query.where(LedgerEntry.kind == flt.kind)
    if flt.account_number is not None:
        query = query.where(Customer.account_key == account_key(flt.account_number))
    if flt.q:
        query = query.where(
            text_conditions(
                flt.q,
                region=region,
                customer_id=LedgerEntry.customer_id,
                phone=Payment.phone,
                codes=[Payment.code, Purchase.voucher_code],
                amount=func.abs(LedgerEntry.amount_minor),
            )
        )
    return query


def _cancelled(cancelled_codes: CancelledCodes) -> ColumnElement[bool]:
    """An attempt its provider calls cancelled by the payer."""
    return or_(
        false(),
        *(
            and_(PaymentAttempt.provider == provider, PaymentAttempt.result_code.in_(codes))
            for provider, codes in sorted(cancelled_codes.items())
            if codes
        ),
    )


def _attempt_part(flt: TransactionFilter, cancelled_codes: CancelledCodes) -> Any:
    cancelled = _cancelled(cancelled_codes)
    status = case(
        (cancelled, literal(CANCELLED, String)),
        else_=literal(FAILED, String),
    )
    query: Any = select(
        literal("attempt", String).label("source"),
        PaymentAttempt.id.label("id"),
        PaymentAttempt.created_at.label("at"),
        literal(FAILED_ATTEMPT, String).label("kind"),
        status.label("status"),
        cast(null(), String).label("account_number"),
        cast(literal(0), BigInteger).label("amount_minor"),
        PaymentAttempt.reference.label("code"),
        cast(null(), String).label("phone"),
        cast(null(), BigInteger).label("payment_id"),
        cast(null(), String).label("voucher_code"),
        PaymentAttempt.provider.label("created_by"),
        cast(null(), String).label("note"),
        cast(PaymentAttempt.result_code, String).label("result_code"),
        PaymentAttempt.result_desc.label("result_desc"),
    ).where(*_time_range(PaymentAttempt.created_at, flt))
    if flt.status == CANCELLED:
        query = query.where(cancelled)
    elif flt.status == FAILED:
        query = query.where(~cancelled)
    if flt.q:
        q = flt.q.strip()
        query = query.where(
            or_(PaymentAttempt.reference == q, PaymentAttempt.merchant_reference == q)
            if q
            else ~false()
        )
    return query


# --- revenue ------------------------------------------------------------------------------

PERIODS = ("day", "week", "month")
MAX_BUCKETS = 400
DEFAULT_BUCKETS = {"day": 30, "week": 12, "month": 12}


@dataclass(frozen=True)
class Bucket:
    start: datetime  # aware, in the business's time zone
    amount: int
    count: int


def period_start(day: date, period: str) -> date:
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def next_start(day: date, period: str) -> date:
    if period == "week":
        return day + timedelta(days=7)
    if period == "month":
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def revenue_totals(session: Session, *, zone: ZoneInfo, now: datetime) -> dict[str, int]:
    """Revenue is what associated payments bring in, by time paid in the business's zone.

    A disassociated payment is not associated, so it no longer counts: revenue
    is net of disassociations. Vouchers bought from balance spend revenue
    already counted, so they are not added again.
    """
    today = now.astimezone(zone).date()
    totals = totals_since(
        session,
        {
            "today": local_midnight(today, zone),
            "this_week": local_midnight(period_start(today, "week"), zone),
            "this_month": local_midnight(period_start(today, "month"), zone),
            "all_time": None,
        },
    )
    # every payment is associated (revenue) or not: what was received and is not revenue
    received = totals.pop("received")
    return {**totals, "unassociated_total": received - totals["all_time"]}


def bucket_starts(first: date, last: date, period: str) -> list[date]:
    starts = []
    day = period_start(first, period)
    while day <= last:
        starts.append(day)
        day = next_start(day, period)
        if len(starts) > MAX_BUCKETS:
            raise InvalidInput(
                f"that range has more than {MAX_BUCKETS} {period}s; narrow it or use a "
                "longer period",
                "range_too_long",
            )
    return starts


def revenue_series(
    session: Session, *, zone: ZoneInfo, period: str, first: date, last: date
) -> list[Bucket]:
    """Revenue and payment counts per day, week (from Monday) or month, in local time."""
    starts = bucket_starts(first, last, period)
    if not starts:
        return []
    bounds = [local_midnight(day, zone) for day in [*starts, next_start(starts[-1], period)]]
    # quarter-hour slices fall wholly inside one local day, so each lies in one period
    sums = between(session, bounds)
    return [
        Bucket(bound, amount, count) for bound, (amount, count) in zip(bounds, sums, strict=False)
    ]
