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
from tests.integration.conftest import Stack, stack_of_its_own

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
    def env_for(public_url: str) -> dict[str, str]:
        # as registered in Airtel's portal: the callback URL under momo's public address
        airtel.callback_url = f"{public_url}/webhooks/airtel/{AIRTEL_TOKEN}/callback"
        return {
            "MOMO_AIRTEL_PATH_TOKEN": AIRTEL_TOKEN,
            "MOMO_AIRTEL_CALLBACK_KEY": CALLBACK_KEY,
            "MOMO_AIRTEL_CLIENT_ID": CLIENT_ID,
            "MOMO_AIRTEL_CLIENT_SECRET": CLIENT_SECRET,
            "MOMO_AIRTEL_API_BASE": airtel.base_url,
            "MOMO_AIRTEL_COUNTRY": "KE",
        }

    with stack_of_its_own(redis_url, tmp_path_factory.mktemp("airtel"), env_for) as stack:
        yield stack


def request(stack: Stack, account: str, amount: str) -> dict[str, Any]:
    made = stack.api(
        "POST", "/payment-requests", json={"account_number": account, "amount": amount}
    )
    assert made.status_code == 201, made.text
    item: dict[str, Any] = made.json()
    assert item["provider"] == "airtel"  # chosen by the phone's network
    return item


def test_a_request_is_prompted_called_back_and_credited(
    airtel_stack: Stack, airtel: AirtelFake
) -> None:
    airtel_stack.add_customer("AIR-1", "0733000001")
    started = time.monotonic()
    made = request(airtel_stack, "AIR-1", "250")
    item = airtel_stack.settled(made["id"])
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
    airtel_stack.add_customer("AIR-2", "0733000002")
    airtel.will(AirtelResult(status="TF"))
    made = request(airtel_stack, "AIR-2", "100")
    item = airtel_stack.settled(made["id"])
    assert (item["status"], item["result_code"]) == ("failed", "TF")
    assert airtel_stack.balance("AIR-2") == "0.00"


def test_a_callback_that_never_comes_is_settled_by_beat_asking_airtel(
    airtel_stack: Stack, airtel: AirtelFake
) -> None:
    airtel_stack.add_customer("AIR-3", "0733000003")
    airtel.will(AirtelResult(callback=NEVER))
    made = request(airtel_stack, "AIR-3", "300")
    item = airtel_stack.settled(made["id"], timeout=40)
    assert item["status"] == "paid"
    assert airtel_stack.balance("AIR-3") == "300.00"
    reference = made["provider_reference"]
    queries = [q for q in airtel.calls(QUERY) if q.path.endswith("/" + reference)]
    assert len(queries) == 1
    print(f"enquiries for an Airtel request whose callback never came: {len(queries)}")
