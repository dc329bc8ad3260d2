"""POST /api/v1/payment-requests through MTN MoMo request-to-pay, against a fake MTN on
loopback: MTN's callback is not signed, so nothing is settled on its word; the status
GET at the next sweep settles the request, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from core.config import Settings
from core.runtime import Runtime
from ingest.asking import settle_due
from ingest.providers import requesters
from ingest.providers.mpesa import MpesaSettings
from ingest.providers.mtn import MtnSettings
from ingest.providers.outbound import Timeouts
from matcher.db import utcnow
from matcher.models import UNASSOCIATED, Payment, PaymentRequest
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, assert_problem
from tests.fakes import HELD, PAY, QUERY, MtnFake, MtnResult
from tests.fakes.base import to_json
from tests.fakes.mtn import API_KEY, API_USER, SUBSCRIPTION_KEY
from tests.unit.test_payment_requests import credits
from tests.unit.test_payment_requests_api import make_due, shown
from tests.unit.test_pipeline import balance

PUBLIC_URL = "https://pay.example.com"
MTN_TOKEN = "mtn-path-token-0123456789abcdefghijkl"
CALLBACK_URL = f"/webhooks/mtn/{MTN_TOKEN}/callback"


@pytest.fixture
def mtn() -> Iterator[MtnFake]:
    with MtnFake() as fake:
        fake.default_outcome = MtnResult(callback=HELD)  # the test delivers callbacks
        yield fake
    assert fake.errors == []


@pytest.fixture
def settings(tmp_path: Path, mtn: MtnFake) -> Settings:
    block = MtnSettings(
        path_token=MTN_TOKEN,
        subscription_key=SUBSCRIPTION_KEY,
        api_user=API_USER,
        api_key=API_KEY,
        api_base=mtn.base_url,
        timeouts=Timeouts(connect=1.0, read=0.5),
    )
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'momo.db'}",
        providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN), "mtn": block},
        instance_path=tmp_path / "instance",
        public_url=PUBLIC_URL,
        default_region="UG",
        currency="EUR",  # the sandbox's only currency
    )


@pytest.fixture
def customer(runtime: Runtime) -> str:
    add_customer(runtime, "ACC-7", ["0772123456"])  # MTN Uganda
    return "ACC-7"


def ask(client: FlaskClient, headers: dict[str, str], **body: Any) -> Any:
    body = {"account_number": "ACC-7", "amount": "1500", **body}
    return client.post("/api/v1/payment-requests", json=body, headers=headers)


def deliver(client: FlaskClient, mtn: MtnFake, reference: str, method: str = "PUT") -> None:
    """Send the fake's callback for ``reference`` to momo's URL, as MTN would."""
    body = to_json(mtn.callback_body(mtn.transactions[reference]))
    answer = client.open(CALLBACK_URL, method=method, data=body, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)


def queries(mtn: MtnFake, reference: str) -> int:
    return len([q for q in mtn.calls(QUERY) if q.path.endswith(reference)])


def test_a_prompt_its_callback_and_the_get_that_confirms_it_credit_once(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    answer = ask(client, operator_headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    item = answer.get_json()
    assert (item["provider"], item["status"], item["phone"]) == ("mtn", "pending", "+256772123456")
    reference = item["provider_reference"]
    (pay,) = mtn.calls(PAY)
    assert pay.headers["X-Reference-Id"] == reference == pay.json["externalId"]
    assert pay.headers["X-Callback-Url"] == PUBLIC_URL + CALLBACK_URL

    deliver(client, mtn, reference)
    assert drain_inbox(runtime).outcomes == {"request_to_confirm": 1}
    assert shown(client, operator_headers, item["id"])["status"] == "pending"
    assert credits(runtime) == 0  # the callback's word alone pays nothing

    summary = settle_due(runtime, requesters())  # the callback made it due at once
    assert summary.asked == 1 and summary.outcomes == {"credited": 1}
    assert queries(mtn, reference) == 1
    settled = shown(client, operator_headers, item["id"])
    assert settled["status"] == "paid" and settled["payment_id"] is not None
    assert balance(runtime, customer) == 150000

    deliver(client, mtn, reference, method="POST")  # again, as POST this time
    drain_inbox(runtime)
    make_due(runtime)
    assert settle_due(runtime, requesters()).asked == 0  # settled: never asked again
    assert credits(runtime) == 1
    with runtime.sessions.begin() as session:
        (payment,) = session.scalars(select(Payment)).all()
        assert payment.code == mtn.transactions[reference].data["financial_transaction_id"]


def test_a_callback_sent_twice_before_the_sweep_credits_once(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    item = ask(client, operator_headers).get_json()
    deliver(client, mtn, item["provider_reference"])
    deliver(client, mtn, item["provider_reference"])
    drain_inbox(runtime)
    assert settle_due(runtime, requesters()).asked == 1
    assert credits(runtime) == 1
    assert balance(runtime, customer) == 150000


def test_a_success_callback_that_the_get_contradicts_credits_nothing(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.default_outcome = MtnResult(
        status="FAILED", reason="NOT_ENOUGH_FUNDS", callback_status="SUCCESSFUL", callback=HELD
    )
    item = ask(client, operator_headers).get_json()
    deliver(client, mtn, item["provider_reference"])
    drain_inbox(runtime)
    settle_due(runtime, requesters())
    settled = shown(client, operator_headers, item["id"])
    assert (settled["status"], settled["result_code"]) == ("failed", "NOT_ENOUGH_FUNDS")
    assert credits(runtime) == 0
    with runtime.sessions.begin() as session:
        assert session.scalars(select(Payment)).all() == []


def test_a_failure_callback_that_the_get_contradicts_does_not_stop_the_credit(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    # an unsigned FAILED (forged, or wrong) is not taken: MTN's own answer is
    mtn.default_outcome = MtnResult(
        status="SUCCESSFUL", callback_status="FAILED", reason="EXPIRED", callback=HELD
    )
    item = ask(client, operator_headers).get_json()
    deliver(client, mtn, item["provider_reference"])
    drain_inbox(runtime)
    assert shown(client, operator_headers, item["id"])["status"] == "pending"
    settle_due(runtime, requesters())
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert balance(runtime, customer) == 150000


@pytest.mark.parametrize(
    ("reason", "status", "code"),
    [
        ("NOT_ENOUGH_FUNDS", "failed", "NOT_ENOUGH_FUNDS"),
        ({"code": "EXPIRED", "message": "Request expired"}, "failed", "EXPIRED"),
        ("APPROVAL_REJECTED", "cancelled", "APPROVAL_REJECTED"),
    ],
)
def test_a_failure_marks_the_request_and_moves_no_money(
    client: FlaskClient,
    runtime: Runtime,
    operator_headers: dict,
    mtn: MtnFake,
    customer: str,
    reason: Any,
    status: str,
    code: str,
) -> None:
    mtn.default_outcome = MtnResult(status="FAILED", reason=reason, callback=HELD)
    item = ask(client, operator_headers).get_json()
    deliver(client, mtn, item["provider_reference"])
    drain_inbox(runtime)
    settle_due(runtime, requesters())
    settled = shown(client, operator_headers, item["id"])
    assert (settled["status"], settled["result_code"]) == (status, code)
    assert credits(runtime) == 0


def test_a_callback_that_never_comes_is_settled_by_the_get(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.default_outcome = None  # the payer has not answered yet
    item = ask(client, operator_headers).get_json()
    reference = item["provider_reference"]
    make_due(runtime)
    assert settle_due(runtime, requesters()).outcomes == {"pending": 1}

    mtn.decide(reference, MtnResult(callback=HELD))  # paid; the callback is lost
    make_due(runtime)
    settle_due(runtime, requesters())
    assert queries(mtn, reference) == 2
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert balance(runtime, customer) == 150000

    deliver(client, mtn, reference)  # it comes after all: nothing changes twice
    drain_inbox(runtime)
    make_due(runtime)
    assert settle_due(runtime, requesters()).asked == 0
    assert credits(runtime) == 1
    assert queries(mtn, reference) == 2


def test_a_late_failure_never_undoes_a_success(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.default_outcome = MtnResult(
        status="SUCCESSFUL", callback_status="FAILED", reason="EXPIRED", callback=HELD
    )
    item = ask(client, operator_headers).get_json()
    make_due(runtime)
    settle_due(runtime, requesters())
    deliver(client, mtn, item["provider_reference"])
    drain_inbox(runtime)
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert balance(runtime, customer) == 150000


def test_an_amount_the_get_disagrees_with_is_kept_for_an_operator(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.default_outcome = MtnResult(amount="1400", callback=HELD)
    item = ask(client, operator_headers).get_json()
    deliver(client, mtn, item["provider_reference"])
    drain_inbox(runtime)
    settle_due(runtime, requesters())
    assert shown(client, operator_headers, item["id"])["result_code"] == "amount_differs"
    assert balance(runtime, customer) == 0
    with runtime.sessions.begin() as session:
        (payment,) = session.scalars(select(Payment)).all()
        assert (payment.amount_minor, payment.status, payment.reason) == (
            140000,
            UNASSOCIATED,
            "amount_differs",
        )


def test_a_timeout_on_the_request_to_pay_is_asked_about_never_sent_again(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.hang_next(PAY, seconds=2)
    answer = ask(client, operator_headers)
    assert answer.status_code == 201
    item = answer.get_json()
    # momo chose the reference before asking: the request can be asked about
    assert item["status"] == "pending" and item["provider_reference"] in mtn.transactions
    make_due(runtime)
    settle_due(runtime, requesters())
    assert len(mtn.calls(PAY)) == 1
    assert queries(mtn, item["provider_reference"]) == 1
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert balance(runtime, customer) == 150000


def test_a_refusal_is_422_with_mtns_words_and_the_request_is_kept_failed(
    client: FlaskClient, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.refuse_next(PAY, "payer_not_found")
    body = assert_problem(ask(client, operator_headers), 422, "provider_refused")
    assert "Payer not found" in body["detail"]
    kept = body["payment_request"]
    assert (kept["status"], kept["result_code"]) == ("failed", "PAYER_NOT_FOUND")


def test_a_currency_mtn_does_not_collect_is_422_and_mtn_is_not_asked(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    runtime.settings = runtime.settings.with_overrides(currency="UGX")
    body = assert_problem(ask(client, operator_headers), 422, "provider_refused")
    assert "MOMO_MTN_CURRENCY" in body["detail"]
    assert mtn.calls(PAY) == []


def test_without_credentials_the_missing_variables_are_named(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, customer: str
) -> None:
    runtime.settings = runtime.settings.with_provider("mtn", MtnSettings())
    body = assert_problem(ask(client, operator_headers), 400, "provider_not_configured")
    for name in ("MOMO_MTN_SUBSCRIPTION_KEY", "MOMO_MTN_API_KEY", "MOMO_MTN_PATH_TOKEN"):
        assert name in body["detail"]


def test_a_success_that_comes_after_the_request_expired_is_confirmed_and_credited(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, mtn: MtnFake, customer: str
) -> None:
    mtn.default_outcome = None  # still PENDING at MTN when momo gives up
    item = ask(client, operator_headers).get_json()
    reference = item["provider_reference"]
    with runtime.sessions.begin() as session:
        session.execute(
            update(PaymentRequest).values(
                expires_at=utcnow() - timedelta(seconds=1),
                query_at=utcnow() - timedelta(seconds=1),
            )
        )
    settle_due(runtime, requesters())
    assert shown(client, operator_headers, item["id"])["status"] == "expired"

    mtn.decide(reference, MtnResult(callback=HELD))  # the payer paid after all
    deliver(client, mtn, reference)  # unsigned: MTN is asked once more
    drain_inbox(runtime)
    assert credits(runtime) == 0
    settle_due(runtime, requesters())
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert balance(runtime, customer) == 150000
    asked = queries(mtn, reference)
    settle_due(runtime, requesters())
    assert queries(mtn, reference) == asked  # settled: never asked again
