"""Numbers and times no column (or calendar) holds, through webhook -> inbox -> worker on
PostgreSQL.

Every number the M-PESA adapter reads is bounded where it is parsed, the one parse
the webhook and the worker share: a value past its column (``payment_attempts.result_code``
is INTEGER, amounts BIGINT) or a time no payment can have is refused at the webhook with
a reason and kept as rejected. Never acknowledged and then dead.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from core.runtime import Runtime
from matcher.models import InboxItem, Payment, PaymentAttempt
from momo.app import create_app
from tasks.work import drain_inbox
from tests.conftest import sample, webhook_url
from tests.integration.conftest import migrated_runtime

pytestmark = pytest.mark.integration

_codes = itertools.count(1)


@pytest.fixture(scope="module")
def pg() -> Iterator[Runtime]:
    yield from migrated_runtime()


@pytest.fixture(scope="module")
def client(pg: Runtime) -> FlaskClient:
    return create_app(runtime=pg).test_client()


def stk(result_code: object = 0, **items: object) -> dict[str, Any]:
    n = next(_codes)
    name = "stk_callback_success.json" if result_code == 0 else "stk_callback_cancelled.json"
    body = sample(name)
    callback = body["Body"]["stkCallback"]
    callback.update(CheckoutRequestID=f"ws_CO_NUM{n:06d}", ResultCode=result_code)
    if result_code == 0:
        values = {"MpesaReceiptNumber": f"NUM{n:07d}", **items}
        for item in callback["CallbackMetadata"]["Item"]:
            if item["Name"] in values:
                item["Value"] = values[item["Name"]]
    return body


def confirmation(**changes: object) -> dict[str, Any]:
    body = sample("c2b_confirmation_paybill_plain.json")
    body.update(TransID=f"NUC{next(_codes):07d}", BillRefNumber="", MSISDN="254700000001")
    body.update(changes)
    return body


def post(client: FlaskClient, kind: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = client.post(
        webhook_url(kind), data=json.dumps(body), content_type="application/json"
    )
    return response.status_code, response.get_json(force=True)


def row_of(runtime: Runtime, body: dict[str, Any]) -> InboxItem:
    with runtime.sessions.begin() as session:
        row = session.scalars(
            select(InboxItem).where(InboxItem.body == json.dumps(body).encode())
        ).one()
        session.expunge(row)
        return row


REFUSED = {
    "an STK ResultCode past a 32-bit integer": (
        "stk",
        lambda: stk(2**31),
        "invalid_field",
        "ResultCode",
    ),
    "a negative STK ResultCode past a 32-bit integer": (
        "stk",
        lambda: stk(-(2**40)),
        "invalid_field",
        "ResultCode",
    ),
    "an STK ResultCode of 40 digits": ("stk", lambda: stk(10**40), "invalid_field", "ResultCode"),
    "a TransTime in year 1": (
        "c2b/confirmation",
        lambda: confirmation(TransTime="00010102000000"),
        "invalid_time",
        "TransTime",
    ),
    "a TransTime in year 9999": (
        "c2b/confirmation",
        lambda: confirmation(TransTime="99991231235959"),
        "invalid_time",
        "TransTime",
    ),
    "an STK TransactionDate in year 9999": (
        "stk",
        lambda: stk(TransactionDate=99990101000000),
        "invalid_time",
        "TransactionDate",
    ),
    "an STK TransactionDate in year 1": (
        "stk",
        lambda: stk(TransactionDate=10102000000),
        "invalid_time",
        "TransactionDate",
    ),
    "an amount past BIGINT minor units": (
        "c2b/confirmation",
        lambda: confirmation(TransAmount=str(2**63)),
        "invalid_amount",
        "TransAmount",
    ),
    "an STK Amount past BIGINT minor units": (
        "stk",
        lambda: stk(Amount=2**70),
        "invalid_amount",
        "Amount",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_number_no_column_holds_is_refused_at_the_webhook_and_kept(
    pg: Runtime, client: FlaskClient, case: str
) -> None:
    kind, make, reason, field = REFUSED[case]
    body = make()
    status, answer = post(client, kind, body)
    assert status == 400, answer
    assert answer["reason"] == reason
    assert field in answer["ResultDesc"] or field in json.dumps(answer)
    drain_inbox(pg)
    row = row_of(pg, body)
    assert (row.status, row.reason) == ("rejected", reason), row.detail
    assert row.detail and field in row.detail


def test_the_largest_result_code_and_amount_and_latest_time_allowed_are_recorded(
    pg: Runtime, client: FlaskClient
) -> None:
    failed = stk(999_999_999)
    assert post(client, "stk", failed)[0] == 200
    paid = confirmation(TransAmount="1000000000.00")
    assert post(client, "c2b/confirmation", paid)[0] == 200
    drain_inbox(pg)
    assert row_of(pg, failed).status == "processed"
    assert row_of(pg, paid).status == "processed"
    with pg.sessions.begin() as session:
        reference = failed["Body"]["stkCallback"]["CheckoutRequestID"]
        attempt = session.scalars(
            select(PaymentAttempt).where(PaymentAttempt.reference == reference)
        ).one()
        assert attempt.result_code == 999_999_999
        payment = session.scalars(select(Payment).where(Payment.code == paid["TransID"])).one()
        assert payment.amount_minor == 100_000_000_000
