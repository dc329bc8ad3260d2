"""The operator API on real PostgreSQL, where odd text is refused by the database itself.

PostgreSQL takes no NUL in text and psycopg cannot encode a lone surrogate: before the
API refused them, a NUL in a search or cursor was a 503 with a stack trace and a lone
surrogate in a cursor a 500. Here each is a 400 that says what was wrong.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select, text

from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from matcher.db import make_engine
from matcher.ledger import Ledger
from matcher.migrate import upgrade
from matcher.models import REVERSAL_SENT, ApiToken, IdempotencyRecord, Payment, Reversal
from matcher.notifications import ReversalResult
from matcher.reversals import record_reversal_result
from momo.app import create_api_app
from tests.conftest import PATH_TOKEN, add_customer, assert_problem, make_token, mpesa_block
from tests.reads_contract import (
    as_sent,
    expected_customers,
    expected_payments,
    items_bytes,
    joined,
    pages,
    seed_varied,
)
from tests.unit.test_migrations import forgets_recorded_token_secrets

pytestmark = pytest.mark.integration

NUL, SURROGATE = "\x00", "\ud800"


@pytest.fixture
def pg_api(pg_url: str) -> Iterator[tuple[FlaskClient, Runtime, dict[str, str]]]:
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(Settings(database_url=pg_url, providers=mpesa_block(PATH_TOKEN)))
    app = create_api_app(runtime=runtime)
    app.config["TESTING"] = True
    admin = f"pg-admin-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {make_token(runtime, 'admin', name=admin)}"}
    yield app.test_client(), runtime, headers
    runtime.close()


def cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/payments", "/customers", "/transactions"])
def test_a_nul_in_a_search_is_a_400_on_postgresql(
    pg_api: tuple[FlaskClient, Runtime, dict[str, str]], path: str
) -> None:
    client, _, headers = pg_api

    response = client.get(f"/api/v1{path}", query_string={"q": f"a{NUL}b"}, headers=headers)

    body = assert_problem(response, 400, "invalid_q")
    assert "NUL" in body["detail"]


@pytest.mark.parametrize("odd", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/customers", ["ACC{}"]),
        ("/transactions", ["2025-11-03T11:30:15+00:00", "ledger{}", 1]),
    ],
)
def test_a_nul_or_lone_surrogate_in_a_cursor_is_a_400_on_postgresql(
    pg_api: tuple[FlaskClient, Runtime, dict[str, str]], path: str, parts: list[Any], odd: str
) -> None:
    client, _, headers = pg_api
    made = cursor(*(p.format(odd) if isinstance(p, str) else p for p in parts))

    response = client.get(f"/api/v1{path}", query_string={"cursor": made}, headers=headers)

    assert_problem(response, 400, "invalid_cursor")


def test_a_nul_in_an_account_number_in_the_path_is_a_400_on_postgresql(
    pg_api: tuple[FlaskClient, Runtime, dict[str, str]],
) -> None:
    client, _, headers = pg_api

    response = client.get("/api/v1/customers/ACC%001", headers=headers)

    assert_problem(response, 400, "invalid_account_number")


@pytest.mark.parametrize("odd", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_a_nul_or_lone_surrogate_in_a_name_is_a_400_and_nothing_is_stored(
    pg_api: tuple[FlaskClient, Runtime, dict[str, str]], odd: str
) -> None:
    client, runtime, headers = pg_api
    account = f"ODD-{uuid.uuid4().hex[:6]}"
    add_customer(runtime, account, [], name="Before")

    created = client.post(
        "/api/v1/customers",
        json={"account_number": f"{account}-2", "name": f"Wan{odd}jiku"},
        headers=headers,
    )
    changed = client.patch(
        f"/api/v1/customers/{account}", json={"name": f"Wan{odd}jiku"}, headers=headers
    )

    assert_problem(created, 400, "invalid_name")
    assert_problem(changed, 400, "invalid_name")
    assert client.get(f"/api/v1/customers/{account}-2", headers=headers).status_code == 404
    shown = client.get(f"/api/v1/customers/{account}", headers=headers).get_json()
    assert shown["name"] == "Before"


def test_a_token_made_with_an_idempotency_key_keeps_no_secret_on_postgresql(
    pg_api: tuple[FlaskClient, Runtime, dict[str, str]],
) -> None:
    client, runtime, headers = pg_api
    key = {"Idempotency-Key": str(uuid.uuid4())}
    order = {"name": f"pg-{uuid.uuid4().hex[:8]}", "role": "viewer"}

    first = client.post("/api/v1/tokens", json=order, headers=headers | key)
    again = client.post("/api/v1/tokens", json=order, headers=headers | key)

    assert first.status_code == 201
    raw = first.get_json()["token"]
    with runtime.sessions() as session:
        stored = [
            json.dumps(r)
            for r in session.scalars(
                select(IdempotencyRecord.response).where(
                    IdempotencyRecord.key == key["Idempotency-Key"]
                )
            )
        ]
    assert len(stored) == 1
    assert raw not in stored[0]
    assert_problem(again, 409, "token_secret_shown_once")
    assert raw not in again.get_data(as_text=True)


def test_upgrading_postgresql_forgets_token_secrets_kept_with_idempotency_records(
    fresh_pg_url: str,
) -> None:
    forgets_recorded_token_secrets(fresh_pg_url)


@pytest.fixture
def fresh_pg_api(fresh_pg_url: str) -> Iterator[tuple[FlaskClient, Runtime, dict[str, str]]]:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(Settings(database_url=fresh_pg_url, providers=mpesa_block(PATH_TOKEN)))
    app = create_api_app(runtime=runtime)
    app.config["TESTING"] = True
    headers = {"Authorization": f"Bearer {make_token(runtime, 'viewer')}"}
    yield app.test_client(), runtime, headers
    runtime.close()


@pytest.mark.parametrize("status", ["associated", "unassociated"])
def test_a_payments_page_is_byte_for_byte_what_it_was_on_postgresql(
    fresh_pg_api: tuple[FlaskClient, Runtime, dict[str, str]], status: str
) -> None:
    client, runtime, headers = fresh_pg_api
    seed_varied(runtime)

    bodies = pages(client, "/api/v1/payments", headers, status=status)

    expected = expected_payments(runtime, status)
    assert len(bodies) > 3
    assert joined(bodies) == expected
    for n, body in enumerate(bodies):
        assert items_bytes(body) == items_bytes(as_sent(client, expected[2 * n : 2 * n + 2]))


def test_the_customer_list_is_byte_for_byte_what_it_was_on_postgresql(
    fresh_pg_api: tuple[FlaskClient, Runtime, dict[str, str]],
) -> None:
    client, runtime, headers = fresh_pg_api
    seed_varied(runtime)

    bodies = pages(client, "/api/v1/customers", headers)

    expected = expected_customers(runtime)
    assert joined(bodies) == expected
    for n, body in enumerate(bodies):
        assert items_bytes(body) == items_bytes(as_sent(client, expected[2 * n : 2 * n + 2]))


def test_a_request_does_not_wait_for_a_token_row_another_transaction_holds(
    fresh_pg_api: tuple[FlaskClient, Runtime, dict[str, str]],
) -> None:
    client, runtime, headers = fresh_pg_api
    with runtime.engine.connect() as holder:
        holder.execute(
            text("SELECT id FROM api_tokens WHERE last_used_at IS NULL FOR UPDATE")
        ).all()

        # its last_used_at is due, but the row is locked: the request skips noting it
        response = client.get("/api/v1/payments", headers=headers)

        assert response.status_code == 200, response.get_data()
        holder.rollback()
    with runtime.sessions.begin() as session:
        assert session.scalars(select(ApiToken.last_used_at)).all() == [None]

    assert client.get("/api/v1/payments", headers=headers).status_code == 200

    with runtime.sessions.begin() as session:
        assert None not in session.scalars(select(ApiToken.last_used_at)).all()


def test_a_done_reversal_is_never_shown_beside_a_payment_not_yet_reversed(
    pg_api: tuple[FlaskClient, Runtime, dict[str, str]],
) -> None:
    """A reversal's result marks the request done and reverses the payment in one commit;
    the view reads two rows, each with the commit it starts under. Here the result is
    committed right after the view's first read of either row."""
    client, runtime, headers = pg_api
    account = f"REV-{uuid.uuid4().hex[:8]}"
    made = client.post(
        "/api/v1/customers", json={"account_number": account, "name": "R"}, headers=headers
    )
    assert made.status_code == 201, made.get_data()
    paid = client.post(
        "/api/v1/payments", json={"account_number": account, "amount": "700"}, headers=headers
    )
    assert paid.status_code == 201, paid.get_data()
    payment_id = paid.get_json()["id"]
    conversation = f"AG_{uuid.uuid4().hex}"
    with runtime.sessions.begin() as session:
        provider = session.get_one(Payment, payment_id).provider
        session.add(
            Reversal(
                payment_id=payment_id,
                provider=provider,
                status=REVERSAL_SENT,
                conversation_id=conversation,
                created_by="test",
            )
        )

    def result_arrives() -> None:
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            recorded = record_reversal_result(
                session,
                ledger,
                ReversalResult(
                    provider=provider,
                    state="reversed",
                    result_code="0",
                    result_description="done",
                    conversation_id=conversation,
                    receipt="RVX0000001",
                ),
            )
        assert recorded.outcome == "reversed"

    arrived: list[bool] = []

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not arrived and ("FROM payments" in statement or "FROM reversals" in statement):
            arrived.append(True)
            result_arrives()

    event.listen(runtime.engine, "after_cursor_execute", after)
    try:
        shown = client.get(f"/api/v1/payments/{payment_id}/reversal", headers=headers)
    finally:
        event.remove(runtime.engine, "after_cursor_execute", after)

    assert arrived == [True]
    assert shown.status_code == 200, shown.get_data()
    state = shown.get_json()
    if state["reversal"]["status"] == "reversed":
        assert state["payment"]["reversal_receipt"] == "RVX0000001"
    # and a fresh read shows both done
    again = client.get(f"/api/v1/payments/{payment_id}/reversal", headers=headers).get_json()
    assert (again["reversal"]["status"], again["payment"]["reversal_receipt"]) == (
        "reversed",
        "RVX0000001",
    )
