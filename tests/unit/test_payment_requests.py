"""Payment requests settle once: a callback or a query's answer credits the request's
customer whatever phone paid, a failure moves no money, and nothing undoes a success."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from core.runtime import Runtime
from matcher.ledger import Ledger
from matcher.matching import get_customer
from matcher.models import (
    ASSOCIATED,
    INBOX_CONFLICT,
    INBOX_PROCESSED,
    REQUEST_CANCELLED,
    REQUEST_EXPIRED,
    REQUEST_FAILED,
    REQUEST_PAID,
    REQUEST_PENDING,
    UNASSOCIATED,
    InboxItem,
    LedgerEntry,
    Payment,
    PaymentRequest,
)
from matcher.notifications import RequestResult
from matcher.payment_requests import (
    AMOUNT_DIFFERS,
    BY_REQUEST,
    UNKNOWN_REQUEST,
    Timing,
    asked,
    due_for_query,
    expire,
    open_request,
    submitted,
)
from matcher.payments import CONFLICT, CREDITED, DUPLICATE, find_payment, record_request_result
from tasks.work import drain_inbox
from tests.conftest import add_customer, sample
from tests.unit.test_pipeline import balance, confirmation, put

TIMING = Timing(query_after=timedelta(seconds=90), expire_after=timedelta(minutes=15))
CHECKOUT = "ws_CO_011220261015001234"


def ask(runtime: Runtime, account: str, amount: int = 2000, reference: str = CHECKOUT) -> int:
    """A request for ``amount`` from ``account``'s customer, taken by the provider."""
    with runtime.sessions.begin() as session:
        request = open_request(
            session,
            provider="mpesa",
            customer=get_customer(session, account),
            phone="+254711000111",
            amount=amount,
            currency="KES",
            actor="token:test",
            timing=TIMING,
        )
        submitted(session, request, reference, "29115-1")
        return request.id


def stk(reference: str = CHECKOUT, *, receipt: str = "TKV5C2N8BD", amount: float = 20.0) -> dict:
    body = copy.deepcopy(sample("stk_callback_success.json"))
    callback = body["Body"]["stkCallback"]
    callback["CheckoutRequestID"] = reference
    for item in callback["CallbackMetadata"]["Item"]:
        if item["Name"] == "MpesaReceiptNumber":
            item["Value"] = receipt
        if item["Name"] == "Amount":
            item["Value"] = amount
    return body


def stk_failed(reference: str = CHECKOUT, code: int = 1032) -> dict:
    body = copy.deepcopy(sample("stk_callback_cancelled.json"))
    body["Body"]["stkCallback"]["CheckoutRequestID"] = reference
    body["Body"]["stkCallback"]["ResultCode"] = code
    return body


def request_row(runtime: Runtime, request_id: int) -> PaymentRequest:
    with runtime.sessions.begin() as session:
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        session.expunge(request)
        return request


def credits(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(LedgerEntry).where(LedgerEntry.amount_minor > 0)
            )
            or 0
        )


def test_a_callback_credits_the_requests_customer_whatever_phone_paid(runtime: Runtime) -> None:
    # the payer's phone (+254712345678 in the sample) belongs to someone else entirely
    add_customer(runtime, "ACC-1", ["+254700000001"])
    add_customer(runtime, "OTHER", ["+254712345678"])
    request_id = ask(runtime, "ACC-1")
    put(runtime, "stk", stk())
    drain_inbox(runtime)

    assert balance(runtime, "ACC-1") == 2000
    assert balance(runtime, "OTHER") == 0
    request = request_row(runtime, request_id)
    assert request.status == REQUEST_PAID
    with runtime.sessions.begin() as session:
        payment = session.get(Payment, request.payment_id)
        assert payment is not None
        assert (payment.status, payment.match_method) == (ASSOCIATED, BY_REQUEST)
        assert payment.code == "TKV5C2N8BD"
        assert payment.phone == "+254712345678"  # the payer the receipt names


def test_the_same_callback_twice_credits_once(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", [])
    ask(runtime, "ACC-1")
    put(runtime, "stk", stk())
    put(runtime, "stk", stk())
    drain_inbox(runtime)
    put(runtime, "stk", stk())
    drain_inbox(runtime)
    assert balance(runtime, "ACC-1") == 2000
    assert credits(runtime) == 1


def test_a_callback_for_another_amount_is_kept_for_an_operator(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", ["+254712345678"])  # even the payer's own customer
    request_id = ask(runtime, "ACC-1", amount=5000)
    put(runtime, "stk", stk(amount=20.0))
    drain_inbox(runtime)

    assert balance(runtime, "ACC-1") == 0
    request = request_row(runtime, request_id)
    assert request.status == REQUEST_PAID
    assert request.result_code == AMOUNT_DIFFERS
    with runtime.sessions.begin() as session:
        payment = session.get(Payment, request.payment_id)
        assert payment is not None
        assert (payment.status, payment.reason) == (UNASSOCIATED, AMOUNT_DIFFERS)
        assert payment.candidates == ["ACC-1"]


@pytest.mark.parametrize(("code", "status"), [(1032, REQUEST_CANCELLED), (2001, REQUEST_FAILED)])
def test_a_failure_marks_the_request_and_moves_no_money(
    runtime: Runtime, code: int, status: str
) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    put(runtime, "stk", stk_failed(code=code))
    drain_inbox(runtime)
    request = request_row(runtime, request_id)
    assert request.status == status
    assert request.result_code == str(code)
    assert request.payment_id is None
    assert credits(runtime) == 0


def test_a_late_failure_never_undoes_a_success(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    put(runtime, "stk", stk())
    drain_inbox(runtime)
    put(runtime, "stk", stk_failed())
    drain_inbox(runtime)
    assert request_row(runtime, request_id).status == REQUEST_PAID
    assert balance(runtime, "ACC-1") == 2000


def test_a_success_after_a_failure_or_expiry_still_credits(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", [])
    failed_id = ask(runtime, "ACC-1", reference="ws_CO_failed_first")
    put(runtime, "stk", stk_failed(reference="ws_CO_failed_first", code=1037))
    drain_inbox(runtime)
    expired_id = ask(runtime, "ACC-1", reference="ws_CO_expired_first")
    with runtime.sessions.begin() as session:
        request = session.get(PaymentRequest, expired_id)
        assert request is not None
        assert expire(request, now=datetime.now(UTC) + timedelta(hours=1))
    assert request_row(runtime, expired_id).status == REQUEST_EXPIRED

    put(runtime, "stk", stk(reference="ws_CO_failed_first", receipt="TKV5C2N8B1"))
    put(runtime, "stk", stk(reference="ws_CO_expired_first", receipt="TKV5C2N8B2"))
    drain_inbox(runtime)
    assert request_row(runtime, failed_id).status == REQUEST_PAID
    assert request_row(runtime, expired_id).status == REQUEST_PAID
    assert balance(runtime, "ACC-1") == 4000


def test_a_callback_for_no_request_of_ours_is_matched_by_the_rules(runtime: Runtime) -> None:
    add_customer(runtime, "PAYER", ["+254712345678"])
    put(runtime, "stk", stk(reference="ws_CO_not_ours"))
    drain_inbox(runtime)
    assert balance(runtime, "PAYER") == 2000


def test_a_batch_of_plain_and_answering_callbacks_gets_the_row_by_row_outcomes(
    runtime: Runtime,
) -> None:
    """The worker records a batch set-wise; payments answering requests go through the
    single-row recorder in the same batch, and each row gets its own outcome."""
    add_customer(runtime, "ACC-1", [])
    add_customer(runtime, "ACC-2", ["+254722000222"])
    ask(runtime, "ACC-1")
    ids = [
        put(runtime, "c2b/confirmation", confirmation(TransID="TKQ0000001", MSISDN="254722000222")),
        put(runtime, "stk", stk()),
        put(runtime, "c2b/confirmation", confirmation(TransID="TKQ0000002", MSISDN="254722000222")),
        put(runtime, "stk", stk()),
    ]
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        rows = {i.id: (i.status, i.reason) for i in session.scalars(select(InboxItem))}
    assert [rows[i] for i in ids] == [
        (INBOX_PROCESSED, CREDITED),
        (INBOX_PROCESSED, CREDITED),
        (INBOX_PROCESSED, CREDITED),
        (INBOX_PROCESSED, DUPLICATE),
    ]
    assert balance(runtime, "ACC-1") == 2000
    assert balance(runtime, "ACC-2") == 300000


def settle(runtime: Runtime, result: RequestResult) -> str:
    with runtime.sessions.begin() as session, Ledger(session) as ledger:
        return record_request_result(session, ledger, result, region="KE").outcome


def paid_result(reference: str = CHECKOUT, **changes: object) -> RequestResult:
    fields: dict = dict(
        provider="mpesa",
        reference=reference,
        state="paid",
        result_code="0",
        result_description="The service request is processed successfully.",
    )
    fields.update(changes)
    return RequestResult(**fields)


def test_a_query_that_names_no_receipt_credits_once_and_the_callback_then_names_it(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    assert settle(runtime, paid_result()) == CREDITED
    assert settle(runtime, paid_result()) == DUPLICATE
    request = request_row(runtime, request_id)
    with runtime.sessions.begin() as session:
        payment = session.get(Payment, request.payment_id)
        assert payment is not None
        assert (payment.code, payment.amount_minor, payment.phone) == (
            CHECKOUT,
            2000,
            "+254711000111",
        )

    put(runtime, "stk", stk())  # the callback comes after all, with the receipt
    drain_inbox(runtime)
    assert balance(runtime, "ACC-1") == 2000
    assert credits(runtime) == 1
    with runtime.sessions.begin() as session:
        payment = session.get(Payment, request.payment_id)
        assert payment is not None
        assert payment.code == "TKV5C2N8BD"
        assert payment.phone == "+254712345678"  # the payer the receipt names


def test_two_receipts_for_one_request_are_a_conflict_with_nothing_applied(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    ask(runtime, "ACC-1")
    put(runtime, "stk", stk(receipt="TKV5C2N8BD"))
    drain_inbox(runtime)
    item_id = put(runtime, "stk", stk(receipt="TKV5C2N8ZZ"))
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        item = session.get(InboxItem, item_id)
        assert item is not None
        assert (item.status, item.reason) == (INBOX_CONFLICT, CONFLICT)
        assert "TKV5C2N8ZZ" in (item.detail or "")
    assert balance(runtime, "ACC-1") == 2000
    assert credits(runtime) == 1


def test_a_result_with_its_own_receipt_and_amount_is_kept_as_the_provider_said(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    ask(runtime, "ACC-1", reference="our-own-id-1")
    outcome = settle(runtime, paid_result("our-own-id-1", code="MP210603.1234.A00001", amount=2000))
    assert outcome == CREDITED
    with runtime.sessions.begin() as session:
        assert session.scalar(select(Payment.code)) == "MP210603.1234.A00001"


def test_a_result_for_an_unknown_request_moves_no_money(runtime: Runtime) -> None:
    assert settle(runtime, paid_result("nobody-asked")) == UNKNOWN_REQUEST
    assert credits(runtime) == 0
    with runtime.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 0


def test_pending_requests_come_due_for_a_query_and_are_claimed(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    now = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        assert due_for_query(session, limit=10, now=now) == []
        assert due_for_query(session, limit=10, now=now + timedelta(seconds=91)) == [request_id]
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        asked(request, retry_after=timedelta(seconds=30), now=now + timedelta(seconds=91))
    with runtime.sessions.begin() as session:
        assert due_for_query(session, limit=10, now=now + timedelta(seconds=100)) == []
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        assert request.queries == 1
        assert request.status == REQUEST_PENDING
        assert not expire(request, now=now + timedelta(minutes=14))
        assert expire(request, now=now + timedelta(minutes=16))
        assert request.status == REQUEST_EXPIRED


def open_unsent(runtime: Runtime, account: str, phone: str, amount: int = 2000) -> int:
    with runtime.sessions.begin() as session:
        return open_request(
            session,
            provider="mpesa",
            customer=get_customer(session, account),
            phone=phone,
            amount=amount,
            currency="KES",
            actor="token:test",
            timing=TIMING,
        ).id


def name_it(runtime: Runtime, request_id: int, reference: str = CHECKOUT) -> None:
    with runtime.sessions.begin() as session:
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        submitted(session, request, reference, cancelled_codes=frozenset({1032}))


def test_a_callback_that_overtakes_the_providers_reply_settles_the_request_once(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    add_customer(runtime, "PAYER", ["+254712345678"])
    request_id = open_unsent(runtime, "ACC-1", "+254799000999")
    put(runtime, "stk", stk())  # before momo stored the CheckoutRequestID
    drain_inbox(runtime)
    name_it(runtime, request_id)
    request = request_row(runtime, request_id)
    assert request.status == REQUEST_PAID and request.payment_id is not None
    # matched by the rules when it came; a query's "paid" now credits nothing more
    assert settle(runtime, paid_result()) == DUPLICATE
    assert credits(runtime) == 1
    assert balance(runtime, "PAYER") == 2000


def test_a_query_finds_the_payment_a_callback_stored_before_the_request_was_named(
    runtime: Runtime,
) -> None:
    # The provider's reply was recorded while the callback waited for the request's lock,
    # so neither saw the other: the payment names the request, the request no payment.
    add_customer(runtime, "ACC-1", ["+254712345678"])
    request_id = open_unsent(runtime, "ACC-1", "+254799000999")
    put(runtime, "stk", stk())
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        request.provider_reference = CHECKOUT  # named without looking for its payment
    assert credits(runtime) == 1

    assert settle(runtime, paid_result()) == DUPLICATE

    request = request_row(runtime, request_id)
    assert request.status == REQUEST_PAID and request.payment_id is not None
    assert credits(runtime) == 1
    assert balance(runtime, "ACC-1") == 2000


def test_a_failure_that_overtakes_the_providers_reply_marks_the_request(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = open_unsent(runtime, "ACC-1", "+254799000999")
    put(runtime, "stk", stk_failed(code=1032))
    drain_inbox(runtime)
    name_it(runtime, request_id)
    assert request_row(runtime, request_id).status == REQUEST_CANCELLED


def test_a_request_whose_reply_was_lost_is_found_by_phone_and_amount(runtime: Runtime) -> None:
    add_customer(runtime, "ACC-1", [])
    add_customer(runtime, "PAYER", ["+254712345678"])  # the phone's owner is someone else
    other = open_unsent(runtime, "ACC-1", "+254712345678", amount=9900)
    request_id = open_unsent(runtime, "ACC-1", "+254712345678")
    put(runtime, "stk", stk())
    drain_inbox(runtime)
    request = request_row(runtime, request_id)
    assert (request.status, request.provider_reference) == (REQUEST_PAID, CHECKOUT)
    assert request_row(runtime, other).status == REQUEST_PENDING
    assert balance(runtime, "ACC-1") == 2000
    assert balance(runtime, "PAYER") == 0


def test_an_unverified_paid_result_moves_no_money_and_asks_the_provider_now(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1", reference="mtn-style-id")
    outcome = settle(runtime, paid_result("mtn-style-id", code="FT-1", verified=False))
    assert outcome == "request_to_confirm"
    assert credits(runtime) == 0
    request = request_row(runtime, request_id)
    assert request.status == REQUEST_PENDING
    with runtime.sessions.begin() as session:
        assert due_for_query(session, limit=10) == [request_id]
    # the provider's own answer (verified) is what pays it
    assert settle(runtime, paid_result("mtn-style-id", code="FT-1")) == CREDITED


def test_momo_check_finds_requests_nothing_settles(runtime: Runtime) -> None:
    from matcher.check import check_invariants

    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    with runtime.sessions.begin() as session:
        assert check_invariants(session, stuck_after=timedelta(minutes=5)) == []
        request = session.get(PaymentRequest, request_id)
        assert request is not None
        request.expires_at = datetime.now(UTC) - timedelta(hours=1)
    with runtime.sessions.begin() as session:
        found = check_invariants(session, stuck_after=timedelta(minutes=5))
    assert [v.check for v in found] == ["request"]
    assert f"payment request {request_id}" in found[0].message
    assert "beat" in found[0].message


def test_an_unverified_failure_marks_nothing_and_a_later_success_still_pays(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1", reference="mtn-style-id")
    forged = paid_result(
        "mtn-style-id", state="failed", result_code="APPROVAL_REJECTED", verified=False
    )
    assert settle(runtime, forged) == "request_to_confirm"
    assert request_row(runtime, request_id).status == REQUEST_PENDING
    with runtime.sessions.begin() as session:
        assert due_for_query(session, limit=10) == [request_id]
    # the provider, asked, says it was paid: a forged failure did not stand in the way
    assert settle(runtime, paid_result("mtn-style-id", code="FT-1")) == CREDITED
    assert request_row(runtime, request_id).status == REQUEST_PAID


def pulled(
    receipt: str = "TKV5C2N8BD",
    *,
    amount: str = "20",
    when: datetime | None = None,
    msisdn: str = "711000111",
) -> dict:
    """The provider's list of payments, naming the request's payment by its receipt."""
    paid = (when or datetime.now(UTC)).astimezone(ZoneInfo("Africa/Nairobi"))
    return {
        "transactionId": receipt,
        "trxDate": paid.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "msisdn": msisdn,
        "sender": "JOHN DOE",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": "ACC-1",
        "amount": amount,
    }


def test_a_listed_receipt_of_a_payment_settled_without_one_replaces_its_reference(
    runtime: Runtime,
) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    assert settle(runtime, paid_result()) == CREDITED  # asked: paid, no receipt named

    put(runtime, "c2b/confirmation", confirmation())  # another payment in the same batch
    item_id = put(runtime, "pull", pulled())
    drain_inbox(runtime)

    assert balance(runtime, "ACC-1") == 2000
    payment_id = request_payment(runtime, request_id)
    assert credits_of(runtime, payment_id) == 1
    with runtime.sessions.begin() as session:
        item = session.get(InboxItem, item_id)
        assert item is not None
        assert (item.status, item.reason) == (INBOX_PROCESSED, DUPLICATE)
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert payment.code == "TKV5C2N8BD"
        assert item.payment_id == payment.id


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "25"},
        {"msisdn": "711000999"},
        {"when": datetime.now(UTC) - timedelta(hours=2)},
    ],
    ids=["another amount", "another payer", "hours apart"],
)
def test_a_listed_receipt_that_differs_from_the_settled_payment_is_a_payment_of_its_own(
    runtime: Runtime, changes: dict
) -> None:
    add_customer(runtime, "ACC-1", [])
    request_id = ask(runtime, "ACC-1")
    assert settle(runtime, paid_result()) == CREDITED

    put(runtime, "pull", pulled(**changes))
    drain_inbox(runtime)

    payment_id = request_payment(runtime, request_id)
    with runtime.sessions.begin() as session:
        kept = session.get(Payment, payment_id)
        assert kept is not None
        assert kept.code == CHECKOUT  # still waiting for its own receipt
        assert find_payment(session, "mpesa", "TKV5C2N8BD") is not None


def request_payment(runtime: Runtime, request_id: int) -> int:
    payment_id = request_row(runtime, request_id).payment_id
    assert payment_id is not None
    return payment_id


def credits_of(runtime: Runtime, payment_id: int) -> int:
    with runtime.sessions.begin() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.payment_id == payment_id, LedgerEntry.amount_minor > 0)
            )
            or 0
        )
