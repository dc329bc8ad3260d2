"""The generic webhook through real HTTP: a sender signs a payment and posts it to gunicorn,
a Celery worker credits it once, and the operator API shows the balance."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from ingest.providers.generic import sign
from matcher.models import INBOX_PROCESSED, InboxItem
from tests.integration.conftest import Stack, other_redis_db, running_stack, wait_until

pytestmark = pytest.mark.integration

KEY = bytes(range(7, 39))
OLD_KEY = bytes(range(50, 82))


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@pytest.fixture
def generic_stack(fresh_pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    # a database and Redis db of its own: the session stack's worker must not take its tasks
    with running_stack(
        fresh_pg_url,
        other_redis_db(redis_url),
        tmp_path,
        MOMO_GENERIC_SECRETS=f"isp-billing={whsec(KEY)},isp-billing={whsec(OLD_KEY)}",
    ) as stack:
        yield stack


def inbox(stack: Stack) -> list[tuple[str, str | None, str | None]]:
    with stack.runtime.sessions() as session:
        items = session.scalars(select(InboxItem).order_by(InboxItem.id))
        return [(item.status, item.reason, item.code) for item in items]


def post(stack: Stack, doc: dict[str, str], key: bytes = KEY) -> requests.Response:
    body = json.dumps(doc).encode()
    message_id, timestamp = f"msg_{doc['code']}_{time.time_ns()}", int(time.time())
    return requests.post(
        f"{stack.base}/webhooks/generic/isp-billing",
        data=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, message_id, timestamp, body),
        },
        timeout=30,
    )


def test_a_signed_payment_posted_over_http_is_credited_once(generic_stack: Stack) -> None:
    stack = generic_stack
    made = stack.api(
        "POST",
        "/customers",
        json={"account_number": "ISP-77", "name": "Jane Doe", "phones": ["0712345678"]},
    )
    assert made.status_code == 201, made.text
    doc = {
        "code": "INV-2026-0042",
        "amount": "1500.00",
        "currency": "KES",
        "phone": "+254712345678",
        "account_reference": "isp-77",
        "paid_at": "2026-03-01T14:05:09+03:00",
        "payer_name": "Jane Doe",
    }

    first = post(stack, doc)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": True}
    wait_until(lambda: stack.balance("ISP-77") == "1500.00")

    # the sender retries, signing with its old secret this time: acknowledged, not paid twice
    again = post(stack, doc, key=OLD_KEY)
    assert again.status_code == 200, again.text
    another = post(stack, {**doc, "code": "INV-2026-0043", "amount": "250.50"})
    assert another.status_code == 200, another.text
    unsigned = requests.post(
        f"{stack.base}/webhooks/generic/isp-billing", data=json.dumps(doc), timeout=30
    )
    assert unsigned.status_code == 401
    assert "webhook-id" in unsigned.json()["error"]

    wait_until(lambda: all(status == INBOX_PROCESSED for status, _, _ in inbox(stack)))
    assert [reason for _, reason, _ in inbox(stack)] == ["credited", "duplicate", "credited"]
    assert [code for _, _, code in inbox(stack)] == [
        "isp-billing:INV-2026-0042",
        "isp-billing:INV-2026-0042",
        "isp-billing:INV-2026-0043",
    ]
    assert stack.balance("ISP-77") == "1750.50"
