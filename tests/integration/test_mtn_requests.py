"""MTN MoMo payment requests end to end through real HTTP: the operator API asks, a fake
MTN prompts and PUTs its (unsigned) callback to momo's public URL, gunicorn stores it,
a Celery worker marks the request to confirm, and beat's sweep asks MTN (the status GET),
whose answer settles it; a request whose callback never comes is settled the same way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import NEVER, QUERY, MtnFake, MtnResult
from tests.fakes.mtn import API_KEY, API_USER, SUBSCRIPTION_KEY
from tests.integration.conftest import Stack, stack_of_its_own

MTN_TOKEN = "mtn-path-token-0123456789abcdefghijkl"


@pytest.fixture(scope="module")
def mtn() -> Iterator[MtnFake]:
    with MtnFake() as fake:
        fake.default_outcome = MtnResult(delay=0.3)
        yield fake
    assert fake.errors == []


@pytest.fixture(scope="module")
def mtn_stack(
    mtn: MtnFake, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        "MOMO_DEFAULT_REGION": "UG",
        "MOMO_CURRENCY": "EUR",
        "MOMO_MTN_API_BASE": mtn.base_url,
        "MOMO_MTN_SUBSCRIPTION_KEY": SUBSCRIPTION_KEY,
        "MOMO_MTN_API_USER": API_USER,
        "MOMO_MTN_API_KEY": API_KEY,
        "MOMO_MTN_PATH_TOKEN": MTN_TOKEN,
    }
    with stack_of_its_own(redis_url, tmp_path_factory.mktemp("mtn"), lambda _: env) as stack:
        yield stack


def request(stack: Stack, account: str, amount: str) -> dict[str, Any]:
    made = stack.api(
        "POST", "/payment-requests", json={"account_number": account, "amount": amount}
    )
    assert made.status_code == 201, made.text
    item: dict[str, Any] = made.json()
    assert item["provider"] == "mtn"
    return item


def queries(mtn: MtnFake, reference: str) -> int:
    return len([q for q in mtn.calls(QUERY) if q.path.endswith(reference)])


def test_a_request_is_called_back_confirmed_by_mtn_and_credited(
    mtn_stack: Stack, mtn: MtnFake
) -> None:
    mtn_stack.add_customer("MTN-1", "0772000001")
    item = request(mtn_stack, "MTN-1", "250")
    reference = item["provider_reference"]
    done = mtn_stack.settled(item["id"], timeout=40.0)
    assert done["status"] == "paid", done
    assert mtn_stack.balance("MTN-1") == "250.00"
    (delivery,) = [d for d in mtn.deliveries if reference.encode() in d.body]
    assert (delivery.method, delivery.status) == ("PUT", 200)
    assert delivery.url.endswith(f"/webhooks/mtn/{MTN_TOKEN}/callback")
    # paid on MTN's own answer, asked once, not on the callback's word
    assert queries(mtn, reference) == 1


def test_a_failed_request_is_marked_and_moves_no_money(mtn_stack: Stack, mtn: MtnFake) -> None:
    mtn_stack.add_customer("MTN-2", "0772000002")
    mtn.will(MtnResult(status="FAILED", reason={"code": "NOT_ENOUGH_FUNDS", "message": "Funds"}))
    item = request(mtn_stack, "MTN-2", "100")
    done = mtn_stack.settled(item["id"], timeout=40.0)
    assert (done["status"], done["result_code"]) == ("failed", "NOT_ENOUGH_FUNDS")
    assert mtn_stack.balance("MTN-2") == "0.00"


def test_a_callback_that_never_comes_is_settled_by_beat_asking_mtn(
    mtn_stack: Stack, mtn: MtnFake
) -> None:
    mtn_stack.add_customer("MTN-3", "0772000003")
    mtn.will(MtnResult(callback=NEVER))
    item = request(mtn_stack, "MTN-3", "300")
    reference = item["provider_reference"]
    done = mtn_stack.settled(item["id"], timeout=40.0)
    assert done["status"] == "paid"
    assert mtn_stack.balance("MTN-3") == "300.00"
    assert not [d for d in mtn.deliveries if reference.encode() in d.body]
    assert queries(mtn, reference) == 1
