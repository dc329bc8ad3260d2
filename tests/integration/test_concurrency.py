"""Concurrent operators on one payment and one balance, on PostgreSQL and on SQLite.

Each thread has its own session and connection, as separate web workers would.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from matcher.db import make_engine
from matcher.errors import Conflict
from matcher.ledger import ledger_sum
from matcher.migrate import upgrade
from matcher.models import Customer, LedgerEntry, Payment, Purchase
from matcher.payments import associate, disassociate, record_manual_payment
from matcher.plans import create_plan, purchase
from momo.config import Settings
from momo.runtime import Runtime, build_runtime
from tests.conftest import add_customer
from tests.integration.conftest import PATH_TOKEN

THREADS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def db_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(Settings(database_url=url, mpesa_path_token=PATH_TOKEN))
    yield runtime
    runtime.close()


def race(runtime: Runtime, actions: list[Callable[[Any], object]]) -> list[object]:
    """Run each action in its own thread and transaction, all released at once."""
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)

    def run(n: int) -> None:
        barrier.wait()
        try:
            with runtime.sessions.begin() as session:
                results[n] = actions[n](session)
        except Exception as exc:  # the outcome under test
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def outcome(result: object) -> str:
    if isinstance(result, Conflict):
        return "conflict"
    if isinstance(result, Exception):
        return f"error:{type(result).__name__}:{result}"
    return "ok"


def check_ledger(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        for customer in session.scalars(select(Customer)):
            assert customer.balance_minor == ledger_sum(session, customer.id), (
                customer.account_number
            )
        for payment in session.scalars(select(Payment)):
            net = session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
                    LedgerEntry.payment_id == payment.id
                )
            )
            expected = payment.amount_minor if payment.status == "associated" else 0
            assert net == expected, payment.code


def manual(runtime: Runtime, account: str, amount: int) -> int:
    with runtime.sessions.begin() as session:
        moved = record_manual_payment(
            session,
            account_number=account,
            amount=amount,
            currency="KES",
            reference=None,
            note=None,
            actor="test",
        )
        return moved.payment.id


def test_concurrent_disassociations_of_one_payment_debit_once(db_runtime: Runtime) -> None:
    add_customer(db_runtime, "C-A", [])
    payment_id = manual(db_runtime, "C-A", 10000)
    results = race(
        db_runtime,
        [lambda s: disassociate(s, payment_id, reason="r", actor="op")] * THREADS,
    )
    assert Counter(map(outcome, results)) == {"ok": 1, "conflict": THREADS - 1}
    check_ledger(db_runtime)
    with db_runtime.sessions.begin() as session:
        assert session.scalar(select(Customer.balance_minor)) == 0


def test_concurrent_associations_of_one_payment_credit_exactly_one_customer(
    db_runtime: Runtime,
) -> None:
    accounts = [f"C-{n}" for n in range(THREADS)]
    for account in accounts:
        add_customer(db_runtime, account, [])
    payment_id = manual(db_runtime, accounts[0], 5000)
    with db_runtime.sessions.begin() as session:
        disassociate(session, payment_id, reason=None, actor="op")
    results = race(
        db_runtime,
        [lambda s, a=a: associate(s, payment_id, a, actor="op") for a in accounts],
    )
    assert Counter(map(outcome, results)) == {"ok": 1, "conflict": THREADS - 1}
    check_ledger(db_runtime)
    with db_runtime.sessions.begin() as session:
        balances = sorted(session.scalars(select(Customer.balance_minor)))
    assert balances == [0] * (THREADS - 1) + [5000]


def test_mixed_associate_and_disassociate_calls_leave_the_ledger_exact(
    db_runtime: Runtime,
) -> None:
    add_customer(db_runtime, "M-1", [])
    add_customer(db_runtime, "M-2", [])
    payment_id = manual(db_runtime, "M-1", 700)
    actions: list[Callable[[Any], object]] = []
    for n in range(THREADS):
        if n % 2:
            actions.append(lambda s: disassociate(s, payment_id, reason=None, actor="op"))
        else:
            actions.append(
                lambda s, n=n: associate(s, payment_id, f"M-{n % 4 // 2 + 1}", actor="op")
            )
    results = race(db_runtime, actions)
    assert all(outcome(r) in ("ok", "conflict") for r in results), results
    check_ledger(db_runtime)


def test_concurrent_purchases_never_overdraw_a_balance(db_runtime: Runtime) -> None:
    add_customer(db_runtime, "BUYER", [])
    manual(db_runtime, "BUYER", 25000)  # 250.00 buys exactly two 100.00 plans
    with db_runtime.sessions.begin() as session:
        create_plan(
            session, code="DAY", name="Day", price="100.00", validity_minutes=1440, actor="a"
        )
    results = race(db_runtime, [lambda s: purchase(s, "BUYER", "DAY", actor="op")] * THREADS)
    counts = Counter(map(outcome, results))
    assert counts == {"ok": 2, "conflict": THREADS - 2}, results
    refusals = [str(r) for r in results if isinstance(r, Conflict)]
    assert all("Insufficient balance: available" in r for r in refusals)
    check_ledger(db_runtime)
    with db_runtime.sessions.begin() as session:
        assert session.scalar(select(Customer.balance_minor)) == 5000
        vouchers = session.scalars(select(Purchase.voucher_code)).all()
    assert len(set(vouchers)) == 2


def test_concurrent_manual_payments_and_a_callback_with_one_receipt_credit_once(
    db_runtime: Runtime,
) -> None:
    from matcher.db import utcnow
    from matcher.ledger import Ledger
    from matcher.notifications import Msisdn, PaymentNotification
    from matcher.payments import record_payment

    add_customer(db_runtime, "R-1", [])
    note = PaymentNotification(
        provider="mpesa",
        channel="c2b",
        code="TKZ9RACE01",
        amount=4200,
        currency="KES",
        paid_at=utcnow(),
        msisdn=Msisdn(raw=None, kind="missing"),
        account_reference="R-1",
    )

    def callback(session: Any) -> object:
        with Ledger(session) as ledger:
            return record_payment(session, ledger, note, region="KE")

    def by_hand(session: Any) -> object:
        return record_manual_payment(
            session,
            account_number="R-1",
            amount=4200,
            currency="KES",
            reference="tkz9race01",
            note=None,
            actor="op",
        )

    results = race(db_runtime, [callback] + [by_hand] * (THREADS - 1))
    # The losers of the insert race see an IntegrityError; the API retries those once.
    assert all(outcome(r) == "ok" or "IntegrityError" in outcome(r) for r in results), results
    check_ledger(db_runtime)
    with db_runtime.sessions.begin() as session:
        assert session.scalar(select(Customer.balance_minor)) == 4200
        assert session.scalar(select(func.count()).select_from(Payment)) == 1
