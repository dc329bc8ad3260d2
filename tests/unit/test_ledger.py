"""The ledger: balances move only by entries, once per idempotency key."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.runtime import Runtime
from matcher.ledger import Ledger, Posting, ledger_sum
from matcher.models import Customer
from tests.conftest import add_customer


def customer_id(runtime: Runtime, account: str) -> int:
    with runtime.sessions.begin() as session:
        return session.scalar(select(Customer.id).where(Customer.account_number == account))


def posting(cid: int, amount: int, key: str) -> Posting:
    return Posting(customer_id=cid, amount=amount, kind="test", idempotency_key=key, created_by="t")


def test_settling_moves_each_balance_by_the_sum_of_its_entries(runtime: Runtime) -> None:
    add_customer(runtime, "A", [])
    add_customer(runtime, "B", [])
    a, b = customer_id(runtime, "A"), customer_id(runtime, "B")
    with runtime.sessions.begin() as session, Ledger(session) as ledger:
        ledger.post(posting(b, 500, "k1"))
        ledger.post(posting(a, 250, "k2"))
        ledger.post(posting(b, -100, "k3"))
    with runtime.sessions.begin() as session:
        for cid, expected in ((a, 250), (b, 400)):
            customer = session.get(Customer, cid)
            assert customer is not None
            assert customer.balance_minor == expected == ledger_sum(session, cid)


def test_a_reused_idempotency_key_posts_nothing(runtime: Runtime) -> None:
    add_customer(runtime, "A", [])
    a = customer_id(runtime, "A")
    with runtime.sessions.begin() as session, Ledger(session) as ledger:
        ledger.post(posting(a, 500, "same"))
    with (
        pytest.raises(IntegrityError),
        runtime.sessions.begin() as session,
        Ledger(session) as ledger,
    ):
        ledger.post(posting(a, 500, "same"))
    with runtime.sessions.begin() as session:
        assert ledger_sum(session, a) == 500
        assert session.get(Customer, a).balance_minor == 500  # type: ignore[union-attr]


def test_a_failed_post_inside_a_savepoint_leaves_nothing_pending(runtime: Runtime) -> None:
    add_customer(runtime, "A", [])
    a = customer_id(runtime, "A")
    with runtime.sessions.begin() as session, Ledger(session) as ledger:
        ledger.post(posting(a, 700, "first"))
        with pytest.raises(IntegrityError), session.begin_nested():
            ledger.post(posting(a, 700, "first"))
    with runtime.sessions.begin() as session:
        assert session.get(Customer, a).balance_minor == 700  # type: ignore[union-attr]
        assert ledger_sum(session, a) == 700


def test_an_exception_in_the_block_moves_no_balance(runtime: Runtime) -> None:
    add_customer(runtime, "A", [])
    a = customer_id(runtime, "A")
    with (
        pytest.raises(RuntimeError),
        runtime.sessions.begin() as session,
        Ledger(session) as ledger,
    ):
        ledger.post(posting(a, 100, "x"))
        raise RuntimeError("abort")
    with runtime.sessions.begin() as session:
        assert session.get(Customer, a).balance_minor == 0  # type: ignore[union-attr]
        assert ledger_sum(session, a) == 0
