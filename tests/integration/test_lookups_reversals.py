"""Lookups and reversals end to end through real HTTP: the operator API asks a fake
Daraja's Transaction Status and Reversal APIs, the fake posts each result to momo's
public URL a moment later, gunicorn stores it in the inbox and a Celery worker records
it on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes import REVERSAL, STATUS, DarajaFake
from tests.integration.conftest import PATH_TOKEN, Stack, stack_of_its_own, wait_until


@pytest.fixture(scope="module")
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture(scope="module")
def reconciling_stack(
    daraja: DarajaFake, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with stack_of_its_own(
        redis_url, tmp_path_factory.mktemp("reconcile"), daraja.momo_env
    ) as stack:
        daraja.confirmation_url = f"{stack.base}/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation"
        yield stack


def settled_lookup(stack: Stack, lookup_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        item: dict[str, Any] = stack.api("GET", f"/lookups/{lookup_id}").json()
        return item if item["status"] not in ("pending", "sent") else None

    result: dict[str, Any] = wait_until(done)
    return result


def look_up(stack: Stack, code: str) -> dict[str, Any]:
    asked = stack.api("POST", "/payments/lookup", json={"code": code})
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "sent", asked.json()
    return settled_lookup(stack, asked.json()["id"])


def payment_by_code(stack: Stack, code: str, status: str = "associated") -> dict[str, Any]:
    found = stack.api("GET", "/payments", params={"q": code, "status": status}).json()["items"]
    (item,) = [p for p in found if p["code"] == code]
    return dict(item)


def results_posted(daraja: DarajaFake, kind: str) -> list[Any]:
    return [d for d in daraja.deliveries if d.url.endswith(f"/{kind}/result")]


# --- lookups --------------------------------------------------------------------------


def test_a_lookup_finds_a_missed_payment_and_credits_it_once(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    stack = reconciling_stack
    stack.add_customer("LK-1", "0712100001")
    paid = daraja.pay_bill("300", "254712100001", "LK-1", deliver=False)  # callback lost

    found = look_up(stack, paid.receipt.lower())

    assert (found["status"], found["code"], found["result_code"]) == ("found", paid.receipt, "0")
    assert found["payment_id"] is not None
    assert stack.balance("LK-1") == "300.00"
    payment = stack.api("GET", f"/payments/{found['payment_id']}").json()
    assert (payment["channel"], payment["phone"]) == ("lookup", "+254712100001")
    (call,) = [c for c in daraja.calls(STATUS) if c.json["TransactionID"] == paid.receipt]
    assert call.json["CommandID"] == "TransactionStatusQuery"
    assert call.json["IdentifierType"] == "4"

    again = look_up(stack, paid.receipt)  # a second lookup, and its result: nothing more
    assert again["status"] == "found"
    assert again["payment_id"] == found["payment_id"]
    time.sleep(1)
    assert stack.balance("LK-1") == "300.00"


def test_a_lookup_of_a_code_mpesa_does_not_know_ends_not_found(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    found = look_up(reconciling_stack, "QZZ1234567")

    assert found["status"] == "not_found"
    assert found["result_code"] == "R000002"
    assert found["payment_id"] is None


def test_a_lookup_confirms_a_payment_entered_by_hand(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    stack = reconciling_stack
    stack.add_customer("LK-3", "0712100030")
    paid = daraja.pay_bill("150", "254712100003", "LK-3", deliver=False)
    entered = stack.api(
        "POST",
        "/payments",
        json={"account_number": "LK-3", "amount": "150", "reference": paid.receipt},
    )
    assert entered.status_code == 201, entered.text
    assert entered.json()["confirmed_by"] is None

    found = look_up(stack, paid.receipt)

    assert found["status"] == "found"
    assert found["payment_id"] == entered.json()["id"]
    payment = stack.api("GET", f"/payments/{entered.json()['id']}").json()
    assert (payment["confirmed_by"], payment["phone"]) == ("lookup", "+254712100003")
    assert payment["channel"] == "manual"
    assert stack.balance("LK-3") == "150.00"
    by_phone = stack.api("GET", "/payments", params={"q": "0712100003"}).json()["items"]
    assert [p["id"] for p in by_phone] == [entered.json()["id"]]


def test_a_lookup_without_a_receipt_code_is_refused_before_daraja_is_asked(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    before = len(daraja.calls(STATUS))
    refused = reconciling_stack.api("POST", "/payments/lookup", json={"code": "hello"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_code"
    assert len(daraja.calls(STATUS)) == before


# --- reversals ------------------------------------------------------------------------


def test_a_reversal_debits_the_customer_once_though_its_result_comes_twice(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    stack = reconciling_stack
    stack.add_customer("RV-1", "0712200001")
    paid = daraja.pay_bill("200", "254712200001", "RV-1")
    wait_until(lambda: stack.balance("RV-1") == "200.00")
    payment = payment_by_code(stack, paid.receipt)
    daraja.result_copies = 2
    try:
        asked = stack.api(
            "POST", f"/payments/{payment['id']}/reversal", json={"note": "paid twice"}
        )
        assert asked.status_code == 202, asked.text
        assert asked.json()["reversal"]["status"] == "sent"
        conversation = asked.json()["reversal"]["conversation_id"]
        wait_until(
            lambda: (
                [
                    d.status
                    for d in results_posted(daraja, "reversal")
                    if conversation.encode() in d.body
                ]
                == [200, 200]
            )
        )
    finally:
        daraja.result_copies = 1

    def reversed_state() -> dict[str, Any] | None:
        state: dict[str, Any] = stack.api("GET", f"/payments/{payment['id']}/reversal").json()
        return state if state["reversal"]["status"] == "reversed" else None

    state = wait_until(reversed_state)
    time.sleep(1.5)  # the second result has been worked too
    assert state["payment"]["reversal_receipt"] == daraja.c2b[paid.receipt].reversed_by
    assert state["payment"]["reversed_at"] is not None
    assert state["payment"]["status"] == "unassociated"
    assert stack.balance("RV-1") == "0.00"
    entries = stack.api("GET", "/customers/RV-1/transactions").json()["items"]
    assert sorted(e["amount"] for e in entries) == ["-200.00", "200.00"]
    (call,) = daraja.calls(REVERSAL)
    assert call.json["TransactionID"] == paid.receipt
    assert call.json["RecieverIdentifierType"] == "11"
    assert Decimal(call.json["Amount"]) == 200

    again = stack.api("POST", f"/payments/{payment['id']}/reversal")
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "already_reversed"
    associated = stack.api(
        "POST", f"/payments/{payment['id']}/associate", json={"account_number": "RV-1"}
    )
    assert associated.status_code == 409, associated.text
    assert associated.json()["code"] == "payment_reversed"


def test_a_reversal_daraja_refuses_is_failed_and_moves_no_money(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    stack = reconciling_stack
    stack.add_customer("RV-2", "0712200002")
    paid = daraja.pay_bill("120", "254712200002", "RV-2")
    wait_until(lambda: stack.balance("RV-2") == "120.00")
    payment = payment_by_code(stack, paid.receipt)
    daraja.refuse_next(REVERSAL, "invalid_transaction_id")

    refused = stack.api("POST", f"/payments/{payment['id']}/reversal")

    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "provider_refused"
    assert "Invalid TransactionID" in body["detail"]
    assert body["reversal_state"]["reversal"]["status"] == "failed"
    assert body["reversal_state"]["payment"]["reversed_at"] is None
    time.sleep(1)
    assert stack.balance("RV-2") == "120.00"
    assert daraja.c2b[paid.receipt].reversed_by is None


def test_a_reversal_whose_result_says_the_initiator_is_wrong_is_failed(
    reconciling_stack: Stack, daraja: DarajaFake
) -> None:
    stack = reconciling_stack
    stack.add_customer("RV-3", "0712200003")
    paid = daraja.pay_bill("90", "254712200003", "RV-3")
    wait_until(lambda: stack.balance("RV-3") == "90.00")
    payment = payment_by_code(stack, paid.receipt)
    daraja.initiator_name = "someone-else"
    try:
        asked = stack.api("POST", f"/payments/{payment['id']}/reversal")
    finally:
        daraja.initiator_name = "testapi"
    assert asked.status_code == 202, asked.text

    def failed() -> dict[str, Any] | None:
        state: dict[str, Any] = stack.api("GET", f"/payments/{payment['id']}/reversal").json()
        return state if state["reversal"]["status"] == "failed" else None

    state = wait_until(failed)
    assert state["reversal"]["result_code"] == "2001"
    assert stack.balance("RV-3") == "90.00"


def test_a_payment_entered_by_hand_without_a_receipt_cannot_be_reversed(
    reconciling_stack: Stack,
) -> None:
    stack = reconciling_stack
    stack.add_customer("RV-4", "0712200004")
    entered = stack.api("POST", "/payments", json={"account_number": "RV-4", "amount": "50"})
    assert entered.status_code == 201, entered.text

    refused = stack.api("POST", f"/payments/{entered.json()['id']}/reversal")

    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "provider_cannot_reverse"
    assert "reverse it with the provider" in refused.json()["detail"]
