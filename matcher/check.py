"""The invariant checker behind ``momo check``: like fsck, for money.

Each check is one set-based query, so it runs on millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from matcher.inbox import stranded
from matcher.models import (
    ASSOCIATED,
    Customer,
    LedgerEntry,
    Payment,
    RevenueDay,
    RevenueSlice,
)
from matcher.money import format_minor
from matcher.revenue import fold_days

#: at most this many examples are printed for each kind of violation
EXAMPLES = 20


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


def inbox_is_moving(session: Session, *, stuck_after: timedelta) -> list[Violation]:
    count = stranded(session, older_than=stuck_after)
    if not count:
        return []
    return [
        Violation(
            "inbox",
            f"{count} inbox row(s) pending for more than {int(stuck_after.total_seconds())}s: "
            "are the workers and beat running?",
        )
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


def _sums(sums: tuple[int, int, int]) -> str:
    amount, count, received = sums
    return f"{format_minor(amount)} over {count} payments, {format_minor(received)} received"


def check_invariants(session: Session, *, stuck_after: timedelta) -> list[Violation]:
    """Every violation of momo's promises found in the database; empty when all hold."""
    return [
        *balances_match_ledgers(session),
        *payments_net_their_amount(session),
        *receipts_are_unique(session),
        *revenue_matches_payments(session),
        *revenue_days_match_slices(session),
        *inbox_is_moving(session, stuck_after=stuck_after),
    ]
