"""Payment requests end to end through real HTTP: the operator API asks, a fake Daraja
prompts and posts its callback to momo's public URL, gunicorn stores it, a Celery worker
credits it, and beat asks Daraja about a request whose callback never comes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import PATH_TOKEN
from tests.fakes import NEVER, QUERY, TWICE, DarajaFake, StkResult
from tests.integration.conftest import (
    VENV_BIN,
    Stack,
    free_port,
    momo_serve,
    stack_of_its_own,
    wait_until,
)


@pytest.fixture(scope="module")
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        fake.default_outcome = StkResult(delay=0.3)
        yield fake
    assert fake.errors == []


@pytest.fixture(scope="module")
def asking_stack(
    daraja: DarajaFake, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with stack_of_its_own(redis_url, tmp_path_factory.mktemp("asking"), daraja.momo_env) as stack:
        yield stack


def test_a_request_is_prompted_called_back_and_credited(
    asking_stack: Stack, daraja: DarajaFake
) -> None:
    asking_stack.add_customer("E2E-1", "0712000001")
    started = time.monotonic()
    made = asking_stack.api(
        "POST", "/payment-requests", json={"account_number": "E2E-1", "amount": "250"}
    )
    assert made.status_code == 201, made.text
    item = asking_stack.settled(made.json()["id"])
    elapsed = time.monotonic() - started
    assert item["status"] == "paid", item
    assert asking_stack.balance("E2E-1") == "250.00"
    (delivery,) = [
        d for d in daraja.deliveries if made.json()["provider_reference"].encode() in d.body
    ]
    assert delivery.status == 200
    print(f"request-to-credit: {elapsed:.2f}s (callback after 0.3s)")


def test_a_callback_sent_twice_credits_once(asking_stack: Stack, daraja: DarajaFake) -> None:
    asking_stack.add_customer("E2E-2", "0712000002")
    daraja.will(StkResult(callback=TWICE))
    made = asking_stack.api(
        "POST", "/payment-requests", json={"account_number": "E2E-2", "amount": "100"}
    )
    assert asking_stack.settled(made.json()["id"])["status"] == "paid"
    reference = made.json()["provider_reference"]
    wait_until(lambda: len([d for d in daraja.deliveries if reference.encode() in d.body]) == 2)
    time.sleep(1.5)  # the second callback has been worked too
    assert asking_stack.balance("E2E-2") == "100.00"


def test_a_cancelled_prompt_is_cancelled_and_moves_no_money(
    asking_stack: Stack, daraja: DarajaFake
) -> None:
    asking_stack.add_customer("E2E-3", "0712000003")
    daraja.will(StkResult(code=1032))
    made = asking_stack.api(
        "POST", "/payment-requests", json={"account_number": "E2E-3", "amount": "100"}
    )
    item = asking_stack.settled(made.json()["id"])
    assert (item["status"], item["result_code"]) == ("cancelled", "1032")
    assert asking_stack.balance("E2E-3") == "0.00"


def test_a_callback_that_never_comes_is_settled_by_beat_asking_daraja(
    asking_stack: Stack, daraja: DarajaFake
) -> None:
    asking_stack.add_customer("E2E-4", "0712000004")
    daraja.will(StkResult(callback=NEVER))
    made = asking_stack.api(
        "POST", "/payment-requests", json={"account_number": "E2E-4", "amount": "300"}
    )
    reference = made.json()["provider_reference"]
    item = asking_stack.settled(made.json()["id"], timeout=40)
    assert item["status"] == "paid"
    assert asking_stack.balance("E2E-4") == "300.00"
    queries = [q for q in daraja.calls(QUERY) if q.json["CheckoutRequestID"] == reference]
    assert len(queries) == 1
    print(f"queries for a request whose callback never came: {len(queries)}")


def test_the_embedded_default_asks_and_settles_too(tmp_path: Path, daraja: DarajaFake) -> None:
    """`momo serve` on its SQLite default: its in-process worker credits the callback and
    asks Daraja about a request whose callback never comes."""
    port = free_port()
    with momo_serve(
        tmp_path,
        port=port,
        MOMO_MPESA_PATH_TOKEN=PATH_TOKEN,
        MOMO_REQUEST_QUERY_AFTER_SECONDS="5",
        MOMO_SWEEP_INTERVAL_SECONDS="1",
        **daraja.momo_env(f"http://127.0.0.1:{port}"),
    ) as (base, env, _proc):
        token = subprocess.run(
            [str(VENV_BIN / "momo"), "token", "create", "--name", "it", "--role", "operator"],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        headers = {"Authorization": f"Bearer {token}"}

        def api(method: str, path: str, **kwargs: Any) -> requests.Response:
            return requests.request(
                method, f"{base}/api/v1{path}", headers=headers, timeout=30, **kwargs
            )

        made = api(
            "POST",
            "/customers",
            json={"account_number": "EMB-1", "name": "E", "phones": ["0712000009"]},
        )
        assert made.status_code == 201, made.text
        ids = []
        for outcome in (StkResult(delay=0.2), StkResult(callback=NEVER)):
            daraja.will(outcome)
            asked = api(
                "POST", "/payment-requests", json={"account_number": "EMB-1", "amount": "40"}
            )
            assert asked.status_code == 201, asked.text
            ids.append(asked.json()["id"])

        def both_paid() -> bool:
            return all(api("GET", f"/payment-requests/{i}").json()["status"] == "paid" for i in ids)

        wait_until(both_paid, timeout=40)
        assert api("GET", "/customers/EMB-1").json()["balance"] == "80.00"
