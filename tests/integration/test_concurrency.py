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

from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime, receipt_owner
from matcher.db import make_engine
from matcher.errors import Conflict
from matcher.ledger import ledger_sum
from matcher.migrate import upgrade
from matcher.models import Customer, LedgerEntry, Payment, Purchase
from matcher.payments import associate, disassociate, record_manual_payment
from matcher.plans import create_plan, purchase
from tests.conftest import add_customer, mpesa_block
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
    runtime = build_runtime(Settings(database_url=url, providers=mpesa_block(PATH_TOKEN)))
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
            receipt_owner=receipt_owner,
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
            receipt_owner=receipt_owner,
        )

    results = race(db_runtime, [callback] + [by_hand] * (THREADS - 1))
    # The losers of the insert race see an IntegrityError; the API retries those once.
    assert all(outcome(r) == "ok" or "IntegrityError" in outcome(r) for r in results), results
    check_ledger(db_runtime)
    with db_runtime.sessions.begin() as session:
        assert session.scalar(select(Customer.balance_minor)) == 4200
        assert session.scalar(select(func.count()).select_from(Payment)) == 1


# --- a payment from a phone, and a customer gaining that phone, at the same moment ---------

RACE_PHONE = "0711223344"


@pytest.fixture
def pg_runtime(fresh_pg_url: str) -> Iterator[Runtime]:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(Settings(database_url=fresh_pg_url, providers=mpesa_block("x")))
    yield runtime
    runtime.close()


def _queue_payment_from(runtime: Runtime, phone: str, code: str) -> None:
    import json

    from matcher.models import InboxItem
    from tests.conftest import sample

    body = sample("c2b_confirmation_paybill_plain.json")
    body.update(TransID=code, BillRefNumber="", MSISDN=phone, TransAmount="300.00")
    with runtime.sessions.begin() as session:
        session.add(
            InboxItem(
                provider="mpesa",
                kind="c2b/confirmation",
                body=json.dumps(body).encode(),
                headers={},
            )
        )


class Held:
    """A transaction run in its own thread that, its work done, stays open until released;
    ``pid`` is its PostgreSQL backend, to see whether it waits on a lock."""

    def __init__(self, runtime: Runtime, work: Callable[[Any], object]) -> None:
        self.runtime, self.work = runtime, work
        self.pid: int | None = None
        self.worked = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        from sqlalchemy import text

        try:
            with self.runtime.sessions.begin() as session:
                self.pid = session.scalar(text("SELECT pg_backend_pid()"))
                self.work(session)
                self.worked.set()
                self.release.wait(60)
        except BaseException as exc:  # the outcome under test
            self.error = exc
            self.worked.set()

    def start(self) -> Held:
        self.thread.start()
        return self

    def end(self) -> None:
        self.release.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def finished_or_waiting(runtime: Runtime, second: Held) -> bool:
    """True once ``second`` has done its work, or waits on a lock the first one holds."""
    from sqlalchemy import text

    from tests.integration.conftest import wait_until

    def settled() -> bool:
        if second.worked.is_set():
            return True
        if second.pid is None:
            return False
        with runtime.engine.connect() as connection:
            return bool(
                connection.scalar(
                    text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                    {"pid": second.pid},
                )
            )

    return bool(wait_until(settled, timeout=30, interval=0.02))


def _worker(runtime: Runtime) -> Callable[[Any], object]:
    from matcher.inbox import process_pending
    from tasks.work import parser_for

    parse = parser_for(runtime)
    return lambda session: process_pending(session, parse, region="KE", limit=10)


def _gain_phone(runtime: Runtime) -> Callable[[Any], object]:
    from matcher.customers import save_customer

    return lambda session: save_customer(
        session,
        account_number="GAINS",
        name="Gains A Phone",
        phones=[RACE_PHONE],
        region="KE",
        actor="op",
    )


@pytest.mark.parametrize("payer", ["phone", "hashed"])
@pytest.mark.parametrize("first", ["worker", "operator"])
def test_a_payment_stored_while_its_phone_is_given_to_a_customer_is_credited(
    pg_runtime: Runtime, first: str, payer: str
) -> None:
    """Whichever commits first, the payment from a phone that now has exactly one owner
    ends associated with that owner (and not left ``no_match`` by each missing the
    other's uncommitted row)."""
    import hashlib

    add_customer(pg_runtime, "GAINS", [])
    msisdn = "254711223344"
    if payer == "hashed":
        msisdn = hashlib.sha256(msisdn.encode()).hexdigest()
    _queue_payment_from(pg_runtime, msisdn, "RACE7PHONE")
    worker, operator = _worker(pg_runtime), _gain_phone(pg_runtime)
    one, two = (worker, operator) if first == "worker" else (operator, worker)
    holding = Held(pg_runtime, one).start()
    assert holding.worked.wait(60) and holding.error is None, holding.error
    second = Held(pg_runtime, two).start()
    second.release.set()  # the second commits as soon as it can
    finished_or_waiting(pg_runtime, second)
    holding.end()
    second.end()

    with pg_runtime.sessions.begin() as session:
        payment = session.scalars(select(Payment)).one()
        customer = session.scalars(select(Customer)).one()
        assert (payment.status, payment.reason) == ("associated", None)
        assert payment.customer_id == customer.id
        assert customer.balance_minor == 30000
    check_ledger(pg_runtime)


def test_momo_check_reads_one_snapshot_while_a_worker_commits(
    pg_runtime: Runtime, tmp_path: Path
) -> None:
    """A payment committed between two of the check's queries is no false violation."""
    from click.testing import CliRunner
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from momo.cli import main

    add_customer(pg_runtime, "SNAP", [])
    manual(pg_runtime, "SNAP", 700)
    fired: list[str] = []

    def commit_between(*args: Any) -> None:
        statement = args[2]
        if fired or "revenue_slices" not in statement:
            return
        fired.append(statement)
        manual(pg_runtime, "SNAP", 700)  # on another connection, committed at once

    event.listen(Engine, "after_cursor_execute", commit_between)
    try:
        result = CliRunner().invoke(
            main,
            ["check"],
            env={
                "MOMO_DATABASE_URL": pg_runtime.settings.database_url,
                "MOMO_INSTANCE_PATH": str(tmp_path),
            },
        )
    finally:
        event.remove(Engine, "after_cursor_execute", commit_between)
    assert fired, "the check never read the revenue slices"
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:")
    with pg_runtime.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 2


def test_a_callback_waiting_while_the_providers_reply_names_its_request_pays_that_request(
    pg_runtime: Runtime,
) -> None:
    """The provider's reply to a payment request and the request's callback are recorded
    at the same moment: the callback looks for the still unnamed request, waits for the
    reply's lock, and must then find the request by its new name (else it would be
    credited by the rules, and the request's next query booked a second time)."""
    import json
    from datetime import timedelta

    from matcher.ledger import Ledger
    from matcher.matching import get_customer
    from matcher.models import InboxItem, PaymentRequest
    from matcher.notifications import RequestResult
    from matcher.payment_requests import Timing, open_request, submitted
    from matcher.payments import DUPLICATE, record_request_result
    from tests.conftest import sample

    checkout = "ws_CO_011220261015009999"
    add_customer(pg_runtime, "ASKED", ["0711000111"])
    with pg_runtime.sessions.begin() as session:
        request_id = open_request(
            session,
            provider="mpesa",
            customer=get_customer(session, "ASKED"),
            phone="+254711000111",
            amount=2000,
            currency="KES",
            actor="token:test",
            timing=Timing(query_after=timedelta(seconds=90), expire_after=timedelta(minutes=15)),
        ).id
    body = sample("stk_callback_success.json")
    callback = body["Body"]["stkCallback"]
    callback["CheckoutRequestID"] = checkout
    for item in callback["CallbackMetadata"]["Item"]:
        if item["Name"] == "Amount":
            item["Value"] = 20
        if item["Name"] == "PhoneNumber":
            item["Value"] = 254711000111
    with pg_runtime.sessions.begin() as session:
        session.add(
            InboxItem(provider="mpesa", kind="stk", body=json.dumps(body).encode(), headers={})
        )

    def reply(session: Any) -> object:
        request = session.get(PaymentRequest, request_id, with_for_update=True)
        submitted(session, request, checkout, "29115-1")
        return request

    replying = Held(pg_runtime, reply).start()
    assert replying.worked.wait(30)
    working = Held(pg_runtime, _worker(pg_runtime)).start()
    assert finished_or_waiting(pg_runtime, working)
    assert not working.worked.is_set()  # it waits for the reply's lock on the request
    replying.end()
    working.end()

    with pg_runtime.sessions.begin() as session:
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        assert (request.status, request.payment_id is not None) == ("paid", True)
        with Ledger(session) as ledger:
            again = record_request_result(
                session,
                ledger,
                RequestResult(
                    provider="mpesa",
                    reference=checkout,
                    state="paid",
                    result_code="0",
                    result_description="The service request is processed successfully.",
                ),
                region="KE",
            )
        assert again.outcome == DUPLICATE
    assert _balance(pg_runtime, "ASKED") == 2000
    check_ledger(pg_runtime)


def _balance(runtime: Runtime, account: str) -> int:
    with runtime.sessions.begin() as session:
        customer = session.scalar(select(Customer).where(Customer.account_number == account))
        assert customer is not None
        return customer.balance_minor
