"""Lookups and reversals through the operator API, against a fake Daraja on loopback;
the test posts each result to momo's result URL itself, as Daraja would, and works the
inbox. What the money does: a found payment credited once, a reversal debited once,
however often and by however many records it is reported."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from core.config import Settings
from core.runtime import Runtime
from ingest import lookups_reversals
from ingest.providers import reconcilers
from ingest.providers.daraja import DarajaApp
from ingest.providers.mpesa import MpesaSettings
from ingest.providers.mpesa_initiator import Initiator
from ingest.providers.outbound import Accepted, Timeouts
from matcher.check import check_invariants
from matcher.lookups import get_lookup
from matcher.models import LedgerEntry, Payment
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, assert_problem, make_token, webhook_url
from tests.fakes import REVERSAL, STATUS, DarajaFake
from tests.fakes.base import to_json
from tests.fakes.daraja import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    INITIATOR_NAME,
    SECURITY_CREDENTIAL,
    SHORTCODE,
)
from tests.unit.test_payment_requests import credits
from tests.unit.test_pipeline import balance

PUBLIC_URL = "https://pay.example.com"


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        fake.result_delay = 3600  # never posted by the fake: the test delivers results
        yield fake
    assert fake.errors == []


def mpesa(daraja: DarajaFake, *, initiator: bool = True) -> MpesaSettings:
    app = DarajaApp(
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        shortcode=SHORTCODE,
        api_base=daraja.base_url,
        timeouts=Timeouts(connect=1.0, read=0.5),
    )
    return MpesaSettings(
        path_token=PATH_TOKEN,
        app=app,
        initiator=Initiator(INITIATOR_NAME, SECURITY_CREDENTIAL) if initiator else None,
    )


@pytest.fixture
def initiator_set() -> bool:
    return True


@pytest.fixture
def settings(tmp_path: Path, daraja: DarajaFake, initiator_set: bool) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'momo.db'}",
        providers={"mpesa": mpesa(daraja, initiator=initiator_set)},
        instance_path=tmp_path / "instance",
        public_url=PUBLIC_URL,
    )


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(runtime, 'admin')}"}


def deliver(client: FlaskClient, daraja: DarajaFake, kind: str, conversation_id: str) -> None:
    """Post the fake's result for ``conversation_id`` to momo, as Daraja would."""
    body = to_json(daraja.results[conversation_id])
    answer = client.post(webhook_url(f"{kind}/result"), data=body, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == {"ResultCode": 0, "ResultDesc": "Accepted"}


def confirmed(client: FlaskClient, runtime: Runtime, daraja: DarajaFake, receipt: str) -> int:
    """Post the C2B confirmation of a fake payment and work it: the stored payment's id."""
    body = to_json(daraja.c2b[receipt].confirmation(SHORTCODE))
    answer = client.post(
        webhook_url("c2b/confirmation"), data=body, content_type="application/json"
    )
    assert answer.status_code == 200
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        ident = session.scalar(select(Payment.id).where(Payment.code == receipt))
    assert ident is not None
    return int(ident)


def reverse(client: FlaskClient, headers: dict[str, str], ident: int, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/payments/{ident}/reversal", json={"note": "refund"}, headers={**headers, **extra}
    )


def no_violations(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        assert check_invariants(session, stuck_after=timedelta(hours=1)) == []


# --- lookups ------------------------------------------------------------------------------


def test_a_found_payment_is_credited_once_though_its_result_comes_twice(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-1", ["0712345001"])
    paid = daraja.pay_bill("250", "254712345001", "ACC-1", deliver=False)

    asked = client.post(
        "/api/v1/payments/lookup", json={"code": paid.receipt}, headers=operator_headers
    )

    assert asked.status_code == 202, asked.get_data(as_text=True)
    item = asked.get_json()
    assert (item["status"], item["code"], item["provider"]) == ("sent", paid.receipt, "mpesa")
    (call,) = daraja.calls(STATUS)
    assert call.json["ResultURL"] == f"{PUBLIC_URL}/webhooks/daraja/{PATH_TOKEN}/status/result"
    assert call.json["QueueTimeOutURL"].endswith("/status/timeout")
    assert (call.json["Initiator"], call.json["PartyA"]) == (INITIATOR_NAME, SHORTCODE)
    deliver(client, daraja, "status", item["conversation_id"])
    deliver(client, daraja, "status", item["conversation_id"])
    drain_inbox(runtime)

    shown = client.get(f"/api/v1/lookups/{item['id']}", headers=operator_headers).get_json()
    assert (shown["status"], shown["result_code"]) == ("found", "0")
    assert balance(runtime, "ACC-1") == 25000
    assert credits(runtime) == 1
    no_violations(runtime)


def test_a_payment_found_by_a_lookup_and_by_its_callback_is_credited_once(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-2", ["0712345002"])
    paid = daraja.pay_bill("100", "254712345002", "ACC-2", deliver=False)
    asked = client.post(
        "/api/v1/payments/lookup", json={"code": paid.receipt}, headers=operator_headers
    ).get_json()
    deliver(client, daraja, "status", asked["conversation_id"])
    drain_inbox(runtime)

    confirmed(client, runtime, daraja, paid.receipt)  # the late callback

    assert balance(runtime, "ACC-2") == 10000
    assert credits(runtime) == 1


@pytest.mark.parametrize("initiator_set", [False])
def test_lookups_and_reversals_need_the_initiator_and_say_which_variables(
    client: FlaskClient, runtime: Runtime, admin_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-0", ["0712345000"])
    paid = daraja.pay_bill("60", "254712345000", "ACC-0", deliver=False)
    ident = confirmed(client, runtime, daraja, paid.receipt)

    looked = assert_problem(
        client.post("/api/v1/payments/lookup", json={"code": "QK81AB12CD"}, headers=admin_headers),
        409,
        "provider_not_configured",
    )
    reversed_ = assert_problem(
        reverse(client, admin_headers, ident), 409, "provider_not_configured"
    )

    for body in (looked, reversed_):
        assert "MOMO_MPESA_INITIATOR_NAME" in body["detail"]
        assert "MOMO_MPESA_SECURITY_CREDENTIAL" in body["detail"]
    assert daraja.calls(STATUS) == daraja.calls(REVERSAL) == []
    shown = client.get(f"/api/v1/payments/{ident}/reversal", headers=admin_headers).get_json()
    assert shown["reversal"] is None  # the refused request was not kept


def test_daraja_unreachable_is_502_and_the_lookup_kept_failed(
    client: FlaskClient, operator_headers: dict, daraja: DarajaFake
) -> None:
    daraja.fail_next(STATUS, times=10, status=503)

    body = assert_problem(
        client.post(
            "/api/v1/payments/lookup", json={"code": "QK81AB12CD"}, headers=operator_headers
        ),
        502,
        "provider_unavailable",
    )

    assert body["lookup"]["status"] == "failed"
    assert body["lookup"]["result_code"] == "provider_unavailable"


# --- reversals ----------------------------------------------------------------------------


def test_a_reversal_is_asked_once_per_key_and_debits_once_however_often_reported(
    client: FlaskClient, runtime: Runtime, admin_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-3", ["0712345003"])
    paid = daraja.pay_bill("300", "254712345003", "ACC-3", deliver=False)
    ident = confirmed(client, runtime, daraja, paid.receipt)

    first = reverse(client, admin_headers, ident, **{"Idempotency-Key": "rv-1"})
    again = reverse(client, admin_headers, ident, **{"Idempotency-Key": "rv-1"})

    assert first.status_code == again.status_code == 202, first.get_data(as_text=True)
    assert again.get_json() == first.get_json()
    assert len(daraja.calls(REVERSAL)) == 1
    state = first.get_json()
    assert state["reversal"]["status"] == "sent"
    assert state["reversal"]["note"] == "refund"
    assert state["payment"]["reversed_at"] is None
    (call,) = daraja.calls(REVERSAL)
    assert (call.json["TransactionID"], call.json["Amount"]) == (paid.receipt, "300")
    assert call.json["Remarks"] == "refund"
    conversation = state["reversal"]["conversation_id"]
    deliver(client, daraja, "reversal", conversation)
    deliver(client, daraja, "reversal", conversation)
    drain_inbox(runtime)

    shown = client.get(f"/api/v1/payments/{ident}/reversal", headers=admin_headers).get_json()
    assert shown["reversal"]["status"] == "reversed"
    assert shown["payment"]["reversal_receipt"] == daraja.c2b[paid.receipt].reversed_by
    assert shown["payment"]["status"] == "unassociated"
    assert shown["payment"]["reason"] == "reversed"
    assert balance(runtime, "ACC-3") == 0
    with runtime.sessions.begin() as session:
        kinds = session.scalars(
            select(LedgerEntry.kind).where(LedgerEntry.payment_id == ident)
        ).all()
    assert sorted(kinds) == ["payment_credit", "reversal"]
    assert_problem(reverse(client, admin_headers, ident), 409, "already_reversed")
    no_violations(runtime)


def test_a_reversal_debits_a_spent_credit_into_a_negative_balance(
    client: FlaskClient, runtime: Runtime, admin_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-4", ["0712345004"])
    paid = daraja.pay_bill("80", "254712345004", "ACC-4", deliver=False)
    ident = confirmed(client, runtime, daraja, paid.receipt)
    other = daraja.pay_bill("50", "254712345004", "ACC-4", deliver=False)
    confirmed(client, runtime, daraja, other.receipt)
    made = client.post(
        "/api/v1/plans",
        json={"code": "P100", "name": "Plan", "price": "100", "validity_minutes": 60},
        headers=admin_headers,
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    bought = client.post(
        "/api/v1/customers/ACC-4/purchases", json={"plan": "P100"}, headers=admin_headers
    )
    assert bought.status_code == 201, bought.get_data(as_text=True)

    state = reverse(client, admin_headers, ident).get_json()
    deliver(client, daraja, "reversal", state["reversal"]["conversation_id"])
    drain_inbox(runtime)

    assert balance(runtime, "ACC-4") == 13000 - 10000 - 8000
    no_violations(runtime)


def test_a_reversal_while_another_waits_for_its_result_is_refused(
    client: FlaskClient, runtime: Runtime, admin_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-5", ["0712345005"])
    paid = daraja.pay_bill("60", "254712345005", "ACC-5", deliver=False)
    ident = confirmed(client, runtime, daraja, paid.receipt)
    assert reverse(client, admin_headers, ident).status_code == 202

    assert_problem(reverse(client, admin_headers, ident), 409, "reversal_in_progress")
    assert len(daraja.calls(REVERSAL)) == 1


def test_an_operator_cannot_reverse(
    client: FlaskClient, runtime: Runtime, operator_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-6", ["0712345006"])
    paid = daraja.pay_bill("60", "254712345006", "ACC-6", deliver=False)
    ident = confirmed(client, runtime, daraja, paid.receipt)

    assert reverse(client, operator_headers, ident).status_code == 403
    assert daraja.calls(REVERSAL) == []


def test_daraja_unreachable_is_502_and_the_reversal_may_be_asked_again(
    client: FlaskClient, runtime: Runtime, admin_headers: dict, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-7", ["0712345007"])
    paid = daraja.pay_bill("70", "254712345007", "ACC-7", deliver=False)
    ident = confirmed(client, runtime, daraja, paid.receipt)
    daraja.fail_next(REVERSAL, times=10, status=503)

    body = assert_problem(reverse(client, admin_headers, ident), 502, "provider_unavailable")

    assert body["reversal_state"]["reversal"]["status"] == "failed"
    assert balance(runtime, "ACC-7") == 7000
    daraja.fail_next(REVERSAL, times=0)


class AnswersFirst:
    """M-PESA, whose result is posted and worked before its reply reaches momo."""

    def __init__(self, client: FlaskClient, runtime: Runtime, daraja: DarajaFake) -> None:
        self.inner = reconcilers()["mpesa"]
        self.name = self.inner.name
        self.client, self.runtime, self.daraja = client, runtime, daraja

    def receipt_code(self, reference: str) -> str | None:
        return self.inner.receipt_code(reference)

    def reconcile_missing(self, settings: Settings) -> list[str]:
        return self.inner.reconcile_missing(settings)

    def look_up(self, settings: Settings, code: str) -> Accepted:
        accepted = self.inner.look_up(settings, code)
        assert accepted.conversation_id is not None
        deliver(self.client, self.daraja, "status", accepted.conversation_id)
        drain_inbox(self.runtime)
        return accepted

    def reverse(self, settings: Settings, code: str, amount: int, remarks: str) -> Accepted:
        raise AssertionError("not asked here")


def test_a_result_that_comes_before_the_reply_settles_the_lookup_once_the_reply_is_stored(
    client: FlaskClient, runtime: Runtime, daraja: DarajaFake
) -> None:
    add_customer(runtime, "ACC-8", ["0712345008"])
    paid = daraja.pay_bill("40", "254712345008", "ACC-8", deliver=False)
    early = {"mpesa": AnswersFirst(client, runtime, daraja)}
    with runtime.sessions.begin() as session:
        ident = lookups_reversals.open_lookup(runtime, session, early, paid.receipt, "test").id

    lookups_reversals.send_lookup(runtime, early, ident)  # stores the ids, then the result again
    drain_inbox(runtime)

    with runtime.sessions.begin() as session:
        lookup = get_lookup(session, ident)
        assert lookup.status == "found"
        assert lookup.payment_id is not None
    assert balance(runtime, "ACC-8") == 4000
    assert credits(runtime) == 1
