"""Callback text that no column can hold, through webhook -> inbox -> worker on PostgreSQL.

PostgreSQL enforces VARCHAR lengths and refuses NUL characters; lone surrogates
cannot even be encoded for it. A body the webhook acknowledged must still be
processed: recorded (a name cut to its column, an unusable reference or number
leaving the payment unassociated with a reason) or rejected at the webhook when
what cannot be stored is the callback's identity. Never pending, never dead.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.runtime import Runtime
from ingest.providers import build_runtime
from ingest.providers.mpesa import with_settings
from matcher.models import INBOX_DEAD, InboxItem, Payment, PaymentAttempt
from momo.app import create_app
from momo.cli import main
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, sample, webhook_url
from tests.integration.conftest import Stack, migrated_runtime, wait_until

pytestmark = pytest.mark.integration

NUL = "\x00"
SURROGATE = "\ud800"
#: the customer every payer below could belong to
ACCOUNT, PHONE = "ACC1042", "0712345678"

_codes = itertools.count(1)
_lock = threading.Lock()


def new_code() -> str:
    with _lock:
        return f"HT{next(_codes):08d}"


@pytest.fixture(scope="module")
def pg() -> Iterator[Runtime]:
    for runtime in migrated_runtime():
        add_customer(runtime, ACCOUNT, [PHONE])
        yield runtime


@pytest.fixture(scope="module")
def client(pg: Runtime) -> FlaskClient:
    return create_app(runtime=pg).test_client()


def confirmation(**changes: Any) -> dict[str, Any]:
    body = sample("c2b_confirmation_paybill_plain.json")
    body.update(TransID=new_code(), BillRefNumber="", MSISDN="254700000001")
    body.update(changes)
    return body


def stk_failure(**changes: Any) -> dict[str, Any]:
    body = sample("stk_callback_cancelled.json")
    body["Body"]["stkCallback"].update(CheckoutRequestID=f"ws_CO_{new_code()}")
    body["Body"]["stkCallback"].update(changes)
    return body


def post(client: FlaskClient, kind: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    # json.dumps writes NUL and lone surrogates as \u escapes, as a sender's JSON library would
    response = client.post(
        webhook_url(kind), data=json.dumps(body), content_type="application/json"
    )
    return response.status_code, response.get_json(force=True)


def row_of(runtime: Runtime, body: bytes) -> InboxItem:
    with runtime.sessions.begin() as session:
        row = session.scalars(select(InboxItem).where(InboxItem.body == body)).one()
        session.expunge(row)
        return row


def payment_of(runtime: Runtime, code: str) -> Payment:
    with runtime.sessions.begin() as session:
        payment = session.scalars(select(Payment).where(Payment.code == code)).one()
        session.expunge(payment)
        return payment


def accepted_and_processed(pg: Runtime, client: FlaskClient, kind: str, body: dict) -> InboxItem:
    status, answer = post(client, kind, body)
    assert (status, answer["ResultCode"]) == (200, 0), answer
    drain_inbox(pg)
    row = row_of(pg, json.dumps(body).encode())
    assert row.status == "processed", (row.status, row.reason, row.detail)
    return row


# (field changes, how the payment ends: status, reason or match method, and which stored
# column must hold what)
PAYMENTS = {
    "an over-long account reference, payer's phone known": (
        {"BillRefNumber": ACCOUNT + "x" * 200, "MSISDN": "254712345678"},
        ("associated", "phone"),
        {"account_reference": ACCOUNT + "x" * 121},
    ),
    "an over-long account reference, payer unknown": (
        {"BillRefNumber": "R" * 129},
        ("unassociated", "invalid_reference"),
        {"account_reference": "R" * 128},
    ),
    "an account reference with a NUL, payer unknown": (
        {"BillRefNumber": ACCOUNT + NUL},
        ("unassociated", "invalid_reference"),
        {"account_reference": ACCOUNT + "\ufffd"},
    ),
    "an account reference with a lone surrogate, payer's phone known": (
        {"BillRefNumber": SURROGATE + ACCOUNT, "MSISDN": "254712345678"},
        ("associated", "phone"),
        {"account_reference": "\ufffd" + ACCOUNT},
    ),
    "an over-long MSISDN, account reference good": (
        {"BillRefNumber": ACCOUNT, "MSISDN": "254712345678" * 20},
        ("associated", "account_number"),
        {"msisdn_raw": ("254712345678" * 20)[:128], "msisdn_kind": "invalid"},
    ),
    "an over-long MSISDN, nothing else to go by": (
        {"MSISDN": "7" * 300},
        ("unassociated", "invalid_phone"),
        {"msisdn_raw": "7" * 128},
    ),
    "a MSISDN with a NUL and a surrogate": (
        {"MSISDN": "2547123" + NUL + "45678" + SURROGATE},
        ("unassociated", "invalid_phone"),
        {"msisdn_raw": "2547123\ufffd45678\ufffd", "phone": None},
    ),
    "an over-long payer name": (
        {"BillRefNumber": ACCOUNT, "FirstName": "W" * 300},
        ("associated", "account_number"),
        {"payer_name": "W" * 200},
    ),
    "a payer name with a NUL and a surrogate": (
        {"BillRefNumber": ACCOUNT, "FirstName": "WAN" + NUL + "JIKU", "LastName": SURROGATE},
        ("associated", "account_number"),
        {"payer_name": "WAN\ufffdJIKU A \ufffd"},
    ),
    "an over-long transaction type and short code": (
        {"BillRefNumber": ACCOUNT, "TransactionType": "T" * 100, "BusinessShortCode": "9" * 100},
        ("associated", "account_number"),
        {"transaction_type": "T" * 64, "business_short_code": "9" * 32},
    ),
    "a short code with a NUL": (
        {"BillRefNumber": ACCOUNT, "BusinessShortCode": "41306" + NUL},
        ("associated", "account_number"),
        {"business_short_code": "41306\ufffd"},
    ),
}


@pytest.mark.parametrize("case", PAYMENTS)
def test_an_acknowledged_payment_with_unstorable_text_is_recorded_once(
    pg: Runtime, client: FlaskClient, case: str
) -> None:
    changes, (status, how), stored = PAYMENTS[case]
    body = confirmation(**changes)
    row = accepted_and_processed(pg, client, "c2b/confirmation", body)
    payment = payment_of(pg, body["TransID"])
    assert row.payment_id == payment.id
    assert payment.status == status
    assert how == (payment.match_method if status == "associated" else payment.reason)
    for column, value in stored.items():
        assert getattr(payment, column) == value, column

    # the same callback again is a duplicate, not a conflict with its own shortened copy
    again = accepted_and_processed(
        pg, client, "c2b/confirmation", {**body, "OrgAccountBalance": ""}
    )
    assert again.reason == "duplicate", again.detail


def test_a_failed_stk_attempt_with_unstorable_text_is_recorded(
    pg: Runtime, client: FlaskClient
) -> None:
    body = stk_failure(MerchantRequestID="M" * 300, ResultDesc="cancelled" + NUL + SURROGATE * 600)
    accepted_and_processed(pg, client, "stk", body)
    reference = body["Body"]["stkCallback"]["CheckoutRequestID"]
    with pg.sessions.begin() as session:
        attempt = session.scalars(
            select(PaymentAttempt).where(PaymentAttempt.reference == reference)
        ).one()
        assert attempt.merchant_reference == "M" * 128
        assert attempt.result_desc == ("cancelled\ufffd" + "\ufffd" * 600)[:500]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CheckoutRequestID", "ws_CO_" + "9" * 200),
        ("CheckoutRequestID", "ws_CO_1" + NUL),
        ("CheckoutRequestID", "ws_CO_1" + SURROGATE),
    ],
)
def test_an_stk_result_whose_reference_cannot_be_an_id_is_rejected_at_the_webhook(
    pg: Runtime, client: FlaskClient, field: str, value: str
) -> None:
    body = stk_failure(**{field: value})
    status, answer = post(client, "stk", body)
    assert status == 400
    assert answer["reason"] == "invalid_field"
    row = row_of(pg, json.dumps(body).encode())
    assert (row.status, row.reason) == ("rejected", "invalid_field")


def test_a_dead_row_left_by_an_unstorable_value_is_replayed_and_credited(
    pg: Runtime, client: FlaskClient
) -> None:
    """What an older momo left dead (it retried a too-long name until it gave up) is
    brought back by `momo inbox replay` and credited once."""
    body = confirmation(BillRefNumber=ACCOUNT, FirstName="W" * 300)
    with pg.sessions.begin() as session:
        item = InboxItem(
            provider="mpesa",
            kind="c2b/confirmation",
            body=json.dumps(body).encode(),
            headers={},
            status=INBOX_DEAD,
            reason="failed",
            detail="DataError: value too long for type character varying(200)",
            code=body["TransID"],
            attempts=5,
        )
        session.add(item)
        session.flush()
        inbox_id = item.id
    env = {"MOMO_DATABASE_URL": pg.settings.database_url, "MOMO_MPESA_PATH_TOKEN": PATH_TOKEN}
    result = CliRunner().invoke(main, ["inbox", "replay", str(inbox_id)], env=env)
    assert result.exit_code == 0, result.output
    assert "processed (credited)" in result.stdout
    assert payment_of(pg, body["TransID"]).payer_name == "W" * 200


# Text of any kind, the hostile kinds made likely: NUL, lone surrogates, other controls,
# and lengths on both sides of every column.
hostile_text = st.one_of(
    st.text(st.characters(codec=None, categories=None), max_size=20),
    st.text(st.sampled_from(["\x00", "\ud800", "\udfff", "\x7f", "a", "7", " "]), max_size=30),
    st.integers(0, 400).map(lambda n: "9" * n),
)
TEXT_FIELDS = (
    "BillRefNumber",
    "MSISDN",
    "FirstName",
    "MiddleName",
    "LastName",
    "TransactionType",
    "BusinessShortCode",
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.dictionaries(st.sampled_from(TEXT_FIELDS), hostile_text, min_size=1))
def test_any_text_in_an_acknowledged_confirmation_ends_in_one_payment(
    pg: Runtime, client: FlaskClient, changes: dict[str, str]
) -> None:
    body = confirmation(**changes)
    status, answer = post(client, "c2b/confirmation", body)
    assert status == 200, answer
    drain_inbox(pg)
    row = row_of(pg, json.dumps(body).encode())
    assert (row.status, row.reason) in {("processed", "credited"), ("processed", "unassociated")}, (
        row.status,
        row.reason,
        row.detail,
    )
    with pg.sessions.begin() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Payment).where(Payment.code == body["TransID"])
            )
            == 1
        )


def test_over_http_a_payment_with_unstorable_text_is_credited_by_the_worker(stack: Stack) -> None:
    """The same through gunicorn and a Celery worker: acknowledged, then credited once."""
    response = stack.api(
        "POST",
        "/customers",
        json={"account_number": "HOSTILE-1", "name": "H", "phones": ["0722 000 111"]},
    )
    assert response.status_code == 201, response.text
    body = confirmation(
        BillRefNumber="HOSTILE-1" + NUL + "x" * 300,
        MSISDN="254722000111",
        FirstName="W" * 300 + SURROGATE,
    )
    answer = stack.post("c2b/confirmation", json.dumps(body).encode())
    assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    wait_until(lambda: stack.balance("HOSTILE-1") == "1500.00")
    with stack.runtime.sessions.begin() as session:
        item = session.scalars(select(InboxItem).where(InboxItem.code == body["TransID"])).one()
        assert (item.status, item.reason) == ("processed", "credited")


@pytest.mark.parametrize(
    ("reference", "msisdn", "accepted"),
    [
        (ACCOUNT + NUL, "254700000001", False),
        (SURROGATE * 3, "254712345678", True),
        ("R" * 500, "254712345678", True),
    ],
)
def test_a_validation_with_an_unusable_reference_is_answered_not_a_503(
    pg: Runtime, reference: str, msisdn: str, accepted: bool
) -> None:
    """Refusing unknown accounts looks the reference up: one no account can have is not
    looked up (PostgreSQL would refuse the query), the payer's phone still counts."""
    checking = build_runtime(with_settings(pg.settings, validation="reject-unknown-account"))
    try:
        client = create_app(runtime=checking).test_client()
        body = sample("c2b_validation.json") | {"BillRefNumber": reference, "MSISDN": msisdn}
        status, answer = post(client, "c2b/validation", body)
    finally:
        checking.close()
    assert status == 200, answer
    assert answer["ResultCode"] == ("0" if accepted else "C2B00012")
