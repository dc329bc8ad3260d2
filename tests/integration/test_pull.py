"""Pull Transactions end to end: a fake Daraja keeps the shortcode's C2B payments, one of
whose confirmations is lost on the way; beat (every minute) has the Celery worker pull
Daraja's list over real HTTP, and the lost payment is stored, matched and credited once,
on PostgreSQL. A payment settled by asking, which named no receipt, gains its receipt
from the list and is not credited again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from matcher.models import Payment, ProviderCoverage
from tasks.celery_app import PULL_PAYMENTS, make_producer
from tests.fakes import NEVER, DarajaFake, StkResult
from tests.integration.conftest import PATH_TOKEN, Stack, stack_of_its_own, wait_until


@pytest.fixture(scope="module")
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        fake.pull_registered = True
        fake.pull_page_size = 2  # a pull reads several pages
        yield fake
    assert fake.errors == []


@pytest.fixture(scope="module")
def pulling_stack(
    daraja: DarajaFake, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    def env_for(public_url: str) -> dict[str, str]:
        return daraja.momo_env(public_url) | {"MOMO_MPESA_PULL_EVERY_MINUTES": "1"}

    with stack_of_its_own(redis_url, tmp_path_factory.mktemp("pulling"), env_for) as stack:
        daraja.confirmation_url = f"{stack.base}/webhooks/daraja/{PATH_TOKEN}/c2b/confirmation"
        yield stack


def _covered(stack: Stack) -> list[Any]:
    with stack.runtime.sessions.begin() as session:
        return list(
            session.scalars(select(ProviderCoverage).where(ProviderCoverage.source == "pull"))
        )


def test_beat_pulls_and_a_lost_confirmation_is_credited_once(
    pulling_stack: Stack, daraja: DarajaFake
) -> None:
    pulling_stack.add_customer("PULL-1", "0712000101")
    pulling_stack.add_customer("PULL-2", "0712000102")
    delivered = daraja.pay_bill("300", "254712000101", "PULL-1")
    assert daraja.deliveries[-1].status == 200
    daraja.pay_bill("450", "254712000102", "PULL-2", deliver=False)  # lost on the way
    for n in range(3):  # more of the day's payments, all delivered
        daraja.pay_bill(10 + n, "254712000101", "PULL-1")
    assert wait_until(lambda: pulling_stack.balance("PULL-1") == "333.00")
    assert pulling_stack.balance("PULL-2") == "0.00"

    # beat's first pull comes a minute after it started
    wait_until(lambda: pulling_stack.balance("PULL-2") == "450.00", timeout=150, interval=1)

    assert pulling_stack.balance("PULL-1") == "333.00"  # delivered ones are duplicates
    assert _covered(pulling_stack)
    assert len(daraja.calls("pull_query")) >= 3  # five payments, two a page
    assert "momo.pull_payments" in pulling_stack.log("beat")
    assert delivered.receipt in daraja.c2b


def test_a_pull_again_credits_nothing_twice(pulling_stack: Stack, daraja: DarajaFake) -> None:
    before = (pulling_stack.balance("PULL-1"), pulling_stack.balance("PULL-2"))
    spans = len(_covered(pulling_stack))
    make_producer(pulling_stack.runtime.settings).send_task(PULL_PAYMENTS)

    wait_until(lambda: len(_covered(pulling_stack)) > spans)

    assert (pulling_stack.balance("PULL-1"), pulling_stack.balance("PULL-2")) == before


def test_a_payment_settled_by_asking_gains_its_receipt_from_the_pull(
    pulling_stack: Stack, daraja: DarajaFake
) -> None:
    pulling_stack.add_customer("PULL-3", "0712000103")
    daraja.will(StkResult(callback=NEVER))  # paid, and the callback never comes
    made = pulling_stack.api(
        "POST", "/payment-requests", json={"account_number": "PULL-3", "amount": "120"}
    )
    assert made.status_code == 201, made.text
    item = pulling_stack.settled(made.json()["id"], timeout=60)  # asked, after 5 s
    assert item["status"] == "paid", item
    reference = made.json()["provider_reference"]
    with pulling_stack.runtime.sessions.begin() as session:
        assert session.scalar(select(Payment.code).where(Payment.code == reference))
    spans = len(_covered(pulling_stack))

    make_producer(pulling_stack.runtime.settings).send_task(PULL_PAYMENTS)
    wait_until(lambda: len(_covered(pulling_stack)) > spans)

    receipt = daraja.transactions[reference].data["receipt"]
    with pulling_stack.runtime.sessions.begin() as session:
        codes = list(
            session.scalars(select(Payment.code).where(Payment.code.in_([reference, receipt])))
        )
    assert codes == [receipt]
    assert pulling_stack.balance("PULL-3") == "120.00"
