"""Hostile or careless operator input gets a 4xx with a message, never a 5xx or a change."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from momo.runtime import Runtime
from tests.conftest import add_customer


@pytest.mark.parametrize(
    "q",
    [
        "'; DROP TABLE payments; --",
        "1' OR '1'='1",
        "%",
        "_",
        "\\",
        "Wanjikũ Kamau 🙂",
        "\uff10\uff17\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # full-width digits
        "\x00",
    ],
)
def test_search_text_that_looks_like_sql_or_is_odd_is_just_text(
    client: FlaskClient, viewer_headers: dict[str, str], runtime: Runtime, q: str
) -> None:
    add_customer(runtime, "ACC1042", ["0712345678"])
    for path in ("/api/v1/payments", "/api/v1/customers", "/api/v1/transactions"):
        response = client.get(path, query_string={"q": q}, headers=viewer_headers)
        assert response.status_code in (200, 400), (path, response.get_data())
        if response.status_code == 200:
            assert response.get_json()["items"] == [] or path == "/api/v1/customers"
    # the table is still there
    assert client.get("/api/v1/payments", headers=viewer_headers).status_code == 200


def test_a_huge_search_is_refused_with_a_clear_message(
    client: FlaskClient, viewer_headers: dict[str, str]
) -> None:
    response = client.get(
        "/api/v1/payments", query_string={"q": "7" * 10_000}, headers=viewer_headers
    )
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_q"
    assert "at most 100 characters" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("0", "greater than zero"),
        ("-10", "greater than zero"),
        ("0.001", "more than two decimal places"),
        ("10.005", "more than two decimal places"),
        ("100000000.01", "over the maximum"),
        ("1e9", "plain decimal"),
        ("1,000", "plain decimal"),
        ("ten", "plain decimal"),
        (True, "decimal string"),
        ([10], "decimal string"),
        ({"value": 10}, "decimal string"),
        (None, "decimal string"),
    ],
)
def test_absurd_amounts_are_refused_and_nothing_is_booked(
    client: FlaskClient,
    operator_headers: dict[str, str],
    runtime: Runtime,
    amount: object,
    words: str,
) -> None:
    add_customer(runtime, "ACC1042", [])
    response = client.post(
        "/api/v1/payments",
        json={"account_number": "ACC1042", "amount": amount},
        headers=operator_headers,
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_amount"
    assert words in body["detail"]
    shown = client.get("/api/v1/customers/ACC1042", headers=operator_headers).get_json()
    assert shown["balance"] == "0.00"


@pytest.mark.parametrize(
    "body",
    [
        {"account_number": 1042, "amount": "10.00"},
        {"account_number": ["ACC1042"], "amount": "10.00"},
        {"account_number": "ACC1042", "amount": "10.00", "reference": 5},
        {"account_number": "ACC1042", "amount": "10.00", "note": "x" * 5000},
    ],
)
def test_wrong_types_are_refused_with_a_clear_message(
    client: FlaskClient, operator_headers: dict[str, str], runtime: Runtime, body: dict
) -> None:
    add_customer(runtime, "ACC1042", [])
    response = client.post("/api/v1/payments", json=body, headers=operator_headers)
    assert response.status_code == 400
    assert response.get_json()["detail"]
