"""Hostile or careless operator input gets a 4xx with a message, never a 5xx or a change."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.runtime import Runtime
from matcher.models import AuditEvent
from tests.conftest import add_customer, assert_problem, make_token
from tests.unit.contract import Operation, api_operations, writes


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


# --- text no database can hold: NUL, and lone surrogates ---------------------------------
#
# PostgreSQL refuses NUL in text (the tests in tests/integration/test_api_postgres.py show
# it there); a lone surrogate cannot even be encoded for SQLite. Every way an operator's
# text reaches the database is tried here: path and query parameters (taken from the
# OpenAPI document, so a new one is tried without being listed), cursors and every field
# of every body.

NUL, SURROGATE = "\x00", "\ud800"


def _parameters(where: str) -> list[Any]:
    return [
        pytest.param(operation, name, id=f"{operation} {name}")
        for operation in api_operations()
        for name in operation.parameters(where)
    ]


def _body_fields() -> list[Any]:
    return [
        pytest.param(operation, field, id=f"{operation} {field}")
        for operation in writes()
        for field in operation.body_schema["properties"]  # type: ignore[index]
    ]


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(runtime, 'admin', name='test-admin')}"}


def assert_refused(response: Any, code: str, where: str, what: str) -> None:
    body = assert_problem(response, 400, code)
    assert where in body["detail"], body["detail"]
    assert what in body["detail"], body["detail"]


@pytest.mark.parametrize(("operation", "name"), _parameters("path"))
def test_a_nul_in_a_path_parameter_is_refused_with_400_naming_it(
    client: FlaskClient, admin_headers: dict[str, str], operation: Operation, name: str
) -> None:
    response = client.open(
        operation.url(**{name: f"A{NUL}1"}),
        method=operation.method,
        json={},
        headers=admin_headers,
    )

    assert_refused(response, f"invalid_{name}", name, "NUL")


@pytest.mark.parametrize(("operation", "name"), _parameters("query"))
def test_a_nul_in_a_query_parameter_is_refused_with_400_naming_it(
    client: FlaskClient,
    runtime: Runtime,
    admin_headers: dict[str, str],
    operation: Operation,
    name: str,
) -> None:
    add_customer(runtime, "ACC1042", ["0712345678"])

    response = client.open(
        operation.url(),
        method=operation.method,
        query_string={name: f"2025{NUL}"},
        headers=admin_headers,
    )

    assert_refused(response, f"invalid_{name}", name, "NUL")


def test_a_nul_in_a_query_parameter_the_api_does_not_read_is_refused_too(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    response = client.get(
        "/api/v1/payments", query_string={f"x{NUL}": "1", "y": NUL}, headers=admin_headers
    )

    assert_problem(response, 400, "invalid_parameter")


@pytest.mark.parametrize(
    "text", ["%ED%A0%80", "%C0%80", "%FF"], ids=["surrogate", "overlong-nul", "ff"]
)
def test_bytes_that_are_not_utf_8_in_a_search_never_give_a_5xx(
    client: FlaskClient, admin_headers: dict[str, str], text: str
) -> None:
    # the URL is read as UTF-8 with replacement characters: no surrogate or NUL gets in
    for path in ("/api/v1/payments", "/api/v1/customers", "/api/v1/transactions"):
        response = client.get(f"{path}?q=A{text}", headers=admin_headers)
        assert response.status_code == 200, response.get_data(as_text=True)


def _cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize("odd", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/api/v1/customers", ["ACC{}"]),
        ("/api/v1/transactions", ["2025-11-03T11:30:15+00:00", "ledger{}", 1]),
        ("/api/v1/customers/ACC1042/transactions", ["2025-11-03T11:30:15+00:00", "{}", 1]),
        ("/api/v1/payments", ["2025-11-03T11:30:15+00:00{}", 1]),
        ("/api/v1/customers/ACC1042/purchases", ["{}"]),
        ("/api/v1/inbox", ["{}"]),
    ],
)
def test_a_cursor_holding_a_nul_or_a_lone_surrogate_is_refused_with_400(
    client: FlaskClient,
    runtime: Runtime,
    admin_headers: dict[str, str],
    path: str,
    parts: list[object],
    odd: str,
) -> None:
    add_customer(runtime, "ACC1042", ["0712345678"])
    cursor = _cursor(*(p.format(odd) if isinstance(p, str) else p for p in parts))

    response = client.get(path, query_string={"cursor": cursor}, headers=admin_headers)

    body = assert_problem(response, 400, "invalid_cursor")
    assert "next_cursor" in body["detail"]


def test_a_raw_nul_in_a_cursor_is_refused_with_400(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    cursor = _cursor("ACC1")
    response = client.get(
        "/api/v1/customers",
        query_string={"cursor": cursor[:3] + NUL + cursor[3:]},
        headers=admin_headers,
    )

    assert_problem(response, 400, "invalid_cursor")


@pytest.mark.parametrize(("odd", "what"), [(NUL, "NUL"), (SURROGATE, "surrogate")])
@pytest.mark.parametrize(("operation", "field"), _body_fields())
def test_a_nul_or_lone_surrogate_in_any_body_field_is_refused_with_400_naming_it(
    client: FlaskClient,
    runtime: Runtime,
    admin_headers: dict[str, str],
    operation: Operation,
    field: str,
    odd: str,
    what: str,
) -> None:
    add_customer(runtime, "ACC1042", ["0712345678"])
    body = {**operation.body_example, field: f"A{odd}B"}

    response = client.open(
        operation.url(), method=operation.method, json=body, headers=admin_headers
    )

    assert_refused(response, f"invalid_{field}", field, what)
    assert_nothing_changed(runtime)


@pytest.mark.parametrize("odd", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_an_odd_phone_in_a_list_or_an_odd_field_name_is_refused_with_400(
    client: FlaskClient, runtime: Runtime, admin_headers: dict[str, str], odd: str
) -> None:
    phones = {"account_number": "ACC7", "name": "Seven", "phones": ["0712345678", f"07{odd}"]}
    named = {"account_number": "ACC7", "name": "Seven", f"na{odd}me": "x"}

    in_list = client.post("/api/v1/customers", json=phones, headers=admin_headers)
    in_name = client.post("/api/v1/customers", json=named, headers=admin_headers)

    assert_refused(in_list, "invalid_phones", "phones[1]", "NUL" if odd == NUL else "surrogate")
    assert_problem(in_name, 400, "invalid_body")
    assert_nothing_changed(runtime)


def assert_nothing_changed(runtime: Runtime) -> None:
    """The admin's token changed nothing (every change is audited under its name)."""
    with runtime.sessions() as session:
        done = select(func.count()).where(AuditEvent.actor == "token:test-admin")
        assert session.scalar(done) == 0
