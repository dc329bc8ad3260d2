"""core.web and ingest.fast: what every answer says to browsers and caches.

Every answer carries ``X-Content-Type-Options: nosniff`` (API, webhooks through Flask
or the fast path, /healthz, errors of every kind); every operator answer also carries
``Cache-Control: no-store``: they hold token secrets, names, phones and balances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from core.config import Settings
from core.runtime import Runtime
from core.web import MAX_BODY_BYTES, build_app
from ingest.fast import FastAccept
from ingest.providers import build_runtime
from momo.app import create_app
from tests.conftest import (
    PATH_TOKEN,
    add_customer,
    make_token,
    mpesa_block,
    sample_bytes,
    webhook_url,
)

API = "/api/v1"


def assert_nosniff(response: TestResponse) -> None:
    assert response.headers.get("X-Content-Type-Options") == "nosniff", dict(response.headers)


def assert_private(response: TestResponse) -> None:
    """An operator answer: nosniff, and kept by no browser or proxy."""
    assert_nosniff(response)
    assert response.headers.get("Cache-Control") == "no-store", dict(response.headers)


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(runtime, 'admin', name='test-admin')}"}


class TestOperatorAnswers:
    def test_answers_with_personal_data_and_secrets_are_not_stored_by_caches(
        self, client: FlaskClient, runtime: Runtime, admin_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"], name="Wanjiku")
        key = {"Idempotency-Key": "k-1"}
        payment = {"account_number": "ACC1042", "amount": "10.00"}
        answers = [
            client.get(f"{API}/customers/ACC1042", headers=admin_headers),
            client.get(f"{API}/payments", headers=admin_headers),
            client.post(
                f"{API}/tokens", json={"name": "n", "role": "viewer"}, headers=admin_headers
            ),
            client.post(f"{API}/payments", json=payment, headers=admin_headers | key),
            client.post(f"{API}/payments", json=payment, headers=admin_headers | key),
            client.get(f"{API}/openapi.json"),
        ]

        assert [a.status_code for a in answers] == [200, 200, 201, 201, 201, 200]
        assert answers[4].headers["Idempotent-Replayed"] == "true"
        for answer in answers:
            assert_private(answer)

    def test_every_kind_of_error_is_not_stored_by_caches_either(
        self, client: FlaskClient, runtime: Runtime, admin_headers: dict[str, str]
    ) -> None:
        viewer = {"Authorization": f"Bearer {make_token(runtime, 'viewer')}"}
        answers = {
            400: client.get(f"{API}/payments", query_string={"limit": "0"}, headers=admin_headers),
            401: client.get(f"{API}/payments"),
            403: client.post(f"{API}/plans", json={}, headers=viewer),
            404: client.get(f"{API}/customers/NOBODY", headers=admin_headers),
            405: client.put(f"{API}/payments", headers=admin_headers),
            413: client.post(
                f"{API}/payments",
                data=b"x" * (MAX_BODY_BYTES + 1),
                content_type="application/json",
                headers=admin_headers,
            ),
            422: client.post(f"{API}/payments", json={"currency": "USD"}, headers=admin_headers),
        }

        for status, answer in answers.items():
            assert answer.status_code == status, answer.get_data(as_text=True)
            assert_private(answer)

    def test_an_unreachable_database_answer_is_not_stored_by_caches(self, tmp_path: Path) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'no-such-dir' / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
        runtime = build_runtime(settings)
        try:
            client = create_app(runtime=runtime).test_client()

            answer = client.get(f"{API}/payments", headers={"Authorization": "Bearer momo_x"})
            health = client.get("/healthz")
        finally:
            runtime.close()

        assert answer.status_code == 503
        assert_private(answer)
        assert health.status_code == 503
        assert_nosniff(health)


def crashing_app(runtime: Runtime) -> Flask:
    """An app with a view under the API and one under the webhooks that both raise."""
    crash = Blueprint("crash", __name__)

    def boom() -> Any:
        raise RuntimeError("a bug")

    crash.add_url_rule(f"{API}/boom", view_func=boom)
    crash.add_url_rule("/webhooks/boom", view_func=boom)
    return build_app(runtime, crash)


class TestUnexpectedErrors:
    def test_an_unexpected_error_on_the_api_is_a_private_500(self, runtime: Runtime) -> None:
        answer = crashing_app(runtime).test_client().get(f"{API}/boom")

        assert answer.status_code == 500
        assert answer.mimetype == "application/problem+json"
        assert_private(answer)

    def test_an_unexpected_error_on_a_webhook_is_a_500_with_nosniff(self, runtime: Runtime) -> None:
        answer = crashing_app(runtime).test_client().get("/webhooks/boom")

        assert answer.status_code == 500
        assert_nosniff(answer)


class TestWebhookAndHealthAnswers:
    def test_health_answers_with_nosniff(self, client: FlaskClient) -> None:
        answer = client.get("/healthz")

        assert answer.status_code == 200
        assert_nosniff(answer)

    def test_an_acknowledgement_from_the_fast_path_has_nosniff(self, app: Flask) -> None:
        fast = app.extensions["momo_fast_accept"]
        assert isinstance(fast, FastAccept)
        handed_over: list[str] = []
        inner = fast.inner

        def watched(environ: Any, start_response: Any) -> Any:
            handed_over.append(environ["PATH_INFO"])
            return inner(environ, start_response)

        fast.inner = watched

        answer = app.test_client().post(
            webhook_url("c2b/confirmation"),
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            content_type="application/json",
        )

        assert answer.status_code == 200
        assert handed_over == []  # the fast path answered, not Flask
        assert_nosniff(answer)

    @pytest.mark.parametrize(
        ("path", "body", "status"),
        [
            (webhook_url("c2b/validation"), "c2b_validation.json", 200),
            (webhook_url("c2b/confirmation", token="wrong-token"), None, 404),
            (webhook_url("c2b/confirmation"), None, 400),
        ],
        ids=["validation", "wrong-token", "not-the-providers-shape"],
    )
    def test_webhook_answers_from_flask_have_nosniff(
        self, client: FlaskClient, path: str, body: str | None, status: int
    ) -> None:
        data = sample_bytes(body) if body else b'{"not": "a callback"}'

        answer = client.post(path, data=data, content_type="application/json")

        assert answer.status_code == status, answer.get_data(as_text=True)
        assert_nosniff(answer)
