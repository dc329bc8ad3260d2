"""Unauthenticated webhook traffic is braked; authenticated callbacks never are."""

from __future__ import annotations

import ipaddress

from flask.testing import FlaskClient
from sqlalchemy import func, select

from ingest.limits import FailureLimiter
from matcher.models import InboxItem
from momo.app import create_app
from momo.runtime import Runtime
from tests.conftest import sample_bytes, webhook_url

BODY = sample_bytes("c2b_confirmation_paybill_plain.json")


def post(client: FlaskClient, url: str, address: str = "203.0.113.9"):  # type: ignore[no-untyped-def]
    return client.post(
        url, data=BODY, content_type="application/json", environ_base={"REMOTE_ADDR": address}
    )


def inbox_rows(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return int(session.scalar(select(func.count()).select_from(InboxItem)) or 0)


def test_the_limiter_counts_failures_per_address_per_minute() -> None:
    limiter = FailureLimiter(per_minute=3)
    assert [limiter.fail("a") for _ in range(5)] == [False, False, False, True, True]
    assert limiter.fail("b") is False


def test_the_limiter_forgets_the_oldest_addresses_past_its_bound() -> None:
    limiter = FailureLimiter(per_minute=1, max_addresses=2)
    limiter.fail("a")
    limiter.fail("b")
    limiter.fail("c")
    assert limiter.fail("a") is False  # "a" was forgotten: a fresh budget


def test_a_flood_of_wrong_tokens_gets_429_and_stores_nothing(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.with_overrides(unauthenticated_per_minute=5)
    client = create_app(runtime=runtime).test_client()
    statuses = [
        post(client, webhook_url("c2b/confirmation", "wrong")).status_code for _ in range(8)
    ]
    assert statuses == [404] * 5 + [429] * 3
    assert inbox_rows(runtime) == 0


def test_the_right_token_is_never_throttled_even_from_a_flooding_address(
    runtime: Runtime,
) -> None:
    runtime.settings = runtime.settings.with_overrides(unauthenticated_per_minute=2)
    client = create_app(runtime=runtime).test_client()
    for _ in range(5):
        post(client, webhook_url("c2b/confirmation", "wrong"))
    good = post(client, webhook_url("c2b/confirmation"))
    assert good.status_code == 200
    assert inbox_rows(runtime) == 1


def test_disallowed_addresses_are_braked_too(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.with_overrides(
        unauthenticated_per_minute=2,
        mpesa_allowed_ips=(ipaddress.ip_network("196.201.214.0/24"),),
    )
    client = create_app(runtime=runtime).test_client()
    statuses = [post(client, webhook_url("c2b/confirmation")).status_code for _ in range(4)]
    assert statuses == [403, 403, 429, 429]
    allowed = post(client, webhook_url("c2b/confirmation"), address="196.201.214.7")
    assert allowed.status_code == 200
