"""`momo mpesa register-urls` against the fake Daraja, then a payment to the shortcode:
M-PESA's confirmation reaches a real `momo serve` at the registered URL and the customer
is credited once."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes import DarajaFake
from tests.integration.conftest import (
    PATH_TOKEN,
    VENV_BIN,
    free_port,
    momo_serve,
    wait_until,
)


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        yield fake
    assert fake.errors == []


def momo(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "momo"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_registered_urls_take_the_shortcodes_payments_and_credit_the_customer(
    tmp_path: Path, daraja: DarajaFake
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"  # the sandbox takes plain http
    app = {
        "MOMO_PUBLIC_URL": public,
        "MOMO_MPESA_API_BASE": daraja.base_url,
        "MOMO_MPESA_CONSUMER_KEY": daraja.consumer_key,
        "MOMO_MPESA_CONSUMER_SECRET": daraja.consumer_secret,
        "MOMO_MPESA_SHORTCODE": daraja.shortcode,
    }
    with momo_serve(tmp_path, port=port, **app) as (base, env, _proc):
        token = (tmp_path / "instance" / "mpesa_path_token").read_text().strip()

        registered = momo(tmp_path, env, "mpesa", "register-urls")

        assert registered.returncode == 0, registered.stderr + registered.stdout
        assert f"ConfirmationURL {public}/webhooks/daraja/***/c2b/confirmation" in (
            registered.stdout
        )
        assert token not in registered.stdout + registered.stderr
        assert daraja.confirmation_url == f"{public}/webhooks/daraja/{token}/c2b/confirmation"
        assert daraja.validation_url == f"{public}/webhooks/daraja/{token}/c2b/validation"

        made = momo(tmp_path, env, "token", "create", "--name", "ops", "--role", "admin")
        assert made.returncode == 0, made.stderr
        auth = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
        created = requests.post(
            f"{base}/api/v1/customers",
            headers=auth,
            timeout=10,
            json={"account_number": "ACC1042", "name": "W", "phones": ["0712 345 678"]},
        )
        assert created.status_code == 201, created.text

        def balance() -> str:
            answer = requests.get(f"{base}/api/v1/customers/ACC1042", headers=auth, timeout=10)
            return str(answer.json()["balance"])

        payment = daraja.pay_bill("1500", "254712345678", "ACC1042")
        (delivery,) = daraja.deliveries
        assert delivery.url == daraja.confirmation_url
        assert delivery.status == 200, delivery.error or delivery.answer
        assert b'"ResultCode":0' in delivery.answer.replace(b" ", b"")
        wait_until(lambda: balance() == "1500.00", timeout=20)

        again = daraja.deliver_confirmation(payment.receipt)  # M-PESA delivers it twice
        assert again.status == 200
        found = requests.get(
            f"{base}/api/v1/payments", params={"q": payment.receipt}, headers=auth, timeout=10
        )
        assert [item["code"] for item in found.json()["items"]] == [payment.receipt]
        time.sleep(1)  # room for the repeat to be worked, were it to credit again
        assert balance() == "1500.00"


def test_a_public_url_daraja_would_refuse_is_never_sent(tmp_path: Path, daraja: DarajaFake) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
    env.update(
        MOMO_PUBLIC_URL="https://pay.safaricom-partner.example",
        MOMO_MPESA_PATH_TOKEN=PATH_TOKEN,
        MOMO_MPESA_API_BASE=daraja.base_url,
        MOMO_MPESA_CONSUMER_KEY=daraja.consumer_key,
        MOMO_MPESA_CONSUMER_SECRET=daraja.consumer_secret,
        MOMO_MPESA_SHORTCODE=daraja.shortcode,
    )

    refused = momo(tmp_path, env, "mpesa", "register-urls")

    assert refused.returncode == 1
    assert "'safaricom'" in refused.stderr
    assert "another host name" in refused.stderr
    assert PATH_TOKEN not in refused.stdout + refused.stderr
    assert daraja.requests == []
    assert daraja.confirmation_url is None
