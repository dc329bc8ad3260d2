"""From inbox rows to payments and balances, on SQLite: the worker's promises."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DataError, InterfaceError, OperationalError

from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from matcher.db import make_engine
from matcher.inbox import stranded
from matcher.ledger import ledger_sum
from matcher.migrate import upgrade
from matcher.models import (
    INBOX_DEAD,
    INBOX_PENDING,
    INBOX_PROCESSED,
    Customer,
    InboxItem,
    LedgerEntry,
    Payment,
    PaymentAttempt,
)
from tasks.work import drain_inbox
from tests.conftest import add_customer, sample, sample_bytes


def put(runtime: Runtime, kind: str, body: bytes | dict, *, provider: str = "mpesa") -> int:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with runtime.sessions.begin() as session:
        item = InboxItem(provider=provider, kind=kind, body=raw, headers={}, attempts=0)
        session.add(item)
        session.flush()
        return item.id


def confirmation(**changes: object) -> dict:
    body = sample("c2b_confirmation_paybill_plain.json")
    body.update(changes)
    return body


def balance(runtime: Runtime, account: str) -> int:
    with runtime.sessions.begin() as session:
        customer = session.scalar(select(Customer).where(Customer.account_number == account))
        assert customer is not None
        assert customer.balance_minor == ledger_sum(session, customer.id)
        return customer.balance_minor


def payments(runtime: Runtime) -> list[Payment]:
    with runtime.sessions.begin() as session:
        return list(session.scalars(select(Payment).order_by(Payment.id)))


def count(runtime: Runtime, model: type) -> int:
    with runtime.sessions.begin() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- recording payments ---------------------------------------------------------------------


def test_a_confirmation_for_a_known_account_credits_its_balance(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", ["0799000111"])
    put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json"))
    result = drain_inbox(runtime)
    assert result.outcomes == {"credited": 1}
    assert balance(runtime, "ACC1042") == 150000
    [payment] = payments(runtime)
    assert payment.match_method == "account_number"
    assert payment.paid_at == datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)
    assert payment.phone == "+254712345678"


def test_a_repeated_callback_is_stored_once_and_credited_once(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", [])
    for _ in range(3):
        put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json"))
    result = drain_inbox(runtime)
    assert result.outcomes == {"credited": 1, "duplicate": 2}
    assert len(payments(runtime)) == 1
    assert balance(runtime, "ACC1042") == 150000


def test_running_the_work_twice_over_the_same_row_credits_once(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", [])
    inbox_id = put(runtime, "c2b/confirmation", confirmation())
    drain_inbox(runtime)
    # A redelivered task finds the row pending again (as if its first commit raced a crash).
    with runtime.sessions.begin() as session:
        session.execute(update(InboxItem).where(InboxItem.id == inbox_id).values(status="pending"))
    second = drain_inbox(runtime)
    assert second.outcomes == {"duplicate": 1}
    assert balance(runtime, "ACC1042") == 150000
    assert count(runtime, LedgerEntry) == 1


def test_c2b_and_stk_callbacks_with_one_receipt_code_are_one_payment(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1", ["0712345678"])
    put(runtime, "stk", sample_bytes("stk_callback_success.json"))
    put(runtime, "c2b/confirmation", confirmation(TransID="TKV5C2N8BD", TransAmount="20.00"))
    drain_inbox(runtime)
    assert [p.code for p in payments(runtime)] == ["TKV5C2N8BD"]
    assert balance(runtime, "ACC1") == 2000


def test_account_reference_is_matched_trimmed_and_in_any_case(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", [])
    put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_masked_msisdn.json"))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert payment.status == "associated"
    assert payment.match_method == "account_number"
    assert balance(runtime, "ACC1042") == 5000


def test_a_masked_number_is_never_a_phone_and_never_matches(runtime: Runtime) -> None:
    # The mask ends in 678 like this customer's number: it must still not match.
    add_customer(runtime, "C1", ["0712345678"])
    put(runtime, "c2b/confirmation", confirmation(MSISDN="2547 ***** 678", BillRefNumber=""))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert payment.phone is None
    assert payment.msisdn_kind == "masked"
    assert payment.msisdn_raw == "2547 ***** 678"
    assert payment.status == "unassociated"
    assert payment.reason == "no_match"
    assert balance(runtime, "C1") == 0


def test_a_hashed_msisdn_matches_the_customer_with_that_number(runtime: Runtime) -> None:
    add_customer(runtime, "C22", ["+254 722 000 000"])
    put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_hashed_msisdn.json"))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert payment.match_method == "phone_hash"
    assert balance(runtime, "C22") == 25000


def test_an_account_reference_that_is_a_customers_phone_matches_that_customer(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "C7", ["0733111222"])
    put(runtime, "c2b/confirmation", confirmation(BillRefNumber="0733 111 222"))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert (payment.status, payment.match_method) == ("associated", "account_phone")
    assert balance(runtime, "C7") == 150000


def test_a_shared_phone_leaves_the_payment_unassociated_with_both_candidates(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "HOME-1", ["0712345678"])
    add_customer(runtime, "SHOP-2", ["+254712345678"])
    put(runtime, "c2b/confirmation", confirmation(BillRefNumber="nothing-like-an-account"))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert payment.status == "unassociated"
    assert payment.reason == "shared_phone"
    assert payment.candidates == ["HOME-1", "SHOP-2"]
    assert balance(runtime, "HOME-1") == balance(runtime, "SHOP-2") == 0


def test_an_unusable_number_without_an_account_is_unassociated_as_invalid_phone(
    runtime: Runtime,
) -> None:
    put(runtime, "c2b/confirmation", confirmation(MSISDN="12345", BillRefNumber=""))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert (payment.status, payment.reason) == ("unassociated", "invalid_phone")


@pytest.mark.parametrize(
    "reference", ["A" * 65, "ACC1042" + "x" * 300, "ACC\x001042", "\ud800ACC1042", "ACC\ufffd1"]
)
def test_a_reference_that_cannot_be_an_account_is_unassociated_as_invalid_reference(
    runtime: Runtime, reference: str
) -> None:
    add_customer(runtime, "ACC1042", [])
    put(runtime, "c2b/confirmation", confirmation(BillRefNumber=reference))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert (payment.status, payment.reason) == ("unassociated", "invalid_reference")
    assert payment.account_reference is not None
    assert len(payment.account_reference) <= 128
    assert "\x00" not in payment.account_reference


def test_a_payment_with_an_unusable_reference_is_matched_when_its_phone_gains_a_customer(
    runtime: Runtime,
) -> None:
    from matcher.customers import save_customer

    put(runtime, "c2b/confirmation", confirmation(BillRefNumber="R" * 300))
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        save_customer(
            session,
            account_number="LATE1",
            name="Late",
            phones=["0712345678"],
            region="KE",
            actor="test",
        )
    [payment] = payments(runtime)
    assert (payment.status, payment.match_method) == ("associated", "phone")
    assert balance(runtime, "LATE1") == 150000


def test_a_till_payment_from_an_01_number_matches_by_phone(runtime: Runtime) -> None:
    add_customer(runtime, "T1", ["0110 123 456"])
    put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_buy_goods.json"))
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert payment.match_method == "phone"
    assert balance(runtime, "T1") == 10000


# --- attempts that moved no money -------------------------------------------------------------


def test_a_cancelled_stk_push_is_kept_as_an_attempt_and_credits_nothing(runtime: Runtime) -> None:
    put(runtime, "stk", sample_bytes("stk_callback_cancelled.json"))
    put(runtime, "stk", sample_bytes("stk_callback_cancelled.json"))
    result = drain_inbox(runtime)
    assert result.outcomes == {"attempt_recorded": 1, "attempt_duplicate": 1}
    assert payments(runtime) == []
    with runtime.sessions.begin() as session:
        [attempt] = session.scalars(select(PaymentAttempt)).all()
        assert (attempt.result_code, attempt.reference) == (1032, "ws_CO_191220191020363926")


def test_a_late_failure_never_undoes_a_success(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1", ["0712345678"])
    put(runtime, "stk", sample_bytes("stk_callback_success.json"))
    failure = sample("stk_callback_cancelled.json")
    failure["Body"]["stkCallback"]["CheckoutRequestID"] = "ws_CO_191220191020363925"
    failure["Body"]["stkCallback"]["ResultCode"] = 1037
    put(runtime, "stk", failure)
    drain_inbox(runtime)
    [payment] = payments(runtime)
    assert payment.status == "associated"
    assert balance(runtime, "ACC1") == 2000


# --- the inbox itself -------------------------------------------------------------------------


def test_a_row_that_fails_to_parse_is_rejected_without_sinking_its_batch(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC1042", [])
    bad = put(runtime, "c2b/confirmation", b'{"TransID": "X"}')
    good = put(runtime, "c2b/confirmation", confirmation())
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        rows = {row.id: row for row in session.scalars(select(InboxItem))}
        assert rows[bad].status == "rejected"
        assert rows[bad].reason and rows[bad].detail
        assert rows[good].status == INBOX_PROCESSED
        assert rows[good].reason == "credited"
        assert rows[good].payment_id is not None


def test_a_row_from_an_unknown_provider_is_rejected_not_lost(runtime: Runtime) -> None:
    row = put(runtime, "c2b/confirmation", confirmation(), provider="nosuch")
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        item = session.get(InboxItem, row)
        assert item is not None
        assert (item.status, item.reason) == ("rejected", "unknown_provider")


def _failing_on(runtime: Runtime, poisoned: int, error: Exception):  # type: ignore[no-untyped-def]
    from tasks import work

    real = work.parser_for(runtime)

    def parse(item: InboxItem):  # type: ignore[no-untyped-def]
        if item.id == poisoned:
            raise error
        return real(item)

    return parse


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RuntimeError("boom"), "failed"),
        (ValueError("a bug of ours"), "failed"),
        (KeyError("TransID"), "failed"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "unstorable"),
        (DataError("INSERT", {}, Exception("value too long")), "unstorable"),
    ],
)
def test_an_error_that_would_recur_makes_its_row_dead_at_once_and_the_rest_proceed(
    runtime: Runtime, error: Exception, reason: str
) -> None:
    from matcher.inbox import process_pending

    add_customer(runtime, "ACC1042", [])
    poisoned = put(runtime, "c2b/confirmation", confirmation(TransID="POISON1"))
    put(runtime, "c2b/confirmation", confirmation(TransID="FINE1"))
    parse = _failing_on(runtime, poisoned, error)

    with runtime.sessions.begin() as session:
        result = process_pending(session, parse, region="KE", limit=10)
    assert result.outcomes == {"dead": 1, "credited": 1}
    with runtime.sessions.begin() as session:
        item = session.get(InboxItem, poisoned)
        assert item is not None
        assert (item.status, item.reason, item.attempts) == (INBOX_DEAD, reason, 1)
        assert item.detail and item.detail.startswith(type(error).__name__ + ": ")
        assert item.next_attempt_at is None
        assert stranded(session, older_than=timedelta(0)) == 0
    assert balance(runtime, "ACC1042") == 150000


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT", {}, Exception("deadlock detected")),
        InterfaceError("SELECT", {}, Exception("connection already closed")),
    ],
)
def test_a_transient_database_error_rolls_the_batch_back_to_be_tried_again(
    runtime: Runtime, error: Exception
) -> None:
    from matcher.inbox import process_pending

    add_customer(runtime, "ACC1042", [])
    poisoned = put(runtime, "c2b/confirmation", confirmation(TransID="BLIP1"))
    put(runtime, "c2b/confirmation", confirmation(TransID="FINE1"))

    with pytest.raises(type(error)), runtime.sessions.begin() as session:
        process_pending(session, _failing_on(runtime, poisoned, error), region="KE", limit=10)
    with runtime.sessions.begin() as session:
        item = session.get(InboxItem, poisoned)
        assert item is not None
        assert (item.status, item.attempts) == (INBOX_PENDING, 0)
    assert count(runtime, Payment) == 0
    assert drain_inbox(runtime).outcomes == {"credited": 2}


def test_batches_are_worked_until_the_inbox_is_empty(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.with_overrides(batch_size=3)
    add_customer(runtime, "ACC1042", [])
    for n in range(10):
        put(runtime, "c2b/confirmation", confirmation(TransID=f"BATCH{n:03d}"))
    result = drain_inbox(runtime)
    assert (result.batches, result.claimed) == (4, 10)
    assert balance(runtime, "ACC1042") == 10 * 150000
    with runtime.sessions.begin() as session:
        pending = session.scalar(
            select(func.count()).select_from(InboxItem).where(InboxItem.status == INBOX_PENDING)
        )
    assert pending == 0


def test_stranded_counts_only_rows_pending_past_the_threshold(runtime: Runtime) -> None:
    old = put(runtime, "c2b/confirmation", confirmation(TransID="OLD1"))
    put(runtime, "c2b/confirmation", confirmation(TransID="NEW1"))
    with runtime.sessions.begin() as session:
        session.execute(
            update(InboxItem)
            .where(InboxItem.id == old)
            .values(received_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    with runtime.sessions.begin() as session:
        assert stranded(session, older_than=timedelta(seconds=30)) == 1
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        assert stranded(session, older_than=timedelta(seconds=30)) == 0


# --- customers gaining phones -----------------------------------------------------------------


def test_a_new_customer_collects_earlier_no_match_payments_from_its_phone(
    runtime: Runtime,
) -> None:
    put(runtime, "c2b/confirmation", confirmation(BillRefNumber="", TransID="EARLY1"))
    drain_inbox(runtime)
    assert payments(runtime)[0].reason == "no_match"
    add_customer(runtime, "LATE1", ["0712345678"])
    [payment] = payments(runtime)
    assert (payment.status, payment.match_method) == ("associated", "phone")
    assert balance(runtime, "LATE1") == 150000
    # saving the same customer again does not credit again
    add_customer(runtime, "LATE1", ["0712345678"])
    assert balance(runtime, "LATE1") == 150000


def test_when_the_batch_write_fails_the_rows_are_recorded_one_by_one(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set-based path and the row-by-row path give the same books."""
    import matcher.inbox

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("batch insert refused")

    monkeypatch.setattr(matcher.inbox, "record_payments", broken)
    add_customer(runtime, "ACC1042", [])
    for n in range(3):
        put(runtime, "c2b/confirmation", confirmation(TransID=f"ONEBYONE{n}"))
    put(runtime, "c2b/confirmation", confirmation(TransID="ONEBYONE0"))
    result = drain_inbox(runtime)
    assert result.outcomes == {"credited": 3, "duplicate": 1}
    assert balance(runtime, "ACC1042") == 3 * 150000


def test_a_batch_with_repeats_and_conflicts_inside_it_records_each_once(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", [])
    put(runtime, "c2b/confirmation", confirmation(TransID="INBATCH1"))
    put(runtime, "c2b/confirmation", confirmation(TransID="INBATCH1"))
    put(runtime, "c2b/confirmation", confirmation(TransID="INBATCH1", TransAmount="1.00"))
    put(runtime, "c2b/confirmation", confirmation(TransID="INBATCH2", BillRefNumber=""))
    result = drain_inbox(runtime)
    assert result.outcomes == {"credited": 1, "duplicate": 1, "conflict": 1, "unassociated": 1}
    assert balance(runtime, "ACC1042") == 150000


def test_the_batch_path_and_the_row_by_row_path_come_to_the_same_books(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.batch_parity import check_parity

    runtimes = []
    for name in ("batch", "rows"):
        url = f"sqlite:///{tmp_path / name}.db"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        runtimes.append(build_runtime(replace(settings, database_url=url)))
    try:
        check_parity(*runtimes)
    finally:
        for rt in runtimes:
            rt.close()
