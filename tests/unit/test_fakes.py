"""The fake providers speak their APIs and keep their controls, before any client uses them.

Every call here is a plain ``requests`` call to a fake on loopback; callbacks go to a
tiny receiver server of this module's own.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from core.providers import ParseContext
from ingest.providers.mpesa import STK, MpesaAdapter
from matcher.notifications import FailedAttempt, PaymentNotification
from tests.fakes import (
    HELD,
    NEVER,
    PAY,
    QUERY,
    TOKEN,
    TWICE,
    AirtelResult,
    Delivery,
    MtnResult,
    StkResult,
)
from tests.fakes import airtel as airtel_api
from tests.fakes import daraja as daraja_api
from tests.fakes import mtn as mtn_api


@pytest.fixture
def daraja() -> Iterator[daraja_api.DarajaFake]:
    with daraja_api.DarajaFake() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def airtel() -> Iterator[airtel_api.AirtelFake]:
    with airtel_api.AirtelFake() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def mtn() -> Iterator[mtn_api.MtnFake]:
    with mtn_api.MtnFake() as fake:
        yield fake
    assert fake.errors == []


# --- a receiver for callbacks -------------------------------------------------------------


@dataclass
class Receiver:
    """Records what is posted to it and answers ``status``."""

    status: int = 200
    got: list[tuple[str, str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.got.append((self.command, self.path, json.loads(body, parse_float=Decimal)))
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/callbacks"
    yield receiver
    server.shutdown()
    server.server_close()


# --- Daraja -------------------------------------------------------------------------------

STAMP = "20251108091522"


def daraja_token(fake: daraja_api.DarajaFake) -> str:
    answer = requests.get(
        f"{fake.base_url}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(daraja_api.CONSUMER_KEY, daraja_api.CONSUMER_SECRET),
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def push(
    fake: daraja_api.DarajaFake, token: str, callback: str, timeout: float = 5, **changes: Any
) -> requests.Response:
    body = {
        "BusinessShortCode": 174379,
        "Password": daraja_api.password(daraja_api.SHORTCODE, daraja_api.PASSKEY, STAMP),
        "Timestamp": STAMP,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 20,
        "PartyA": 254712345678,
        "PartyB": 174379,
        "PhoneNumber": 254712345678,
        "CallBackURL": callback,
        "AccountReference": "ACC1042",
        "TransactionDesc": "Top up",
        **changes,
    }
    return requests.post(
        f"{fake.base_url}/mpesa/stkpush/v1/processrequest",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def stk_query(fake: daraja_api.DarajaFake, token: str, checkout_id: str) -> requests.Response:
    body = {
        "BusinessShortCode": "174379",
        "Password": daraja_api.password(daraja_api.SHORTCODE, daraja_api.PASSKEY, STAMP),
        "Timestamp": STAMP,
        "CheckoutRequestID": checkout_id,
    }
    return requests.post(
        f"{fake.base_url}/mpesa/stkpushquery/v1/query",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_daraja_token_is_a_string_lifetime_for_the_right_keys_only(
    daraja: daraja_api.DarajaFake,
) -> None:
    url = f"{daraja.base_url}/oauth/v1/generate"
    good = requests.get(
        url,
        params={"grant_type": "client_credentials"},
        auth=("daraja-consumer-key", "daraja-consumer-secret"),
        timeout=5,
    )
    wrong = requests.get(
        url,
        params={"grant_type": "client_credentials"},
        auth=("daraja-consumer-key", "nope"),
        timeout=5,
    )
    assert good.json()["expires_in"] == "3599"
    assert wrong.status_code == 400
    assert wrong.json()["errorCode"] == "400.008.01"
    assert daraja.calls(TOKEN)[1].headers["Authorization"].startswith("Basic ")


def test_daraja_push_is_answered_then_its_callback_parses_in_momo(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    daraja.will(StkResult(receipt="TKV5C2N8BD"))
    answer = push(daraja, daraja_token(daraja), receiver.url)

    assert answer.status_code == 200
    accepted = answer.json()
    assert accepted["ResponseCode"] == "0"
    assert accepted["CheckoutRequestID"].startswith("ws_CO_")
    [delivery] = daraja.wait_for_deliveries(1)
    assert (delivery.method, delivery.url, delivery.status) == ("POST", receiver.url, 200)
    items = delivery.json["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    assert items[0] == {"Name": "Amount", "Value": Decimal("20.00")}
    assert b'"Value":20.00' in delivery.body  # a JSON number, as Daraja writes it
    notification = MpesaAdapter().parse(STK, delivery.body, ParseContext())
    assert isinstance(notification, PaymentNotification)
    assert (notification.code, notification.amount) == ("TKV5C2N8BD", 2000)
    assert notification.msisdn is not None


def test_daraja_query_is_pending_until_decided_then_tells_the_outcome(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    daraja.default_outcome = None
    token = daraja_token(daraja)
    checkout_id = push(daraja, token, receiver.url).json()["CheckoutRequestID"]

    pending = stk_query(daraja, token, checkout_id)
    daraja.decide(checkout_id, StkResult(code=daraja_api.CANCELLED))
    done = stk_query(daraja, token, checkout_id)

    assert pending.status_code == 500
    assert pending.json()["errorMessage"] == "The transaction is being processed"
    assert (done.json()["ResultCode"], done.json()["ResultDesc"]) == (
        "1032",
        "Request cancelled by user",
    )
    [delivery] = daraja.wait_for_deliveries(1)
    failed = MpesaAdapter().parse(STK, delivery.body, ParseContext())
    assert isinstance(failed, FailedAttempt)
    assert "CallbackMetadata" not in delivery.json["Body"]["stkCallback"]


def test_daraja_refuses_an_expired_token_a_bad_password_and_a_bad_phone(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    token = daraja_token(daraja)
    wrong_password = push(daraja, token, receiver.url, Password="bm9wZQ==")
    bad_phone = push(daraja, token, receiver.url, PhoneNumber="0712345678")
    daraja.expire_tokens()
    expired = push(daraja, token, receiver.url)

    assert (wrong_password.status_code, wrong_password.json()["errorMessage"]) == (
        500,
        "Wrong credentials",
    )
    assert bad_phone.json()["errorMessage"] == "Bad Request - Invalid PhoneNumber"
    assert (expired.status_code, expired.json()["errorCode"]) == (404, "404.001.03")
    assert daraja.transactions == {}


def test_a_token_lifetime_of_zero_is_dead_on_arrival(daraja: daraja_api.DarajaFake) -> None:
    daraja.token_lifetime = 0
    answer = stk_query(daraja, daraja_token(daraja), "ws_CO_1")
    assert answer.json()["errorMessage"] == "Invalid Access Token"


def test_a_new_token_can_revoke_the_old_one(daraja: daraja_api.DarajaFake) -> None:
    daraja.revoke_previous_tokens = True
    old = daraja_token(daraja)
    new = daraja_token(daraja)
    assert stk_query(daraja, old, "ws_CO_1").json()["errorCode"] == "404.001.03"
    assert stk_query(daraja, new, "ws_CO_1").json()["errorMessage"] == (
        "Bad Request - Invalid CheckoutRequestID"
    )


def test_fail_next_answers_5xx_then_the_endpoint_works_again(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    daraja.fail_next(PAY, times=2, status=503)
    token = daraja_token(daraja)

    answers = [push(daraja, token, receiver.url) for _ in range(3)]

    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json()["errorCode"] == "500.003.1001"
    assert len(daraja.transactions) == 1
    assert len(daraja.calls(PAY)) == 3


def test_a_5xx_after_the_work_leaves_a_push_that_still_calls_back(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    daraja.fail_next(PAY, taken=True)
    answer = push(daraja, daraja_token(daraja), receiver.url)

    [delivery] = daraja.wait_for_deliveries(1)
    assert answer.status_code == 500
    assert delivery.json["Body"]["stkCallback"]["CheckoutRequestID"] in daraja.transactions


def test_a_hung_push_was_still_taken_and_its_outcome_shows_in_the_query(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    daraja.hang_next(PAY, seconds=30)
    daraja.will(StkResult(callback=NEVER))
    token = daraja_token(daraja)

    with pytest.raises(requests.Timeout):
        push(daraja, token, receiver.url, timeout=0.3)

    [checkout_id] = daraja.transactions
    assert stk_query(daraja, token, checkout_id).json()["ResultCode"] == "0"
    assert len(daraja.calls(PAY)) == 1


def test_malformed_and_refused_answers(daraja: daraja_api.DarajaFake, receiver: Receiver) -> None:
    token = daraja_token(daraja)
    daraja.malformed_next(PAY, "not_json")
    daraja.malformed_next(PAY, "missing_fields")
    daraja.refuse_next(PAY, "subscriber_locked")

    html, partial, locked = (push(daraja, token, receiver.url) for _ in range(3))

    assert html.status_code == 200 and html.text.startswith("<html>")
    assert "CheckoutRequestID" not in partial.json()
    assert locked.json()["errorCode"] == "500.001.1001"
    assert len(daraja.transactions) == 2  # the malformed answers came after the work


def test_callback_timing_twice_never_and_held(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    daraja.will(
        StkResult(callback=TWICE),
        StkResult(callback=NEVER),
        StkResult(callback=HELD, amount=Decimal("19")),
        StkResult(delay=0.05),
    )
    token = daraja_token(daraja)
    ids = [push(daraja, token, receiver.url).json()["CheckoutRequestID"] for _ in range(4)]

    sent = daraja.wait_for_deliveries(3)
    held = daraja.post_callback(ids[2])

    def posted(delivery: Delivery) -> str:
        return str(delivery.json["Body"]["stkCallback"]["CheckoutRequestID"])

    assert sorted(posted(d) for d in sent) == sorted([ids[0], ids[0], ids[3]])
    assert held.json["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] == 19
    assert len(daraja.deliveries) == 4


def test_momos_answer_to_a_callback_is_recorded(
    daraja: daraja_api.DarajaFake, receiver: Receiver
) -> None:
    receiver.status = 503
    push(daraja, daraja_token(daraja), receiver.url)
    [delivery] = daraja.wait_for_deliveries(1)
    assert delivery.status == 503


# --- Airtel -------------------------------------------------------------------------------

MARKET = {"X-Country": "KE", "X-Currency": "KES"}


def airtel_token(fake: airtel_api.AirtelFake, secret: str = airtel_api.CLIENT_SECRET) -> Any:
    return requests.post(
        f"{fake.base_url}/auth/oauth2/token",
        json={
            "client_id": airtel_api.CLIENT_ID,
            "client_secret": secret,
            "grant_type": "client_credentials",
        },
        timeout=5,
    )


def airtel_pay(
    fake: airtel_api.AirtelFake, token: str, txn_id: str, msisdn: str = "712345678"
) -> Any:
    return requests.post(
        f"{fake.base_url}/merchant/v1/payments/",
        json={
            "reference": "ACC1042",
            "subscriber": {"country": "KE", "currency": "KES", "msisdn": msisdn},
            "transaction": {"amount": 1000, "country": "KE", "currency": "KES", "id": txn_id},
        },
        headers={"Authorization": f"Bearer {token}", **MARKET},
        timeout=5,
    )


def airtel_enquiry(fake: airtel_api.AirtelFake, token: str, txn_id: str) -> Any:
    return requests.get(
        f"{fake.base_url}/standard/v1/payments/{txn_id}",
        headers={"Authorization": f"Bearer {token}", **MARKET},
        timeout=5,
    )


def test_airtel_token_and_bad_credentials(airtel: airtel_api.AirtelFake) -> None:
    good, bad = airtel_token(airtel), airtel_token(airtel, secret="nope")
    assert good.json()["token_type"] == "bearer"
    assert good.json()["expires_in"] == "180"
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")


def test_airtel_push_enquiry_and_a_signed_callback(
    airtel: airtel_api.AirtelFake, receiver: Receiver
) -> None:
    airtel.callback_url = receiver.url
    airtel.default_outcome = None
    token = airtel_token(airtel).json()["access_token"]

    accepted = airtel_pay(airtel, token, "A1001").json()
    in_progress = airtel_enquiry(airtel, token, "A1001").json()
    airtel.decide("A1001", AirtelResult(amount=Decimal("900")))
    done = airtel_enquiry(airtel, token, "A1001").json()

    assert accepted["data"]["transaction"] == {"id": "A1001", "status": "SUCCESS"}
    assert accepted["status"]["success"] is True
    assert in_progress["data"]["transaction"]["status"] == "TIP"
    assert done["data"]["transaction"]["status"] == "TS"
    [delivery] = airtel.wait_for_deliveries(1)
    body = delivery.json
    assert body["transaction"]["status_code"] == "TS"
    assert "KES 900 " in body["transaction"]["message"]
    assert body["transaction"]["airtel_money_id"] == done["data"]["transaction"]["airtel_money_id"]
    assert body["hash"] == airtel_api.sign(body["transaction"], airtel_api.CALLBACK_KEY)
    signed = delivery.body[: delivery.body.index(b',"hash"')] + b"}"
    assert (
        signed == json.dumps({"transaction": body["transaction"]}, separators=(",", ":")).encode()
    )


def test_airtel_tampered_hash_differs_and_hash_can_be_off(
    airtel: airtel_api.AirtelFake, receiver: Receiver
) -> None:
    airtel.callback_url = receiver.url
    airtel.will(
        AirtelResult(status="TF", hash=airtel_api.TAMPERED), AirtelResult(hash=airtel_api.NO_HASH)
    )
    token = airtel_token(airtel).json()["access_token"]
    airtel_pay(airtel, token, "A1")
    airtel_pay(airtel, token, "A2")

    by_id = {d.json["transaction"]["id"]: d.json for d in airtel.wait_for_deliveries(2)}

    tampered = by_id["A1"]
    assert tampered["hash"] != airtel_api.sign(tampered["transaction"], airtel_api.CALLBACK_KEY)
    assert "hash" not in by_id["A2"]


def test_airtel_refuses_a_bad_msisdn_a_stale_token_and_a_duplicate(
    airtel: airtel_api.AirtelFake,
) -> None:
    token = airtel_token(airtel).json()["access_token"]
    with_country_code = airtel_pay(airtel, token, "A1", msisdn="254712345678")
    first, again = airtel_pay(airtel, token, "A2"), airtel_pay(airtel, token, "A2")
    airtel.expire_tokens()
    stale = airtel_enquiry(airtel, token, "A2")

    assert with_country_code.status_code == 400
    assert with_country_code.json()["status"]["success"] is False
    assert (first.status_code, again.status_code) == (200, 400)
    assert (stale.status_code, stale.json()["error"]) == (401, "invalid_token")


# --- MTN ----------------------------------------------------------------------------------


def mtn_token(fake: mtn_api.MtnFake, key: str = mtn_api.SUBSCRIPTION_KEY) -> Any:
    return requests.post(
        f"{fake.base_url}/collection/token/",
        auth=(mtn_api.API_USER, mtn_api.API_KEY),
        headers={"Ocp-Apim-Subscription-Key": key},
        timeout=5,
    )


def mtn_headers(token: str, **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Ocp-Apim-Subscription-Key": mtn_api.SUBSCRIPTION_KEY,
        "X-Target-Environment": "sandbox",
        **extra,
    }


def request_to_pay(fake: mtn_api.MtnFake, token: str, reference: str, callback: str | None) -> Any:
    extra = {"X-Reference-Id": reference} | ({"X-Callback-Url": callback} if callback else {})
    return requests.post(
        f"{fake.base_url}/collection/v1_0/requesttopay",
        json={
            "amount": "50",
            "currency": "EUR",
            "externalId": "ACC1042",
            "payer": {"partyIdType": "MSISDN", "partyId": "46733123453"},
            "payerMessage": "Top up",
            "payeeNote": "ACC1042",
        },
        headers=mtn_headers(token, **extra),
        timeout=5,
    )


def mtn_status(fake: mtn_api.MtnFake, token: str, reference: str) -> Any:
    return requests.get(
        f"{fake.base_url}/collection/v1_0/requesttopay/{reference}",
        headers=mtn_headers(token),
        timeout=5,
    )


def test_mtn_token_needs_the_subscription_key(mtn: mtn_api.MtnFake) -> None:
    good, bad = mtn_token(mtn), mtn_token(mtn, key="nope")
    assert good.json()["expires_in"] == 3600
    assert good.json()["token_type"] == "access_token"
    assert (bad.status_code, bad.json()["statusCode"]) == (401, 401)
    assert base64.b64decode(mtn.calls(TOKEN)[0].headers["Authorization"][6:]).decode() == (
        f"{mtn_api.API_USER}:{mtn_api.API_KEY}"
    )


def test_mtn_request_to_pay_status_and_a_disagreeing_put_callback(
    mtn: mtn_api.MtnFake, receiver: Receiver
) -> None:
    mtn.will(MtnResult(status="SUCCESSFUL", callback_status="FAILED", reason="APPROVAL_REJECTED"))
    token = mtn_token(mtn).json()["access_token"]
    reference = str(uuid.uuid4())

    accepted = request_to_pay(mtn, token, reference, receiver.url)
    again = request_to_pay(mtn, token, reference, receiver.url)
    status = mtn_status(mtn, token, reference).json()

    assert (accepted.status_code, accepted.content) == (202, b"")
    assert (again.status_code, again.json()["code"]) == (409, "RESOURCE_ALREADY_EXIST")
    assert status["status"] == "SUCCESSFUL" and status["financialTransactionId"]
    [delivery] = mtn.wait_for_deliveries(1)
    assert delivery.method == "PUT"
    assert delivery.json["status"] == "FAILED"
    assert delivery.json["reason"] == "APPROVAL_REJECTED"
    assert receiver.got[0][0] == "PUT"


def test_mtn_failed_with_a_reason_object_and_no_callback_url(mtn: mtn_api.MtnFake) -> None:
    reason = {"code": "PAYER_NOT_FOUND", "message": "Payee does not exist"}
    mtn.will(MtnResult(status="FAILED", reason=reason))
    token = mtn_token(mtn).json()["access_token"]
    reference = str(uuid.uuid4())

    request_to_pay(mtn, token, reference, None)
    status = mtn_status(mtn, token, reference).json()
    unknown = mtn_status(mtn, token, str(uuid.uuid4()))

    assert status["reason"] == reason
    assert "financialTransactionId" not in status
    assert (unknown.status_code, unknown.json()["code"]) == (404, "RESOURCE_NOT_FOUND")
    assert mtn.deliveries == []


def test_every_request_is_recorded_with_its_parsed_body(
    mtn: mtn_api.MtnFake, receiver: Receiver
) -> None:
    token = mtn_token(mtn).json()["access_token"]
    reference = str(uuid.uuid4())
    request_to_pay(mtn, token, reference, receiver.url)
    mtn_status(mtn, token, reference)

    [pay] = mtn.calls(PAY)
    assert pay.headers["X-Reference-Id"] == reference
    assert pay.json["amount"] == "50"
    assert [r.endpoint for r in mtn.requests] == [TOKEN, PAY, QUERY]
    assert isinstance(mtn.transactions[reference].request.body, bytes)
