"""POST /api/v1/payment-requests through M-PESA Express, against a fake Daraja on loopback:
the prompt, its callback, a refusal, an outage, a lost reply and a callback that never
comes (settled by asking Daraja)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
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
from ingest.providers.mpesa_express import ExpressSettings
from ingest.providers.outbound import Timeouts
from matcher.db import utcnow
from matcher.models import PaymentRequest
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, assert_problem, webhook_url
from tests.fakes import HELD, PAY, QUERY, DarajaFake, StkResult
from tests.fakes.base import to_json
from tests.fakes.daraja import CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SHORTCODE
from tests.unit.test_payment_requests import credits
from tests.unit.test_pipeline import balance

PUBLIC_URL = "https://pay.example.com"


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        fake.default_outcome = StkResult(callback=HELD)  # the test delivers callbacks
        yield fake
    assert fake.errors == []


@pytest.fixture
def settings(tmp_path: Path, daraja: DarajaFake) -> Settings:
    express = ExpressSettings(
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        shortcode=SHORTCODE,
        passkey=PASSKEY,
        api_base=daraja.base_url,
        timeouts=Timeouts(connect=1.0, read=0.5),
    )
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'momo.db'}",
        providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN, express=express)},
        instance_path=tmp_path / "instance",
        public_url=PUBLIC_URL,
    )


@pytest.fixture
def customer(runtime: Runtime) -> str:
    add_customer(runtime, "ACC-7", ["0712345678", "0722000111"])
    return "ACC-7"


def ask(client: FlaskClient, headers: dict[str, str], key: str | None = None, **body: Any) -> Any:
    body = {"account_number": "ACC-7", "amount": "1500", **body}
    sent = dict(headers)
    if key:
        sent["Idempotency-Key"] = key
    return client.post("/api/v1/payment-requests", json=body, headers=sent)


def deliver(client: FlaskClient, daraja: DarajaFake, reference: str) -> None:
    """Post the fake's callback for ``reference`` to momo's STK URL, as Daraja would."""
    body = daraja.callback_body(daraja.transactions[reference])
    answer = client.post(webhook_url("stk"), data=to_json(body), content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)


def shown(client: FlaskClient, headers: dict[str, str], request_id: int) -> dict[str, Any]:
    answer = client.get(f"/api/v1/payment-requests/{request_id}", headers=headers)
    item: dict[str, Any] = answer.get_json()
    return item


def make_due(runtime: Runtime) -> None:
    """As if MOMO_REQUEST_QUERY_AFTER_SECONDS had passed."""
    with runtime.sessions.begin() as session:
        session.execute(update(PaymentRequest).values(query_at=utcnow() - timedelta(seconds=1)))


def test_a_request_prompts_the_customers_first_phone_and_its_callback_credits_it(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    answer = ask(client, operator_headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    item = answer.get_json()
    assert item["status"] == "pending"
    assert item["provider"] == "mpesa"
    assert item["phone"] == "+254712345678"
    assert (item["amount"], item["currency"], item["payment_id"]) == ("1500.00", "KES", None)
    (push,) = daraja.calls(PAY)
    assert push.json["PhoneNumber"] == "254712345678"
    assert push.json["Amount"] == 1500
    assert push.json["CallBackURL"] == f"{PUBLIC_URL}/webhooks/daraja/{PATH_TOKEN}/stk"
    assert item["provider_reference"] in daraja.transactions

    deliver(client, daraja, item["provider_reference"])
    drain_inbox(runtime)
    shown = client.get(f"/api/v1/payment-requests/{item['id']}", headers=operator_headers)
    assert shown.get_json()["status"] == "paid"
    assert shown.get_json()["payment_id"] is not None
    assert balance(runtime, customer) == 150000

    deliver(client, daraja, item["provider_reference"])  # Daraja sends it again
    drain_inbox(runtime)
    assert credits(runtime) == 1


def test_a_repeat_with_the_same_key_never_prompts_twice(
    client: FlaskClient, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    first = ask(client, operator_headers, key="portal-42")
    again = ask(client, operator_headers, key="portal-42")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert len(daraja.calls(PAY)) == 1


def test_a_refusal_is_422_with_darajas_words_and_the_request_is_kept_failed(
    client: FlaskClient, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    daraja.refuse_next(PAY, "invalid_phone")
    body = assert_problem(ask(client, operator_headers), 422, "provider_refused")
    assert "Invalid" in body["detail"]
    kept = body["payment_request"]
    assert (kept["status"], kept["result_code"]) == ("failed", "400.002.02")
    listed = client.get("/api/v1/payment-requests?status=failed", headers=operator_headers)
    assert [r["id"] for r in listed.get_json()["items"]] == [kept["id"]]


def test_an_outage_is_502_and_nobody_was_asked(
    client: FlaskClient, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    daraja.fail_next(PAY, times=10, status=503)
    body = assert_problem(ask(client, operator_headers), 502, "provider_unavailable")
    assert body["payment_request"]["status"] == "failed"
    assert daraja.transactions == {}


def test_cents_are_refused_with_a_way_out(
    client: FlaskClient, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    body = assert_problem(ask(client, operator_headers, amount="1500.50"), 422, "provider_refused")
    assert "1500 or 1501" in body["detail"]
    assert daraja.calls(PAY) == []


def test_a_lost_reply_is_never_pushed_again_and_its_callback_still_finds_it(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    daraja.hang_next(PAY, seconds=2)
    answer = ask(client, operator_headers)
    assert answer.status_code == 201
    item = answer.get_json()
    assert (item["status"], item["provider_reference"]) == ("pending", None)
    assert len(daraja.calls(PAY)) == 1
    (reference,) = daraja.transactions  # Daraja took it all the same

    make_due(runtime)
    settle_due(runtime, requesters())  # cannot be asked about: Daraja never named it
    assert daraja.calls(QUERY) == []
    assert len(daraja.calls(PAY)) == 1

    deliver(client, daraja, reference)
    drain_inbox(runtime)
    shown = client.get(f"/api/v1/payment-requests/{item['id']}", headers=operator_headers)
    assert (shown.get_json()["status"], shown.get_json()["provider_reference"]) == (
        "paid",
        reference,
    )
    assert balance(runtime, customer) == 150000


def test_a_callback_that_never_comes_is_settled_by_asking_daraja_once(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    daraja.default_outcome = None  # the customer has not answered yet
    item = ask(client, operator_headers).get_json()
    reference = item["provider_reference"]
    make_due(runtime)
    summary = settle_due(runtime, requesters())
    assert summary.asked == 1 and summary.outcomes == {"pending": 1}

    daraja.decide(reference, StkResult(callback=HELD))  # paid; the callback is lost
    make_due(runtime)
    settle_due(runtime, requesters())
    assert len(daraja.calls(QUERY)) == 2
    shown = client.get(f"/api/v1/payment-requests/{item['id']}", headers=operator_headers)
    assert shown.get_json()["status"] == "paid"
    assert balance(runtime, customer) == 150000

    deliver(client, daraja, reference)  # it comes after all
    drain_inbox(runtime)
    assert credits(runtime) == 1
    make_due(runtime)
    assert settle_due(runtime, requesters()).asked == 0  # settled: never asked again


def test_a_cancelled_prompt_moves_no_money(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    daraja.default_outcome = StkResult(code=1032, callback=HELD)
    item = ask(client, operator_headers).get_json()
    deliver(client, daraja, item["provider_reference"])
    drain_inbox(runtime)
    shown = client.get(f"/api/v1/payment-requests/{item['id']}", headers=operator_headers)
    assert (shown.get_json()["status"], shown.get_json()["result_code"]) == ("cancelled", "1032")
    assert credits(runtime) == 0


def test_the_customer_route_a_phone_given_and_the_list_filters(
    client: FlaskClient, operator_headers: dict, viewer_headers: dict, customer: str
) -> None:
    made = client.post(
        f"/api/v1/customers/{customer}/payment-requests",
        json={"amount": "200", "phone": "0722 000 111"},
        headers=operator_headers,
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["phone"] == "+254722000111"
    ask(client, operator_headers)
    listed = client.get(
        f"/api/v1/payment-requests?account={customer.lower()}&limit=1", headers=viewer_headers
    ).get_json()
    assert len(listed["items"]) == 1 and listed["next_cursor"]
    rest = client.get(
        f"/api/v1/payment-requests?account={customer}&cursor={listed['next_cursor']}",
        headers=viewer_headers,
    ).get_json()
    assert [r["id"] for r in listed["items"] + rest["items"]] == sorted(
        [r["id"] for r in listed["items"] + rest["items"]], reverse=True
    )
    assert len(rest["items"]) == 1
    assert_problem(
        client.get("/api/v1/payment-requests?status=lost", headers=viewer_headers),
        400,
        "invalid_status",
    )
    assert_problem(ask(client, viewer_headers), 403, "forbidden")


def test_unknown_customers_and_unreadable_phones_are_named(
    client: FlaskClient, operator_headers: dict, customer: str
) -> None:
    assert_problem(ask(client, operator_headers, account_number="NOPE"), 404, "customer_not_found")
    body = assert_problem(ask(client, operator_headers, phone="12"), 400, "invalid_phone")
    assert "+254712345678" in body["detail"]


def test_without_express_settings_the_missing_variables_are_named(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, customer: str
) -> None:
    runtime.settings = runtime.settings.with_overrides(
        providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN)}, public_url=None
    )
    body = assert_problem(ask(client, operator_headers), 400, "provider_not_configured")
    for name in ("MOMO_PUBLIC_URL", "MOMO_MPESA_CONSUMER_KEY", "MOMO_MPESA_PASSKEY"):
        assert name in body["detail"]


def test_a_callback_for_another_amount_is_kept_for_an_operator(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    daraja.default_outcome = StkResult(callback=HELD, amount=Decimal("15"))
    item = ask(client, operator_headers).get_json()
    deliver(client, daraja, item["provider_reference"])
    drain_inbox(runtime)
    shown = client.get(f"/api/v1/payment-requests/{item['id']}", headers=operator_headers)
    assert (shown.get_json()["status"], shown.get_json()["result_code"]) == (
        "paid",
        "amount_differs",
    )
    assert balance(runtime, customer) == 0
    unassociated = client.get(
        "/api/v1/payments?status=unassociated", headers=operator_headers
    ).get_json()["items"]
    assert [(p["amount"], p["reason"]) for p in unassociated] == [("15.00", "amount_differs")]


def test_a_slow_provider_does_not_hold_the_sweep_past_its_budget(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake, customer: str
) -> None:
    for _ in range(3):  # paid, and their callbacks lost
        assert ask(client, operator_headers).status_code == 201
    make_due(runtime)
    daraja.hang_next(QUERY, seconds=1.0, times=3)  # each answer later than the read timeout
    summary = settle_due(runtime, requesters(), budget_seconds=0.1)
    assert summary.asked == 1
    assert summary.outcomes["not_asked_yet"] == 2
    with runtime.sessions.begin() as session:
        waiting = session.scalars(select(PaymentRequest.query_at)).all()
    assert all(at > utcnow() for at in waiting)  # claimed: asked on a later sweep
