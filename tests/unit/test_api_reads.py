"""The lists read rows straight to JSON and answer exactly what they always did."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from core.runtime import Runtime
from tests.reads_contract import (
    as_sent,
    expected_customers,
    expected_payments,
    items_bytes,
    joined,
    pages,
    seed_varied,
)


def assert_same_pages(client: FlaskClient, bodies: list[bytes], expected: list[dict]) -> None:
    assert joined(bodies) == expected
    for n, body in enumerate(bodies):
        assert items_bytes(body) == items_bytes(as_sent(client, expected[2 * n : 2 * n + 2]))


@pytest.mark.parametrize("status", ["associated", "unassociated"])
def test_a_payments_page_is_byte_for_byte_what_it_was(
    client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str], status: str
) -> None:
    seed_varied(runtime)

    bodies = pages(client, "/api/v1/payments", viewer_headers, status=status)

    assert len(bodies) > 3
    assert_same_pages(client, bodies, expected_payments(runtime, status))


def test_unconfirmed_manual_payments_are_byte_for_byte_what_they_were(
    client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
) -> None:
    seed_varied(runtime)

    bodies = pages(client, "/api/v1/payments", viewer_headers, confirmed="false")

    assert len(bodies) > 1
    assert_same_pages(client, bodies, expected_payments(runtime, "", confirmed=True))


def test_a_search_answers_what_the_list_would_for_the_same_payments(
    client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
) -> None:
    seed_varied(runtime)

    bodies = pages(client, "/api/v1/payments", viewer_headers, q="Acc-2")

    wanted = [p for p in expected_payments(runtime, "associated") if p["account_number"] == "Acc-2"]
    assert wanted
    assert_same_pages(client, bodies, wanted)


def test_the_customer_list_is_byte_for_byte_what_it_was(
    client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
) -> None:
    seed_varied(runtime)

    bodies = pages(client, "/api/v1/customers", viewer_headers)

    expected = expected_customers(runtime)
    assert [c["phones"] for c in expected] == [
        [],
        ["+254712000001"],
        ["+254712000002", "+254733000003"],
    ]
    assert_same_pages(client, bodies, expected)
