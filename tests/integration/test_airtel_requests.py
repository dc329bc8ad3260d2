"""Airtel Money payment requests end to end through real HTTP: the operator API asks, a
fake Airtel prompts and posts its hashed callback to momo's public URL, gunicorn stores
it, a Celery worker credits it, and beat asks Airtel about a request whose callback
never comes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import NEVER, QUERY, AirtelFake, AirtelResult
from tests.fakes.airtel import CALLBACK_KEY, CLIENT_ID, CLIENT_SECRET
from tests.integration.conftest import Stack, _database, free_port, running_stack, wait_until
from tests.integration.test_payment_requests import other_redis_db

AIRTEL_TOKEN = "airtel-it-token-" + "9f8e7d6c5b4a3210" * 2


@pytest.fixture(scope="module")
def airtel() -> Iterator[AirtelFake]:
    with AirtelFake() as fake:
        fake.default_outcome = AirtelResult(delay=0.3)
        yield fake
    assert fake.errors == []


@pytest.fixture(scope="module")
def airtel_stack(
    airtel: AirtelFake, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    databases = _database()
    url = next(databases)
    port = free_port()
    # as registered in Airtel's portal: the callback URL under momo's public address
    airtel.callback_url = f"http://127.0.0.1:{port}/webhooks/airtel/{AIRTEL_TOKEN}/callback"
    with running_stack(
        url,
        other_redis_db(redis_url),
        tmp_path_factory.mktemp("airtel"),
        port=port,
        MOMO_PUBLIC_URL=f"http://127.0.0.1:{port}",
        MOMO_AIRTEL_PATH_TOKEN=AIRTEL_TOKEN,
        MOMO_AIRTEL_CALLBACK_KEY=CALLBACK_KEY,
        MOMO_AIRTEL_CLIENT_ID=CLIENT_ID,
        MOMO_AIRTEL_CLIENT_SECRET=CLIENT_SECRET,
        MOMO_AIRTEL_API_BASE=airtel.base_url,
        MOMO_AIRTEL_COUNTRY="KE",
        MOMO_REQUEST_QUERY_AFTER_SECONDS="5",
    ) as stack:
        yield stack
    next(databases, None)


def customer(stack: Stack, account: str, phone: str) -> None:
    made = stack.api(
        "POST", "/customers", json={"account_number": account, "name": account, "phones": [phone]}
    )
    assert made.status_code == 201, made.text


def request(stack: Stack, account: str, amount: str) -> dict[str, Any]:
    made = stack.api(
        "POST", "/payment-requests", json={"account_number": account, "amount": amount}
    )
    assert made.status_code == 201, made.text
    item: dict[str, Any] = made.json()
    assert item["provider"] == "airtel"  # chosen by the phone's network
    return item


def settled(stack: Stack, request_id: int, timeout: float = 30.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        item = stack.api("GET", f"/payment-requests/{request_id}").json()
        return item if item["status"] != "pending" else None

    result: dict[str, Any] = wait_until(done, timeout=timeout)
    return result


def test_a_request_is_prompted_called_back_and_credited(
    airtel_stack: Stack, airtel: AirtelFake
) -> None:
    customer(airtel_stack, "AIR-1", "0733000001")
    started = time.monotonic()
    made = request(airtel_stack, "AIR-1", "250")
    item = settled(airtel_stack, made["id"])
    elapsed = time.monotonic() - started
    assert item["status"] == "paid", item
    assert airtel_stack.balance("AIR-1") == "250.00"
    (delivery,) = [d for d in airtel.deliveries if made["provider_reference"].encode() in d.body]
    assert delivery.status == 200
    assert b'"hash"' in delivery.body
    print(f"airtel request-to-credit: {elapsed:.2f}s (callback after 0.3s)")


def test_a_failed_prompt_is_failed_and_moves_no_money(
    airtel_stack: Stack, airtel: AirtelFake
) -> None:
    customer(airtel_stack, "AIR-2", "0733000002")
    airtel.will(AirtelResult(status="TF"))
    made = request(airtel_stack, "AIR-2", "100")
    item = settled(airtel_stack, made["id"])
    assert (item["status"], item["result_code"]) == ("failed", "TF")
    assert airtel_stack.balance("AIR-2") == "0.00"


def test_a_callback_that_never_comes_is_settled_by_beat_asking_airtel(
    airtel_stack: Stack, airtel: AirtelFake
) -> None:
    customer(airtel_stack, "AIR-3", "0733000003")
    airtel.will(AirtelResult(callback=NEVER))
    made = request(airtel_stack, "AIR-3", "300")
    item = settled(airtel_stack, made["id"], timeout=40)
    assert item["status"] == "paid"
    assert airtel_stack.balance("AIR-3") == "300.00"
    reference = made["provider_reference"]
    queries = [q for q in airtel.calls(QUERY) if q.path.endswith("/" + reference)]
    assert len(queries) == 1
    print(f"enquiries for an Airtel request whose callback never came: {len(queries)}")
