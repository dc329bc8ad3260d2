"""POST /api/v1/payment-requests through Airtel Money, against a fake Airtel on loopback:
the USSD push, its hashed callback, a refusal, a lost reply and a callback that never
comes (settled by Airtel's transaction enquiry), and phones read in Airtel's country."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from core.config import Settings
from core.runtime import Runtime
from ingest.asking import settle_due
from ingest.providers import requesters
from ingest.providers.airtel import AirtelSettings
from ingest.providers.mpesa import MpesaSettings
from ingest.providers.outbound import Timeouts
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, assert_problem
from tests.fakes import HELD, PAY, QUERY, AirtelFake, AirtelResult
from tests.fakes.airtel import CALLBACK_KEY, CLIENT_ID, CLIENT_SECRET, sign
from tests.unit.test_payment_requests import credits
from tests.unit.test_payment_requests_api import make_due, shown
from tests.unit.test_pipeline import balance

PUBLIC_URL = "https://pay.example.com"
AIRTEL_TOKEN = "airtel-path-token-" + "0123456789abcdef" * 2
CALLBACK_PATH = f"/webhooks/airtel/{AIRTEL_TOKEN}/callback"


@pytest.fixture
def country() -> str:
    return "KE"


@pytest.fixture
def currency(country: str) -> str:
    return {"KE": "KES", "UG": "UGX"}[country]


@pytest.fixture
def airtel(country: str, currency: str) -> Iterator[AirtelFake]:
    with AirtelFake(country=country, currency=currency) as fake:
        fake.default_outcome = AirtelResult(callback=HELD)  # the test delivers callbacks
        yield fake
    assert fake.errors == []


@pytest.fixture
def settings(tmp_path: Path, airtel: AirtelFake, country: str, currency: str) -> Settings:
    block = AirtelSettings(
        path_token=AIRTEL_TOKEN,
        callback_key=CALLBACK_KEY,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_base=airtel.base_url,
        country=country,
        currency=currency,
        timeouts=Timeouts(connect=1.0, read=0.5),
    )
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'momo.db'}",
        providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN), "airtel": block},
        instance_path=tmp_path / "instance",
        public_url=PUBLIC_URL,
        currency=currency,
    )


@pytest.fixture
def customer(runtime: Runtime) -> str:
    add_customer(runtime, "ACC-7", ["0733123456", "0712345678"])  # Airtel, then Safaricom
    return "ACC-7"


def ask(client: FlaskClient, headers: dict[str, str], **body: Any) -> Any:
    body = {"account_number": "ACC-7", "amount": "1500", **body}
    return client.post("/api/v1/payment-requests", json=body, headers=headers)


def post(client: FlaskClient, body: dict[str, Any]) -> None:
    raw = json.dumps(body, separators=(",", ":")).encode()  # as the fake (and Airtel) send it
    answer = client.post(CALLBACK_PATH, data=raw, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)


def deliver(client: FlaskClient, airtel: AirtelFake, reference: str) -> None:
    """Post the fake's callback for ``reference`` to momo's Airtel URL, as Airtel would."""
    post(client, airtel.callback_body(airtel.transactions[reference]))


def test_an_airtel_phone_is_prompted_by_airtel_and_its_callback_credits_the_request(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    answer = ask(client, operator_headers)  # no "provider": the phone's network chooses
    assert answer.status_code == 201, answer.get_data(as_text=True)
    item = answer.get_json()
    assert (item["provider"], item["phone"], item["status"]) == (
        "airtel",
        "+254733123456",
        "pending",
    )
    assert item["provider_reference"].startswith(f"momo-{item['id']}-")
    (push,) = airtel.calls(PAY)
    assert push.json["transaction"]["id"] == item["provider_reference"]
    assert push.json["subscriber"]["msisdn"] == "733123456"
    assert push.json["transaction"]["amount"] == 1500

    deliver(client, airtel, item["provider_reference"])
    drain_inbox(runtime)
    paid = shown(client, operator_headers, item["id"])
    assert paid["status"] == "paid"
    assert paid["payment_id"] is not None
    assert balance(runtime, customer) == 150000

    deliver(client, airtel, item["provider_reference"])  # Airtel sends it again
    drain_inbox(runtime)
    assert credits(runtime) == 1


def test_a_safaricom_phone_still_goes_to_mpesa(
    client: FlaskClient, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    body = assert_problem(
        ask(client, operator_headers, phone="0712345678"), 400, "provider_not_configured"
    )
    assert "mpesa" in body["detail"] and "MOMO_MPESA_CONSUMER_KEY" in body["detail"]
    assert airtel.calls(PAY) == []


def test_a_refusal_is_422_with_airtels_words_and_the_request_is_kept_failed(
    client: FlaskClient, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    airtel.refuse_next(PAY, "limit_exceeded")
    body = assert_problem(ask(client, operator_headers), 422, "provider_refused")
    assert "Exceeds withdrawal amount limit" in body["detail"]
    kept = body["payment_request"]
    assert (kept["status"], kept["result_code"]) == ("failed", "DP00800001003")


def test_a_lost_reply_is_asked_about_by_our_id_and_never_pushed_again(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    airtel.hang_next(PAY, seconds=2)
    answer = ask(client, operator_headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    item = answer.get_json()
    assert item["status"] == "pending"
    reference = item["provider_reference"]  # ours: known before Airtel was asked
    assert list(airtel.transactions) == [reference]  # Airtel took it all the same

    make_due(runtime)
    summary = settle_due(runtime, requesters())
    assert summary.asked == 1
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert len(airtel.calls(PAY)) == 1
    assert balance(runtime, customer) == 150000


def test_a_callback_that_never_comes_is_settled_by_the_enquiry_and_a_late_one_changes_nothing(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    airtel.default_outcome = None  # the payer has not answered the prompt yet
    item = ask(client, operator_headers).get_json()
    reference = item["provider_reference"]
    make_due(runtime)
    assert settle_due(runtime, requesters()).outcomes == {"pending": 1}

    airtel.decide(reference, AirtelResult(callback=HELD))  # paid; the callback is lost
    make_due(runtime)
    settle_due(runtime, requesters())
    assert len(airtel.calls(QUERY)) == 2
    assert shown(client, operator_headers, item["id"])["status"] == "paid"
    assert balance(runtime, customer) == 150000

    deliver(client, airtel, reference)  # it comes after all
    drain_inbox(runtime)
    assert credits(runtime) == 1
    make_due(runtime)
    assert settle_due(runtime, requesters()).asked == 0  # settled: never asked again


def test_a_late_failure_never_undoes_a_success(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    item = ask(client, operator_headers).get_json()
    reference = item["provider_reference"]
    deliver(client, airtel, reference)
    drain_inbox(runtime)
    paid_id = shown(client, operator_headers, item["id"])["payment_id"]
    assert paid_id is not None
    paid = airtel.callback_body(airtel.transactions[reference])["transaction"]
    failed = {**paid, "status_code": "TF", "message": "Transaction failed"}
    post(client, {"transaction": failed, "hash": sign(failed, CALLBACK_KEY)})
    drain_inbox(runtime)
    after = shown(client, operator_headers, item["id"])
    assert (after["status"], after["payment_id"]) == ("paid", paid_id)
    assert balance(runtime, customer) == 150000


@pytest.mark.parametrize(
    ("status", "state"), [("TF", "failed"), ("TE", "failed"), ("TIP", "pending"), ("TA", "pending")]
)
def test_a_callback_that_is_not_a_success_moves_no_money(
    client: FlaskClient,
    runtime: Runtime,
    operator_headers: dict,
    airtel: AirtelFake,
    customer: str,
    status: str,
    state: str,
) -> None:
    airtel.default_outcome = AirtelResult(status=status, callback=HELD)
    item = ask(client, operator_headers).get_json()
    deliver(client, airtel, item["provider_reference"])
    drain_inbox(runtime)
    assert shown(client, operator_headers, item["id"])["status"] == state
    assert credits(runtime) == 0


def test_a_callback_with_a_bad_hash_is_refused_and_changes_nothing(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    item = ask(client, operator_headers).get_json()
    body = airtel.callback_body(airtel.transactions[item["provider_reference"]])
    body["hash"] = sign(body["transaction"], "another-key")
    raw = json.dumps(body, separators=(",", ":")).encode()
    answer = client.post(CALLBACK_PATH, data=raw, content_type="application/json")
    assert answer.status_code == 401
    drain_inbox(runtime)
    assert shown(client, operator_headers, item["id"])["status"] == "pending"
    assert credits(runtime) == 0


def test_cents_are_asked_for_exactly(
    client: FlaskClient, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    assert ask(client, operator_headers, amount="1500.50").status_code == 201
    (push,) = airtel.calls(PAY)
    assert b'"amount":1500.50' in push.body


class TestPhonesReadInAirtelsCountry:
    @pytest.mark.parametrize(
        ("country", "e164"), [("KE", "+254701234567"), ("UG", "+256701234567")]
    )
    def test_the_same_local_digits_are_a_person_of_airtels_country(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: dict,
        airtel: AirtelFake,
        country: str,
        e164: str,
    ) -> None:
        add_customer(runtime, "ACC-7", [])
        answer = ask(client, operator_headers, phone="0701234567", provider="airtel")
        assert answer.status_code == 201, answer.get_data(as_text=True)
        assert answer.get_json()["phone"] == e164
        (push,) = airtel.calls(PAY)
        assert push.headers["X-Country"] == country
        assert push.json["subscriber"]["msisdn"] == "701234567"

    @pytest.mark.parametrize("country", ["UG"])
    def test_a_number_written_with_its_country_code_is_never_read_as_airtels(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake
    ) -> None:
        add_customer(runtime, "ACC-7", [])
        body = assert_problem(
            ask(client, operator_headers, phone="+254 733 123456", provider="airtel"),
            422,
            "provider_refused",
        )
        assert body["payment_request"]["phone"] == "+254733123456"
        assert "UG" in body["detail"]
        assert airtel.calls(PAY) == []

    @pytest.mark.parametrize("country", ["UG"])
    def test_a_ugandan_airtel_number_is_chosen_by_its_network(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake
    ) -> None:
        add_customer(runtime, "ACC-7", ["+256 701 234567"])
        item = ask(client, operator_headers).get_json()
        assert (item["provider"], item["phone"], item["currency"]) == (
            "airtel",
            "+256701234567",
            "UGX",
        )
        assert airtel.calls(PAY)[0].json["transaction"]["currency"] == "UGX"


def test_pending_requests_wait_when_airtel_is_no_longer_set_up(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, airtel: AirtelFake, customer: str
) -> None:
    airtel.default_outcome = None
    item = ask(client, operator_headers).get_json()
    block = runtime.settings.providers["airtel"]
    runtime.settings = runtime.settings.with_provider(
        "airtel", AirtelSettings(path_token=block.path_token, currency=block.currency)
    )
    make_due(runtime)
    summary = settle_due(runtime, requesters())  # the sweep goes on; nothing is sent
    assert (summary.asked, summary.outcomes) == (1, {"pending": 1})
    assert shown(client, operator_headers, item["id"])["status"] == "pending"
    assert airtel.calls(QUERY) == []
