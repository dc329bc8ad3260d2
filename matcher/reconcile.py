"""Reconciliation: momo's books beside the provider's own record, day by day.

For one provider and a span of local days, ``reconcile`` says:

- which spans the provider's record was read in full (``covered``) and which were not
  (``not_covered``): outside coverage nothing can be said, so a gap is unexplained and
  the fix is to pull, or to import a statement for it;
- which payments momo learnt of only from the provider's record (``recovered``: a pull,
  a statement row or a lookup created them, so their callback never arrived);
- which provider records momo has no payment for (``missing_in_momo``: their inbox row
  was refused, died or waits for an operator);
- which of momo's payments the provider's record does not hold although it was read for
  their time (``missing_from_provider``: a callback the provider never sent, or a
  payment booked under a request's reference whose receipt never came);
- which receipts the two sides give different amounts (``conflicts``);
- which payments an operator entered by hand under this provider's receipt that no
  provider record has confirmed (``unconfirmed_manual``: mistyped or invented receipts),
  and which of those an operator has since taken off every balance (``set_aside``: they
  claim no money, so they count on neither side);
- which payments were reversed (``reversed``: momo marks a payment reversed only on the
  provider's word), and which reversals the provider's record lists for a payment momo
  still counts (``reversals_not_applied``);
- totals on both sides per local day, reversals beside them.

Everything but ``recovered``, ``set_aside`` and ``reversed`` is unexplained: a report
with none of it explains every shilling of the span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, load_only, selectinload

from matcher.errors import InvalidInput
from matcher.models import ASSOCIATED, Customer, Payment, ProviderCoverage, ProviderRecord
from matcher.money import format_minor
from matcher.provider_records import PAYMENT_RECORD, REVERSAL_RECORD

MANUAL: Final = "manual"
#: the longest span one report covers
MAX_DAYS: Final = 366


@dataclass(frozen=True)
class Span:
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class Line:
    """One receipt in a list of the report; ``payment_id`` None when momo has none."""

    code: str
    amount: int
    paid_at: datetime
    payment_id: int | None = None
    #: the provider's amount, for a conflict
    provider_amount: int | None = None
    #: the kind of provider record (pull, statement, lookup), or the payment's channel
    source: str | None = None
    status: str | None = None
    account_number: str | None = None
    #: for a reversed payment: the provider's receipt of the reversal
    reversal_receipt: str | None = None


@dataclass
class Day:
    day: date
    provider_count: int = 0
    provider_amount: int = 0
    momo_count: int = 0
    momo_amount: int = 0
    provider_reversed: int = 0
    momo_reversed: int = 0


@dataclass
class Report:
    provider: str
    first: date
    last: date
    starts_at: datetime
    ends_at: datetime
    covered: list[Span] = field(default_factory=list)
    not_covered: list[Span] = field(default_factory=list)
    recovered: list[Line] = field(default_factory=list)
    missing_in_momo: list[Line] = field(default_factory=list)
    missing_from_provider: list[Line] = field(default_factory=list)
    conflicts: list[Line] = field(default_factory=list)
    unconfirmed_manual: list[Line] = field(default_factory=list)
    set_aside: list[Line] = field(default_factory=list)
    reversed: list[Line] = field(default_factory=list)
    reversals_not_applied: list[Line] = field(default_factory=list)
    days: list[Day] = field(default_factory=list)

    @property
    def unexplained(self) -> int:
        """How many things the report cannot explain (gaps in coverage count once each)."""
        return (
            len(self.not_covered)
            + len(self.missing_in_momo)
            + len(self.missing_from_provider)
            + len(self.conflicts)
            + len(self.unconfirmed_manual)
            + len(self.reversals_not_applied)
        )


def local_span(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """From local midnight starting ``first`` to local midnight ending ``last``, in UTC."""
    if first > last:
        raise ValueError(f"from {first.isoformat()} is after to {last.isoformat()}")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"a reconciliation covers at most {MAX_DAYS} days; give a shorter span")
    start = datetime(first.year, first.month, first.day, tzinfo=zone)
    after = last + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _merged(spans: list[tuple[datetime, datetime]]) -> list[Span]:
    merged: list[list[datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [Span(start, end) for start, end in merged]


def coverage(
    session: Session, provider: str, starts_at: datetime, ends_at: datetime
) -> tuple[list[Span], list[Span]]:
    """The parts of [starts_at, ends_at) the provider's record was read for, and the gaps."""
    rows = session.execute(
        select(ProviderCoverage.starts_at, ProviderCoverage.ends_at).where(
            ProviderCoverage.provider == provider,
            ProviderCoverage.ends_at > starts_at,
            ProviderCoverage.starts_at < ends_at,
        )
    ).all()
    covered = _merged([(max(s, starts_at), min(e, ends_at)) for s, e in rows])
    gaps, cursor = [], starts_at
    for span in covered:
        if span.starts_at > cursor:
            gaps.append(Span(cursor, span.starts_at))
        cursor = max(cursor, span.ends_at)
    if cursor < ends_at:
        gaps.append(Span(cursor, ends_at))
    return covered, gaps


#: what the report reads of a payment (not its JSON and free text), and its customer's
#: account number, loaded with it
_SHOWN: Final = (
    load_only(
        Payment.id,
        Payment.code,
        Payment.amount_minor,
        Payment.paid_at,
        Payment.channel,
        Payment.status,
        Payment.confirmed_at,
        Payment.inbox_id,
        Payment.customer_id,
        Payment.reversed_at,
    ),
    selectinload(Payment.customer).load_only(Customer.account_number),
)


def _within(moment: datetime, spans: list[Span]) -> bool:
    return any(span.starts_at <= moment < span.ends_at for span in spans)


def reconcile(
    session: Session, *, provider: str, first: date, last: date, zone: ZoneInfo
) -> Report:
    """The report for local days ``first`` to ``last`` (both included) in ``zone``."""
    starts_at, ends_at = local_span(first, last, zone)
    report = Report(provider, first, last, starts_at, ends_at)
    report.covered, report.not_covered = coverage(session, provider, starts_at, ends_at)
    days = {
        first + timedelta(days=n): Day(first + timedelta(days=n))
        for n in range((last - first).days + 1)
    }

    records = _records(session, report, PAYMENT_RECORD)
    for rec, payment in records:
        day = days[rec.paid_at.astimezone(zone).date()]
        day.provider_count += 1
        day.provider_amount += rec.amount_minor
        line = Line(rec.code, rec.amount_minor, rec.paid_at, source=rec.source)
        if payment is None:
            report.missing_in_momo.append(line)
            continue
        shown = _line(payment, source=rec.source)
        if payment.amount_minor != rec.amount_minor:
            report.conflicts.append(Line(**{**shown.__dict__, "provider_amount": rec.amount_minor}))
        elif payment.inbox_id is not None and payment.inbox_id == rec.inbox_id:
            report.recovered.append(shown)

    known = {rec.code for rec, _ in records}
    payments = session.scalars(
        select(Payment)
        .where(
            Payment.provider == provider,
            Payment.paid_at >= starts_at,
            Payment.paid_at < ends_at,
        )
        .order_by(Payment.paid_at, Payment.id)
        .options(*_SHOWN)
    ).all()
    unknown = [p.code for p in payments if p.code not in known]
    # a payment whose record lies just outside the span (the two clocks differ) is held
    elsewhere = _recorded(session, provider, unknown)
    for payment in payments:
        unknown_to_provider = payment.code not in known and payment.code not in elsewhere
        if unknown_to_provider and payment.channel == MANUAL and payment.confirmed_at is None:
            if payment.status != ASSOCIATED:
                # taken off every balance by an operator: it claims no money, and is shown
                report.set_aside.append(_line(payment))
                continue
            report.unconfirmed_manual.append(_line(payment))
        elif unknown_to_provider and _within(payment.paid_at, report.covered):
            report.missing_from_provider.append(_line(payment))
        day = days[payment.paid_at.astimezone(zone).date()]
        day.momo_count += 1
        day.momo_amount += payment.amount_minor
    _reversals(session, report, days, zone)
    report.days = list(days.values())
    return report


def _records(
    session: Session, report: Report, kind: str
) -> list[tuple[ProviderRecord, Payment | None]]:
    """The provider's records of ``kind`` within the report's span, oldest first, each
    with momo's payment of the receipt it names (a reversal: the receipt it undid)."""
    record = ProviderRecord
    named = record.code if kind == PAYMENT_RECORD else record.reverses
    rows = session.execute(
        select(record, Payment)
        .outerjoin(Payment, and_(Payment.provider == record.provider, Payment.code == named))
        .where(
            record.provider == report.provider,
            record.kind == kind,
            record.paid_at >= report.starts_at,
            record.paid_at < report.ends_at,
        )
        .order_by(record.paid_at, record.id)
        .options(*_SHOWN)
    )
    return [(rec, payment) for rec, payment in rows]


def _reversals(session: Session, report: Report, days: dict[date, Day], zone: ZoneInfo) -> None:
    """Reversals within the span: momo's (by when the payment was reversed) and those the
    provider's record lists, each reversal record matched to momo's payment by the receipt
    it undid."""
    starts_at, ends_at = report.starts_at, report.ends_at
    reversed_payments = session.scalars(
        select(Payment)
        .where(
            Payment.provider == report.provider,
            Payment.reversed_at >= starts_at,
            Payment.reversed_at < ends_at,
        )
        .order_by(Payment.reversed_at, Payment.id)
    ).all()
    for payment in reversed_payments:
        assert payment.reversed_at is not None
        days[payment.reversed_at.astimezone(zone).date()].momo_reversed += payment.amount_minor
        report.reversed.append(
            Line(
                code=payment.code,
                amount=payment.amount_minor,
                paid_at=payment.reversed_at,
                payment_id=payment.id,
                source="reversal",
                status=payment.status,
                reversal_receipt=payment.reversal_receipt,
            )
        )
    for rec, undone in _records(session, report, REVERSAL_RECORD):
        days[rec.paid_at.astimezone(zone).date()].provider_reversed += rec.amount_minor
        if undone is not None and undone.reversed_at is None:
            report.reversals_not_applied.append(
                Line(
                    code=undone.code,
                    amount=undone.amount_minor,
                    paid_at=rec.paid_at,
                    payment_id=undone.id,
                    source=rec.source,
                    status=undone.status,
                )
            )


def _recorded(session: Session, provider: str, codes: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(codes), 500):
        found.update(
            session.scalars(
                select(ProviderRecord.code).where(
                    ProviderRecord.provider == provider,
                    ProviderRecord.kind == PAYMENT_RECORD,
                    ProviderRecord.code.in_(codes[start : start + 500]),
                )
            )
        )
    return found


def _line(payment: Payment, *, source: str | None = None) -> Line:
    return Line(
        code=payment.code,
        amount=payment.amount_minor,
        paid_at=payment.paid_at,
        payment_id=payment.id,
        source=source or payment.channel,
        status=payment.status,
        account_number=payment.customer.account_number if payment.customer else None,
    )


def totals(report: Report) -> dict[str, int]:
    """Both sides' totals over the whole span."""
    names = ("count", "amount", "reversed")
    sums = dict.fromkeys((f"{side}_{name}" for side in ("provider", "momo") for name in names), 0)
    for day in report.days:
        sums["provider_count"] += day.provider_count
        sums["provider_amount"] += day.provider_amount
        sums["momo_count"] += day.momo_count
        sums["momo_amount"] += day.momo_amount
        sums["provider_reversed"] += day.provider_reversed
        sums["momo_reversed"] += day.momo_reversed
    return dict(sums)


def _span_dict(span: Span, zone: ZoneInfo) -> dict[str, str]:
    return {
        "from": span.starts_at.astimezone(zone).isoformat(),
        "to": span.ends_at.astimezone(zone).isoformat(),
    }


def _line_dict(line: Line, zone: ZoneInfo) -> dict[str, object]:
    shown: dict[str, object] = {
        "code": line.code,
        "amount": format_minor(line.amount),
        "paid_at": line.paid_at.astimezone(zone).isoformat(),
        "payment_id": line.payment_id,
        "source": line.source,
    }
    if line.status is not None:
        shown["status"] = line.status
        shown["account_number"] = line.account_number
    if line.provider_amount is not None:
        shown["provider_amount"] = format_minor(line.provider_amount)
    if line.reversal_receipt is not None:
        shown["reversal_receipt"] = line.reversal_receipt
    return shown


def _side(count: int, amount: int, reversed_amount: int) -> dict[str, object]:
    return {
        "count": count,
        "amount": format_minor(amount),
        "reversed": format_minor(reversed_amount),
    }


def report_dict(report: Report, zone: ZoneInfo) -> dict[str, object]:
    """The report as JSON-ready values: amounts as decimal strings, times in ``zone``."""
    summed = totals(report)
    return {
        "provider": report.provider,
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        "timezone": zone.key,
        "explained": report.unexplained == 0,
        "unexplained": report.unexplained,
        "covered": [_span_dict(s, zone) for s in report.covered],
        "not_covered": [_span_dict(s, zone) for s in report.not_covered],
        **{name: [_line_dict(line, zone) for line in getattr(report, name)] for name in LISTS},
        "totals": {
            "provider": _side(
                summed["provider_count"], summed["provider_amount"], summed["provider_reversed"]
            ),
            "momo": _side(summed["momo_count"], summed["momo_amount"], summed["momo_reversed"]),
        },
        "days": [
            {
                "date": day.day.isoformat(),
                "provider": _side(day.provider_count, day.provider_amount, day.provider_reversed),
                "momo": _side(day.momo_count, day.momo_amount, day.momo_reversed),
                "difference": format_minor(day.momo_amount - day.provider_amount),
            }
            for day in report.days
        ],
    }


#: the report's lists of receipts, in the order they are shown
LISTS: Final = (
    "recovered",
    "missing_in_momo",
    "missing_from_provider",
    "conflicts",
    "unconfirmed_manual",
    "set_aside",
    "reversed",
    "reversals_not_applied",
)


def choose_provider(
    session: Session, given: str | None, *, default: str | None, known: list[str]
) -> str:
    """The provider to reconcile: the one given, else the configured default, else the
    one whose record momo keeps (the first known when momo keeps none)."""
    if given is not None:
        name = given.strip().lower()
        if name not in known:
            raise InvalidInput(
                f"provider {given!r} is not one momo speaks; give one of {', '.join(known)}",
                "invalid_provider",
            )
        return name
    if default is not None:
        return default
    kept = set(session.scalars(select(ProviderCoverage.provider).distinct())) | set(
        session.scalars(select(ProviderRecord.provider).distinct())
    )
    if len(kept) > 1:
        raise InvalidInput(
            f"momo keeps the record of {', '.join(sorted(kept))}: say which to reconcile "
            "(provider)",
            "provider_required",
        )
    return kept.pop() if kept else known[0]
