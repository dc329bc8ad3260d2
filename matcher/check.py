"""The invariant checker behind ``momo check``: like fsck, for money.

Each check is one set-based query, so it runs on millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, and_, case, delete, func, or_, select
from sqlalchemy.orm import Session

from matcher.db import utcnow
from matcher.inbox import due, payment_lost
from matcher.matching import INVALID_REFERENCE, NO_MATCH
from matcher.models import (
    ASSOCIATED,
    INBOX_CONFLICT,
    INBOX_DEAD,
    INBOX_PENDING,
    REQUEST_PAID,
    REQUEST_PENDING,
    UNASSOCIATED,
    CheckRun,
    Customer,
    CustomerPhone,
    InboxItem,
    LedgerEntry,
    Payment,
    PaymentRequest,
    Purchase,
    RevenueDay,
    RevenueSlice,
)
from matcher.money import format_minor
from matcher.payments import CONFLICT
from matcher.revenue import fold_days

#: at most this many examples are printed for each kind of violation
EXAMPLES = 20
#: check runs older than this are removed as new ones are recorded
KEEP_RUNS = timedelta(days=90)


@dataclass(frozen=True)
class Violation:
    check: str
    message: str


def balances_match_ledgers(session: Session) -> list[Violation]:
    sums = (
        select(LedgerEntry.customer_id, func.sum(LedgerEntry.amount_minor).label("total"))
        .group_by(LedgerEntry.customer_id)
        .subquery()
    )
    rows = session.execute(
        select(Customer.account_number, Customer.balance_minor, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.customer_id == Customer.id)
        .where(Customer.balance_minor != func.coalesce(sums.c.total, 0))
        .limit(EXAMPLES)
    ).all()
    return [
        Violation(
            "balance",
            f"customer {account}: balance {format_minor(balance)} but ledger sums to "
            f"{format_minor(int(total))}",
        )
        for account, balance, total in rows
    ]


def payments_net_their_amount(session: Session) -> list[Violation]:
    """Associated: entries net to the amount, all for its customer. Otherwise: zero."""
    per_payment = (
        select(
            LedgerEntry.payment_id,
            func.sum(LedgerEntry.amount_minor).label("net"),
        )
        .where(LedgerEntry.payment_id.is_not(None))
        .group_by(LedgerEntry.payment_id)
        .subquery()
    )
    for_customer = (
        select(LedgerEntry.payment_id, func.sum(LedgerEntry.amount_minor).label("net"))
        .join(Payment, Payment.id == LedgerEntry.payment_id)
        .where(LedgerEntry.customer_id == Payment.customer_id)
        .group_by(LedgerEntry.payment_id)
        .subquery()
    )
    net = func.coalesce(per_payment.c.net, 0)
    own = func.coalesce(for_customer.c.net, 0)
    expected = case((Payment.status == ASSOCIATED, Payment.amount_minor), else_=0)
    rows = session.execute(
        select(Payment.id, Payment.code, Payment.status, Payment.amount_minor, net, own)
        .outerjoin(per_payment, per_payment.c.payment_id == Payment.id)
        .outerjoin(for_customer, for_customer.c.payment_id == Payment.id)
        .where((net != expected) | ((Payment.status == ASSOCIATED) & (own != Payment.amount_minor)))
        .limit(EXAMPLES)
    ).all()
    found = []
    for ident, code, status, amount, total, mine in rows:
        if status == ASSOCIATED and total > amount:
            what = f"credited more than once: net {format_minor(int(total))}"
        elif status == ASSOCIATED and mine != amount:
            what = f"its entries are not on its customer: {format_minor(int(mine))}"
        else:
            what = f"net ledger effect {format_minor(int(total))}"
        found.append(
            Violation(
                "payment",
                f"payment {ident} ({code}, {status}, {format_minor(amount)}): {what}, "
                f"expected {format_minor(amount if status == ASSOCIATED else 0)}",
            )
        )
    return found


def receipts_are_unique(session: Session) -> list[Violation]:
    rows = session.execute(
        select(Payment.provider, Payment.code, func.count())
        .group_by(Payment.provider, Payment.code)
        .having(func.count() > 1)
        .limit(EXAMPLES)
    ).all()
    return [
        Violation("receipt", f"receipt {provider}/{code} is stored {n} times")
        for provider, code, n in rows
    ]


def revenue_matches_payments(session: Session) -> list[Violation]:
    """The running revenue slices add up to the payments associated now, and their
    received totals to every payment stored."""
    slices = session.execute(
        select(
            func.coalesce(func.sum(RevenueSlice.amount_minor), 0),
            func.coalesce(func.sum(RevenueSlice.payments), 0),
            func.coalesce(func.sum(RevenueSlice.received_minor), 0),
        )
    ).one()
    associated = Payment.status == ASSOCIATED
    # one pass over the payments: the associated ones' sum and count, and everyone's sum
    amount, count, received = map(
        int,
        session.execute(
            select(
                func.coalesce(func.sum(case((associated, Payment.amount_minor), else_=0)), 0),
                func.coalesce(func.sum(case((associated, 1), else_=0)), 0),
                func.coalesce(func.sum(Payment.amount_minor), 0),
            )
        ).one(),
    )
    found = []
    if (int(slices[0]), int(slices[1])) != (amount, count):
        found.append(
            Violation(
                "revenue",
                f"revenue slices hold {format_minor(int(slices[0]))} over {int(slices[1])} "
                f"payments, but associated payments are {format_minor(amount)} over {count}",
            )
        )
    if int(slices[2]) != received:
        found.append(
            Violation(
                "revenue",
                f"revenue slices hold {format_minor(int(slices[2]))} received, but the payments "
                f"stored add up to {format_minor(received)}",
            )
        )
    return found


def _row(item: InboxItem) -> str:
    code = f" {item.code}" if item.code else ""
    return f"inbox row {item.id} ({item.provider}/{item.kind}{code})"


def _first_line(detail: str | None) -> str:
    line = (detail or "").strip().splitlines()[0] if (detail or "").strip() else "no detail"
    return line[:200]


def _more(total: int, shown: int, what: str, listing: str) -> list[Violation]:
    if total <= shown:
        return []
    return [Violation("inbox", f"{total - shown} more {what} not listed: {listing}")]


def _examples(session: Session, where: ColumnElement[bool]) -> tuple[int, list[InboxItem]]:
    """How many inbox rows match ``where``, and the first few of them to name."""
    total = int(session.scalar(select(func.count()).select_from(InboxItem).where(where)) or 0)
    if not total:
        return 0, []
    rows = session.scalars(
        select(InboxItem).where(where).order_by(InboxItem.id).limit(EXAMPLES)
    ).all()
    return total, list(rows)


def inbox_has_no_dead_rows(session: Session) -> list[Violation]:
    """A dead row is a callback that was acknowledged and never recorded: money stuck."""
    total, rows = _examples(session, InboxItem.status == INBOX_DEAD)
    found = [
        Violation(
            "inbox",
            f"{_row(item)} is dead ({item.reason}: {_first_line(item.detail)}); fix the cause, "
            f"then run `momo inbox replay {item.id}`",
        )
        for item in rows
    ]
    return found + _more(total, len(rows), "dead rows", "`momo inbox list --status dead`")


def inbox_is_moving(
    session: Session,
    *,
    stuck_after: timedelta,
    max_attempts: int | None = None,
    now: datetime | None = None,
) -> list[Violation]:
    """Pending rows nobody is getting to: waiting longer than ``stuck_after`` to be claimed,
    due for a retry longer ago than that, or tried ``max_attempts`` times already."""
    now = now or utcnow()
    window = now - stuck_after
    late_retry = InboxItem.next_attempt_at < window
    too_many = InboxItem.attempts >= max_attempts if max_attempts is not None else None
    stuck = [late_retry, due(now) & (InboxItem.received_at < window)]
    if too_many is not None:
        stuck.append(too_many)
    where = (InboxItem.status == INBOX_PENDING) & or_(*stuck)
    total, rows = _examples(session, where)
    seconds = int(stuck_after.total_seconds())
    workers = "are `momo worker` and `momo beat` running and reaching the database?"
    found = []
    for item in rows:
        if max_attempts is not None and item.attempts >= max_attempts:
            what = (
                f"is still pending after {item.attempts} attempts (MOMO_MAX_ATTEMPTS="
                f"{max_attempts}; last: {_first_line(item.detail)}): {workers} once it is "
                f"dead, fix the cause and run `momo inbox replay {item.id}`"
            )
        elif item.next_attempt_at is not None and item.next_attempt_at < window:
            what = f"was due for a retry more than {seconds}s ago and is still pending: {workers}"
        else:
            what = f"pending for more than {seconds}s: {workers}"
        found.append(Violation("inbox", f"{_row(item)} {what}"))
    return found + _more(total, len(rows), "stuck rows", "`momo inbox list --status pending`")


def conflicts_are_settled(session: Session) -> list[Violation]:
    """A receipt that came again with other data was acknowledged and not applied: which
    version is true is an operator's call, and until it is made the books may be wrong."""
    where = (InboxItem.status == INBOX_CONFLICT) & (InboxItem.reason == CONFLICT)
    total, rows = _examples(session, where)
    found = [
        Violation(
            "inbox",
            f"{_row(item)} repeats a stored receipt with other data and was not applied "
            f"({_first_line(item.detail)}): check the receipt in the provider's statement; "
            f"if this version is the true one, correct payment {item.payment_id} "
            "(disassociate it, record the right amount with POST /api/v1/payments); then "
            f"run `momo inbox settle {item.id} --note WHAT-YOU-FOUND`",
        )
        for item in rows
    ]
    return found + _more(
        total, len(rows), "unsettled conflicts", "`momo inbox list --status conflict`"
    )


def processed_payments_are_stored(session: Session) -> list[Violation]:
    """An inbox row processed as a payment (credited, unassociated, duplicate) points at
    a stored payment: otherwise the callback was acknowledged and its money never booked."""
    where = payment_lost()
    total, rows = _examples(session, where)
    found = [
        Violation(
            "inbox",
            f"{_row(item)} was processed as {item.reason} but no payment is stored for it: "
            f"run `momo inbox replay {item.id}` (the receipt is still credited at most once)",
        )
        for item in rows
    ]
    return found + _more(
        total, len(rows), "processed rows without a payment", "replay these, then check again"
    )


#: a customer phone that is the payer's phone of a payment (by number, or by hash)
_PAYERS_PHONE = or_(
    (Payment.msisdn_kind == "phone") & (CustomerPhone.e164 == Payment.phone),
    (Payment.msisdn_kind == "hashed") & (CustomerPhone.sha256 == Payment.msisdn_sha256),
)


def unmatched_payments_have_no_owner(session: Session) -> list[Violation]:
    """A payment left ``no_match`` whose phone now belongs to exactly one customer should
    have been matched when the customer gained that phone."""
    owners = (
        select(func.count(func.distinct(CustomerPhone.customer_id)))
        .where(_PAYERS_PHONE)
        .correlate(Payment)
        .scalar_subquery()
    )
    where = and_(
        Payment.status == UNASSOCIATED,
        Payment.reason.in_([NO_MATCH, INVALID_REFERENCE]),
        Payment.msisdn_kind.in_(["phone", "hashed"]),
        owners == 1,
    )
    total = int(session.scalar(select(func.count()).select_from(Payment).where(where)) or 0)
    if not total:
        return []
    rows = session.execute(
        select(
            Payment.id, Payment.code, Payment.amount_minor, Payment.reason, Customer.account_number
        )
        .join(CustomerPhone, _PAYERS_PHONE)
        .join(Customer, Customer.id == CustomerPhone.customer_id)
        .where(where)
        .order_by(Payment.id)
        .limit(EXAMPLES)
    ).all()
    found = [
        Violation(
            "payment",
            f"payment {ident} ({code}, {format_minor(amount)}) is unassociated ({reason}) "
            f"though its phone now belongs to customer {account} alone: associate it with "
            f'POST /api/v1/payments/{ident}/associate {{"account_number": "{account}"}}',
        )
        for ident, code, amount, reason, account in rows
    ]
    if total > len(rows):
        found.append(
            Violation(
                "payment",
                f"{total - len(rows)} more unassociated payments whose phone has one owner "
                "not listed: GET /api/v1/payments?status=unassociated lists them",
            )
        )
    return found


def purchases_are_debited(session: Session) -> list[Violation]:
    """Every voucher sold took exactly its price from its customer's ledger."""
    debits = (
        select(
            LedgerEntry.purchase_id,
            func.sum(LedgerEntry.amount_minor).label("net"),
            func.sum(
                case(
                    (LedgerEntry.customer_id == Purchase.customer_id, LedgerEntry.amount_minor),
                    else_=0,
                )
            ).label("own"),
        )
        .join(Purchase, Purchase.id == LedgerEntry.purchase_id)
        .group_by(LedgerEntry.purchase_id)
        .subquery()
    )
    net = func.coalesce(debits.c.net, 0)
    own = func.coalesce(debits.c.own, 0)
    rows = session.execute(
        select(
            Purchase.id, Purchase.voucher_code, Purchase.plan_code, Purchase.price_minor, net, own
        )
        .outerjoin(debits, debits.c.purchase_id == Purchase.id)
        .where((net != -Purchase.price_minor) | (own != -Purchase.price_minor))
        .order_by(Purchase.id)
        .limit(EXAMPLES)
    ).all()
    return [
        Violation(
            "purchase",
            f"purchase {ident} (voucher {voucher}, plan {plan}, price {format_minor(price)}) "
            + (
                "has no ledger debit"
                if total == 0
                else f"is debited {format_minor(-int(mine))} on its customer's ledger "
                f"({format_minor(-int(total))} in all)"
            )
            + f", expected {format_minor(price)}: the voucher was sold without its exact "
            "price taken; keep the ledger as it is (entries are never edited), find what "
            "wrote or removed these rows, and report it as a bug with this line",
        )
        for ident, voucher, plan, price, total, mine in rows
    ]


def revenue_days_match_slices(session: Session) -> list[Violation]:
    """Each UTC day row holds exactly the sum of that day's slices."""
    expected = fold_days(
        session.execute(
            select(
                RevenueSlice.slice_start,
                RevenueSlice.amount_minor,
                RevenueSlice.payments,
                RevenueSlice.received_minor,
            )
        )
    )
    kept = {
        day: (int(a), int(c), int(r))
        for day, a, c, r in session.execute(
            select(
                RevenueDay.day_start,
                RevenueDay.amount_minor,
                RevenueDay.payments,
                RevenueDay.received_minor,
            )
        )
    }
    zero = (0, 0, 0)
    wrong = sorted(
        day for day in set(expected) | set(kept) if expected.get(day, zero) != kept.get(day, zero)
    )
    return [
        Violation(
            "revenue",
            f"revenue day {day.date().isoformat()} (UTC) holds {_sums(kept.get(day, zero))}; "
            f"its slices add up to {_sums(expected.get(day, zero))}",
        )
        for day in wrong[:EXAMPLES]
    ]


def requests_are_settled(session: Session, *, stuck_after: timedelta) -> list[Violation]:
    """Payment requests still pending well past their expiry (nothing is asking their
    providers: beat's momo.settle_requests is not running), and paid ones naming no
    payment."""
    now = utcnow()
    late = (
        PaymentRequest.status == REQUEST_PENDING,
        PaymentRequest.expires_at < now - stuck_after,
    )
    total = int(session.scalar(select(func.count()).select_from(PaymentRequest).where(*late)) or 0)
    found = [
        Violation(
            "request",
            f"payment request {r.id} ({r.provider}, {r.account_number}, "
            f"{format_minor(r.amount_minor)}) is still pending, {now - r.expires_at} past its "
            "expiry: is beat running (it runs momo.settle_requests)?",
        )
        for r in session.scalars(
            select(PaymentRequest).where(*late).order_by(PaymentRequest.id).limit(EXAMPLES)
        )
    ]
    if total > len(found):
        found.append(Violation("request", f"{total - len(found)} more pending requests like it"))
    unpaid = session.scalars(
        select(PaymentRequest.id)
        .where(PaymentRequest.status == REQUEST_PAID, PaymentRequest.payment_id.is_(None))
        .limit(EXAMPLES)
    ).all()
    found.extend(
        Violation("request", f"payment request {ident} is paid but names no payment")
        for ident in unpaid
    )
    return found


def _sums(sums: tuple[int, int, int]) -> str:
    amount, count, received = sums
    return f"{format_minor(amount)} over {count} payments, {format_minor(received)} received"


def check_invariants(
    session: Session, *, stuck_after: timedelta, max_attempts: int | None = None
) -> list[Violation]:
    """Every violation of momo's promises found in the database; empty when all hold."""
    return [
        *balances_match_ledgers(session),
        *payments_net_their_amount(session),
        *receipts_are_unique(session),
        *revenue_matches_payments(session),
        *revenue_days_match_slices(session),
        *unmatched_payments_have_no_owner(session),
        *purchases_are_debited(session),
        *inbox_has_no_dead_rows(session),
        *inbox_is_moving(session, stuck_after=stuck_after, max_attempts=max_attempts),
        *conflicts_are_settled(session),
        *processed_payments_are_stored(session),
        *requests_are_settled(session, stuck_after=stuck_after),
    ]


def record_check_run(
    session: Session, violations: int, host: str, now: datetime | None = None
) -> None:
    """Note a finished check (``/metrics`` shows the last one); forget runs past
    ``KEEP_RUNS``."""
    now = now or utcnow()
    session.add(CheckRun(finished_at=now, violations=violations, host=host[:255]))
    session.execute(delete(CheckRun).where(CheckRun.finished_at < now - KEEP_RUNS))


@dataclass(frozen=True)
class LastCheck:
    finished_at: datetime
    violations: int
    host: str


def last_check_run(connection: Connection | Session) -> LastCheck | None:
    """The last finished check, from any host; None when none was recorded."""
    row = connection.execute(
        select(CheckRun.finished_at, CheckRun.violations, CheckRun.host)
        .order_by(CheckRun.finished_at.desc(), CheckRun.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return LastCheck(row.finished_at, row.violations, row.host)
