"""The ledger: every change of a balance is an appended entry.

A customer's ``balance_minor`` moves by exactly the entries added, in the same
transaction, so at every commit the balance equals the sum of its entries.
Balances are updated at ``settle()`` in ascending customer id order, so two
transactions crediting overlapping customers lock them in the same order and
cannot deadlock each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from matcher.db import insert_rows, utcnow
from matcher.models import Customer, LedgerEntry, Payment
from matcher.revenue import apply_moves, slice_of

LEDGER: Table = LedgerEntry.__table__  # type: ignore[assignment]

_customers: Table = Customer.__table__  # type: ignore[assignment]
MOVE_BALANCE = (
    update(_customers)
    .where(_customers.c.id == bindparam("b_id"))
    .values(balance_minor=_customers.c.balance_minor + bindparam("b_amount"))
)
#: customers are locked in id order first: an UPDATE joined to a list locks rows in
#: whatever order its plan meets them, and two batches must never wait on each other
#: crosswise
LOCK_CUSTOMERS = text(
    "SELECT id FROM customers WHERE id = ANY(CAST(:ids AS BIGINT[])) ORDER BY id FOR UPDATE"
)
MOVE_BALANCES = text(
    "UPDATE customers SET balance_minor = customers.balance_minor + v.amount, updated_at = :now "
    "FROM unnest(CAST(:ids AS BIGINT[]), CAST(:amounts AS BIGINT[])) AS v(id, amount) "
    "WHERE customers.id = v.id"
)


def move_balances(session: Session, moves: list[tuple[int, int]]) -> None:
    """Add each (customer id, amount) to that balance, customers taken in id order."""
    if session.get_bind().dialect.name != "postgresql":
        # one statement, many parameter sets, in the order given
        session.execute(MOVE_BALANCE, [{"b_id": c, "b_amount": a} for c, a in moves])
        return
    ids = [customer_id for customer_id, _ in moves]
    session.execute(LOCK_CUSTOMERS, {"ids": ids})
    session.execute(
        MOVE_BALANCES, {"ids": ids, "amounts": [amount for _, amount in moves], "now": utcnow()}
    )


PAYMENT_CREDIT = "payment_credit"
MANUAL_PAYMENT = "manual_payment"
DISASSOCIATION = "disassociation"
#: the provider gave a credited payment back to its payer
REVERSAL = "reversal"
PURCHASE = "purchase"


@dataclass(frozen=True)
class Posting:
    customer_id: int
    amount: int  # minor units, signed
    kind: str
    idempotency_key: str
    created_by: str
    payment_id: int | None = None
    purchase_id: int | None = None
    note: str | None = None
    #: when the payment credited (or reversed) was paid: revenue moves with it
    revenue_at: datetime | None = None


class Ledger:
    """Collects postings of one transaction and moves balances when settled.

    Use as a context manager around the work; entries are inserted (and their
    idempotency keys checked by the database) at ``post``, balances at exit.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pending: Counter[int] = Counter()
        self._revenue: Counter[datetime] = Counter()
        self._revenue_count: Counter[datetime] = Counter()
        self._received: Counter[datetime] = Counter()

    def received(self, payments: Iterable[Payment]) -> None:
        """Count payments stored just now into their slices' received totals.

        Called once per payment, after the insert went through; unassociated money is
        what was received and is not revenue, so the dashboard reads it from the slices.
        """
        for payment in payments:
            self.receive(payment.paid_at, payment.amount_minor)

    def receive(self, paid_at: datetime, amount: int) -> None:
        """``received`` for one payment stored just now, given by its time and amount."""
        self._received[slice_of(paid_at)] += amount

    def repaid(self, payment: Payment, paid_at: datetime, *, net: int, count: int) -> None:
        """Move a stored payment's revenue and received money from the slice of its
        ``paid_at`` to the slice of ``paid_at`` given, which the caller then sets: ``net``
        is the sum of the payment's ledger entries, ``count`` its credits less reversals."""
        before, after = slice_of(payment.paid_at), slice_of(paid_at)
        if before == after:
            return
        self._received[before] -= payment.amount_minor
        self._received[after] += payment.amount_minor
        self._revenue[before] -= net
        self._revenue[after] += net
        self._revenue_count[before] -= count
        self._revenue_count[after] += count

    def post(self, posting: Posting) -> LedgerEntry:
        """Append one entry; a reused idempotency key raises IntegrityError and posts nothing."""
        entry = LedgerEntry(
            customer_id=posting.customer_id,
            amount_minor=posting.amount,
            kind=posting.kind,
            idempotency_key=posting.idempotency_key,
            created_by=posting.created_by,
            payment_id=posting.payment_id,
            purchase_id=posting.purchase_id,
            note=posting.note,
        )
        self.session.add(entry)
        self.session.flush()
        # Counted only once the insert went through, so a rolled-back savepoint
        # around a failed post leaves nothing pending.
        self._count(posting)
        return entry

    def _count(self, posting: Posting) -> None:
        self._pending[posting.customer_id] += posting.amount
        if posting.revenue_at is not None:
            at = slice_of(posting.revenue_at)
            self._revenue[at] += posting.amount
            self._revenue_count[at] += 1 if posting.amount > 0 else -1

    def post_many(self, postings: list[Posting]) -> None:
        """Append many entries in one round trip; all or none, like ``post``."""
        if not postings:
            return
        now = utcnow()
        insert_rows(
            self.session,
            LEDGER,
            [
                {
                    "customer_id": p.customer_id,
                    "amount_minor": p.amount,
                    "kind": p.kind,
                    "idempotency_key": p.idempotency_key,
                    "created_by": p.created_by,
                    "payment_id": p.payment_id,
                    "purchase_id": p.purchase_id,
                    "note": p.note,
                    "created_at": now,
                }
                for p in postings
            ],
        )
        for p in postings:
            self._count(p)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint that also forgets the postings made inside it when it rolls back."""
        saved = (
            Counter(self._pending),
            Counter(self._revenue),
            Counter(self._revenue_count),
            Counter(self._received),
        )
        try:
            with self.session.begin_nested():
                yield
        except BaseException:
            self._pending, self._revenue, self._revenue_count, self._received = saved
            raise

    def settle(self) -> None:
        moves = [
            (customer_id, self._pending[customer_id])
            for customer_id in sorted(self._pending)
            if self._pending[customer_id]
        ]
        if moves:
            move_balances(self.session, moves)
        self._pending = Counter()
        apply_moves(self.session, self._revenue, self._revenue_count, self._received)
        self._revenue, self._revenue_count, self._received = Counter(), Counter(), Counter()
        # objects already loaded must not show a stale balance
        for obj in self.session.identity_map.values():
            if isinstance(obj, Customer):
                self.session.expire(obj, ["balance_minor"])

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.settle()


def ledger_sum(session: Session, customer_id: int) -> int:
    """The sum of a customer's entries: what its balance must equal."""
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.customer_id == customer_id
        )
    )
    return int(total or 0)
