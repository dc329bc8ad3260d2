"""After any sequence of callbacks, duplicates, manual payments, associations,
disassociations, purchases and customers gaining phones, the books add up.

Driven against the domain functions on a fresh SQLite database per example (no HTTP,
to stay fast); every operation is its own transaction, as a request or a task would be.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import func, select

from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime, receipt_owner
from matcher.check import revenue_days_match_slices
from matcher.customers import save_customer
from matcher.db import make_engine
from matcher.errors import DomainError
from matcher.migrate import upgrade
from matcher.models import (
    ASSOCIATED,
    INBOX_CONFLICT,
    INBOX_PENDING,
    INBOX_PROCESSED,
    Customer,
    InboxItem,
    LedgerEntry,
    Payment,
    RevenueSlice,
)
from matcher.money import parse_money
from matcher.payments import associate, disassociate, record_manual_payment
from matcher.plans import create_plan, purchase
from matcher.revenue import slice_of
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, mpesa_block, sample

ACCOUNTS = ("A1", "A2", "A3")
PHONES = ("0711000001", "0711000002", "0711000003")
#: the payers: three numbers customers may own, one nobody ever owns
MSISDNS = ("254711000001", "254711000002", "254711000003", "254799000000")
#: what payers type as account: nothing, an account (any case), a customer's phone, junk
ACCOUNT_REFS = ("", "A1", " a2 ", "0711000003", "nobody")
#: a small pool, so callbacks repeat and manual payments reuse their receipts
RECEIPTS = tuple(f"RCP000000{n}" for n in range(6))
AMOUNTS = ("1.00", "5.00", "12.50", "20.00")
PLANS = {"P5": "5.00", "P20": "20.00"}
ACTOR = "token:property"

#: a RAM disk when there is one: every commit fsyncs, and examples commit hundreds of times
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

_template: Path | None = None


def template_database() -> Path:
    """A migrated database made once per session; each example starts from a copy."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="momo-ledger-template-", dir=SCRATCH))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "momo.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        _template = path
    return _template


class Books(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="momo-ledger-", dir=SCRATCH))
        database = self.folder / "momo.db"
        shutil.copyfile(template_database(), database)
        self.runtime: Runtime = build_runtime(
            Settings(
                database_url=f"sqlite:///{database}",
                providers=mpesa_block(PATH_TOKEN),
                instance_path=self.folder / "instance",
            )
        )
        self.sent: list[bytes] = []
        #: payments an operator took off a customer and nobody has put back by hand
        self.disassociated: set[int] = set()
        with self.runtime.sessions.begin() as session:
            for code, price in PLANS.items():
                create_plan(
                    session, code=code, name=code, price=price, validity_minutes=60, actor=ACTOR
                )
            # one customer from the start; the others appear (and gain phones) as rules run
            save_customer(
                session, account_number="A1", name="A1", phones=[], region="KE", actor=ACTOR
            )

    def teardown(self) -> None:
        self.runtime.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------

    def attempt(self, name: str, action: Any) -> Any:
        """Run one operation in its own transaction; a refused one changes nothing."""
        try:
            with self.runtime.sessions.begin() as session:
                done = action(session)
        except DomainError as exc:
            event(f"{name}: refused ({exc.code})")
            return None
        event(f"{name}: done")
        return done

    def payment_ids(self) -> list[int]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(Payment.id).order_by(Payment.id)))

    def pick_payment(self, index: int) -> int | None:
        ids = self.payment_ids()
        return ids[index % len(ids)] if ids else None

    def deliver(self, body: bytes) -> None:
        with self.runtime.sessions.begin() as session:
            session.add(
                InboxItem(
                    provider="mpesa",
                    kind="c2b/confirmation",
                    body=body,
                    headers={},
                    status=INBOX_PENDING,
                    attempts=0,
                )
            )
        drained = drain_inbox(self.runtime)
        for outcome in drained.outcomes:
            event(f"callback: {outcome}")

    # --- rules --------------------------------------------------------------------------

    @rule(
        code=st.sampled_from(RECEIPTS),
        msisdn=st.sampled_from(MSISDNS),
        ref=st.sampled_from(ACCOUNT_REFS),
        amount=st.sampled_from(AMOUNTS),
    )
    def callback(self, code: str, msisdn: str, ref: str, amount: str) -> None:
        doc = sample("c2b_confirmation_paybill_plain.json")
        doc.update(TransID=code, MSISDN=msisdn, BillRefNumber=ref, TransAmount=amount)
        body = json.dumps(doc).encode()
        self.sent.append(body)
        self.deliver(body)

    @rule(index=st.integers(min_value=0, max_value=50))
    def duplicate_callback(self, index: int) -> None:
        """The provider sends a callback it already sent, byte for byte."""
        if self.sent:
            self.deliver(self.sent[index % len(self.sent)])

    @rule(
        account=st.sampled_from(ACCOUNTS),
        phones=st.lists(st.sampled_from(PHONES), max_size=3, unique=True),
    )
    def save_customer_with_phones(self, account: str, phones: list[str]) -> None:
        """Create the customer, or replace its phones (so it gains and loses some)."""
        self.attempt(
            "save_customer",
            lambda session: save_customer(
                session,
                account_number=account,
                name=account,
                phones=phones,
                region="KE",
                actor=ACTOR,
            ),
        )

    @rule(
        account=st.sampled_from(ACCOUNTS),
        amount=st.sampled_from(AMOUNTS),
        reference=st.one_of(
            st.none(),
            st.just("CASH"),
            st.sampled_from(RECEIPTS),
            st.sampled_from(RECEIPTS).map(str.lower),
        ),
    )
    def manual_payment(self, account: str, amount: str, reference: str | None) -> None:
        moved = self.attempt(
            "manual_payment",
            lambda session: record_manual_payment(
                session,
                account_number=account,
                amount=parse_money(amount),
                currency="KES",
                reference=reference,
                note=None,
                actor=ACTOR,
                receipt_owner=receipt_owner,
            ),
        )
        if moved is not None:
            self.disassociated.discard(moved.payment.id)

    @rule(index=st.integers(min_value=0, max_value=50), account=st.sampled_from(ACCOUNTS))
    def associate_by_hand(self, index: int, account: str) -> None:
        ident = self.pick_payment(index)
        if ident is None:
            return
        moved = self.attempt(
            "associate", lambda session: associate(session, ident, account, actor=ACTOR)
        )
        if moved is not None:
            self.disassociated.discard(ident)

    @rule(index=st.integers(min_value=0, max_value=50))
    def disassociate_by_hand(self, index: int) -> None:
        ident = self.pick_payment(index)
        if ident is None:
            return
        moved = self.attempt(
            "disassociate", lambda session: disassociate(session, ident, reason=None, actor=ACTOR)
        )
        if moved is not None:
            self.disassociated.add(ident)

    @rule(account=st.sampled_from(ACCOUNTS), plan=st.sampled_from(sorted(PLANS)))
    def buy(self, account: str, plan: str) -> None:
        with self.runtime.sessions() as session:
            before = session.scalar(
                select(Customer.balance_minor).where(Customer.account_number == account)
            )
        bought = self.attempt(
            "purchase", lambda session: purchase(session, account, plan, actor=ACTOR)
        )
        if bought is not None:
            assert before is not None
            assert before >= bought.plan.price_minor, "a purchase overdrew the balance"
            assert bought.customer.balance_minor == before - bought.plan.price_minor

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def every_balance_is_the_sum_of_its_ledger_entries(self) -> None:
        with self.runtime.sessions() as session:
            sums = dict(
                session.execute(
                    select(LedgerEntry.customer_id, func.sum(LedgerEntry.amount_minor)).group_by(
                        LedgerEntry.customer_id
                    )
                ).all()
            )
            for ident, balance in session.execute(select(Customer.id, Customer.balance_minor)):
                assert balance == int(sums.get(ident) or 0), (ident, balance, sums)

    @invariant()
    def every_payment_nets_its_amount_while_associated_and_nothing_otherwise(self) -> None:
        with self.runtime.sessions() as session:
            net: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
            for payment_id, customer_id, amount in session.execute(
                select(LedgerEntry.payment_id, LedgerEntry.customer_id, LedgerEntry.amount_minor)
                .where(LedgerEntry.payment_id.is_not(None))
                .order_by(LedgerEntry.id)
            ):
                net[payment_id][customer_id] += amount
            for payment in session.scalars(select(Payment)):
                per_customer = {c: a for c, a in net[payment.id].items() if a}
                if payment.status == ASSOCIATED:
                    assert payment.customer_id is not None
                    assert per_customer == {payment.customer_id: payment.amount_minor}, (
                        payment.code,
                        per_customer,
                    )
                else:
                    assert payment.customer_id is None
                    assert per_customer == {}, (payment.code, payment.status, per_customer)

    @invariant()
    def no_purchase_takes_a_balance_below_zero(self) -> None:
        with self.runtime.sessions() as session:
            running: dict[int, int] = defaultdict(int)
            for customer_id, amount, kind in session.execute(
                select(
                    LedgerEntry.customer_id, LedgerEntry.amount_minor, LedgerEntry.kind
                ).order_by(LedgerEntry.id)
            ):
                running[customer_id] += amount
                if kind == "purchase":
                    assert running[customer_id] >= 0, (customer_id, running[customer_id])

    @invariant()
    def no_receipt_code_is_stored_twice(self) -> None:
        with self.runtime.sessions() as session:
            repeated = session.execute(
                select(func.upper(Payment.code), func.count())
                .group_by(func.upper(Payment.code))
                .having(func.count() > 1)
            ).all()
            assert repeated == []

    @invariant()
    def a_disassociated_payment_stays_off_every_customer(self) -> None:
        if not self.disassociated:
            return
        with self.runtime.sessions() as session:
            for payment in session.scalars(
                select(Payment).where(Payment.id.in_(self.disassociated))
            ):
                assert payment.status != ASSOCIATED, payment.code
                assert payment.reason == "disassociated", (payment.code, payment.reason)

    @invariant()
    def every_callback_is_settled(self) -> None:
        """Processed, or held as a conflict (same receipt, different data): never stuck."""
        with self.runtime.sessions() as session:
            states = set(session.scalars(select(InboxItem.status).distinct()))
            assert states <= {INBOX_PROCESSED, INBOX_CONFLICT}, states

    @invariant()
    def money_in_equals_balances_plus_vouchers(self) -> None:
        with self.runtime.sessions() as session:
            credited = session.scalar(
                select(func.coalesce(func.sum(Payment.amount_minor), 0)).where(
                    Payment.status == ASSOCIATED
                )
            )
            balances = session.scalar(select(func.coalesce(func.sum(Customer.balance_minor), 0)))
            spent = session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
                    LedgerEntry.kind == "purchase"
                )
            )
            assert int(credited or 0) == int(balances or 0) - int(spent or 0)

    @invariant()
    def every_revenue_slice_holds_exactly_its_associated_payments(self) -> None:
        """The running revenue slices equal a recount of associated payments (and of every
        payment received), slice by slice."""
        with self.runtime.sessions() as session:
            expected: dict[object, list[int]] = defaultdict(lambda: [0, 0, 0])
            for paid_at, amount, status in session.execute(
                select(Payment.paid_at, Payment.amount_minor, Payment.status)
            ):
                expected[slice_of(paid_at)][2] += amount
                if status == ASSOCIATED:
                    expected[slice_of(paid_at)][0] += amount
                    expected[slice_of(paid_at)][1] += 1
            kept = {
                start: [amount, count, received]
                for start, amount, count, received in session.execute(
                    select(
                        RevenueSlice.slice_start,
                        RevenueSlice.amount_minor,
                        RevenueSlice.payments,
                        RevenueSlice.received_minor,
                    )
                )
                if amount or count or received
            }
            assert kept == dict(expected)

    @invariant()
    def every_revenue_day_holds_exactly_its_slices(self) -> None:
        with self.runtime.sessions() as session:
            assert revenue_days_match_slices(session) == []


Books.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBooks = Books.TestCase
