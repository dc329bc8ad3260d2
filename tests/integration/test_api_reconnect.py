"""The operator API without a ping before each use of a pooled connection.

A database restart ends every pooled connection; the next request finds it dead at its
first statement, the token check, and takes a new connection. A database that cannot be
reached at all is a 503 problem+json that says so, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from sqlalchemy.engine import make_url

from core.config import Settings
from matcher.db import make_engine
from matcher.migrate import upgrade
from momo.app import create_api_app
from tests.conftest import PATH_TOKEN, assert_problem, make_token, mpesa_block
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def api(fresh_pg_url: str) -> Iterator[tuple[Flask, dict[str, str]]]:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    engine.dispose()
    # a deadline no loaded machine reaches: these tests ask whether a dropped connection is
    # replaced, which is answered at once either way, not how fast a new one is made
    settings = Settings(
        database_url=fresh_pg_url, providers=mpesa_block(PATH_TOKEN), db_write_timeout_seconds=30
    )
    app = create_api_app(settings)
    app.config["TESTING"] = True
    runtime = app.extensions["momo"]
    headers = {"Authorization": f"Bearer {make_token(runtime, 'operator')}"}
    yield app, headers
    runtime.close()


def end_every_connection(url: str) -> int:
    """What a restart does to the app's pooled connections: the server ends them."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        return len(
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        )


def test_the_api_engine_does_not_ping_before_each_use(
    api: tuple[Flask, dict[str, str]],
) -> None:
    app, _ = api

    assert app.extensions["momo"].engine.pool._pre_ping is False


def test_a_read_after_the_database_ended_the_pooled_connections_is_answered(
    api: tuple[Flask, dict[str, str]], fresh_pg_url: str
) -> None:
    app, headers = api
    client = app.test_client()
    assert client.get("/api/v1/payments", headers=headers).status_code == 200

    assert end_every_connection(fresh_pg_url) >= 1
    response = client.get("/api/v1/payments", headers=headers)

    assert response.status_code == 200, response.get_data()
    assert response.get_json()["items"] == []


def test_the_health_check_after_the_database_ended_the_pooled_connections_is_ok(
    api: tuple[Flask, dict[str, str]], fresh_pg_url: str
) -> None:
    app, _ = api
    client = app.test_client()
    assert client.get("/healthz").status_code == 200

    assert end_every_connection(fresh_pg_url) >= 1
    response = client.get("/healthz")

    assert response.status_code == 200, response.get_data()
    assert response.get_json()["database"] == "ok"


def test_a_change_after_the_database_ended_the_pooled_connections_is_made_once(
    api: tuple[Flask, dict[str, str]], fresh_pg_url: str
) -> None:
    app, headers = api
    client = app.test_client()
    assert client.get("/api/v1/customers", headers=headers).status_code == 200

    assert end_every_connection(fresh_pg_url) >= 1
    created = client.post(
        "/api/v1/customers",
        json={"account_number": "ACC1", "name": "Wanjiku Kamau", "phones": ["0712345678"]},
        headers=headers,
    )

    assert created.status_code == 201, created.get_data()
    listed = client.get("/api/v1/customers", headers=headers).get_json()["items"]
    assert [c["account_number"] for c in listed] == ["ACC1"]


def test_a_database_that_cannot_be_reached_is_a_503_that_says_so() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/momo"
    app = create_api_app(Settings(database_url=url, providers=mpesa_block(PATH_TOKEN)))
    try:
        response = app.test_client().get(
            "/api/v1/payments", headers={"Authorization": "Bearer momo_anything"}
        )

        body = assert_problem(response, 503, "database_unavailable")
        assert "Try again" in body["detail"]
    finally:
        app.extensions["momo"].close()
