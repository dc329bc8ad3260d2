"""Shared fixtures: a throw-away SQLite runtime, apps built on it, samples, tokens."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.auth import create_token
from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from ingest.providers.mpesa import MpesaSettings
from matcher.customers import save_customer
from matcher.db import make_engine
from matcher.migrate import upgrade
from momo.app import create_app

ROOT = Path(__file__).resolve().parents[1]
#: the M-PESA path token of every test app: long and varied enough for core.config to take
PATH_TOKEN = "test-path-token-0123456789abcdefghij"


def mpesa_block(path_token: str | None, **fields: Any) -> dict[str, MpesaSettings]:
    """``Settings.providers`` holding M-PESA's block: ``path_token`` and ``fields``."""
    return {"mpesa": MpesaSettings(path_token=path_token, **fields)}


def samples_dir() -> Path:
    """The provider samples: MOMO_SAMPLES_DIR when set (CI points it at the shared set),
    else the copy kept in tests/samples so a fresh clone tests on its own."""
    configured = os.environ.get("MOMO_SAMPLES_DIR")
    if configured:
        return Path(configured)
    return ROOT / "tests" / "samples" / "mpesa"


def lacking(message: str) -> NoReturn:
    """Skip the test for want of ``message``'s service or tool; under MOMO_REQUIRE_SERVICES=1
    (CI), where everything must be there, fail it instead."""
    if os.environ.get("MOMO_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def sample_bytes(name: str) -> bytes:
    return (samples_dir() / name).read_bytes()


def sample(name: str) -> dict:
    return json.loads(sample_bytes(name))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'momo.db'}",
        providers=mpesa_block(PATH_TOKEN),
        instance_path=tmp_path / "instance",
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A migrated SQLite database; nothing works the queue unless a test does."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    rt = build_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def make_token(runtime: Runtime, role: str, name: str | None = None) -> str:
    with runtime.sessions.begin() as session:
        return create_token(session, name=name or f"test-{role}", role=role)


@pytest.fixture
def operator_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(runtime, 'operator')}"}


@pytest.fixture
def viewer_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(runtime, 'viewer')}"}


def add_customer(runtime: Runtime, account: str, phones: list[str], name: str = "") -> None:
    with runtime.sessions.begin() as session:
        save_customer(
            session,
            account_number=account,
            name=name or account,
            phones=phones,
            region=runtime.settings.default_region,
            actor="test",
        )


def webhook_url(kind: str, token: str = PATH_TOKEN) -> str:
    return f"/webhooks/mpesa/{token}/{kind}"


PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """A problem+json answer with this status and code, and a detail for the human."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body: dict[str, Any] = response.get_json(force=True)
    assert body["code"] == code
    assert body["status"] == status
    assert body["detail"]
    return body


def post_confirmation(
    client: FlaskClient,
    *,
    code: str,
    when: str = "20251103143015",
    msisdn: str = "254712345678",
    ref: str = "",
    amount: str = "1500.00",
) -> None:
    """Post a paybill confirmation (the shared sample with some fields changed)."""
    doc = sample("c2b_confirmation_paybill_plain.json")
    doc.update(TransID=code, TransTime=when, MSISDN=msisdn, BillRefNumber=ref, TransAmount=amount)
    response = client.post(
        webhook_url("c2b/confirmation"), data=json.dumps(doc), content_type="application/json"
    )
    assert response.status_code == 200, response.get_data(as_text=True)


#: ``build_client(**overrides)``: a test client and its runtime
BuildClient = Callable[..., tuple[FlaskClient, Runtime]]


@pytest.fixture
def build_client(runtime: Runtime) -> Iterator[BuildClient]:
    """An app on the same migrated database as ``runtime``, with some settings changed."""
    built: list[Runtime] = []

    def build(**overrides: object) -> tuple[FlaskClient, Runtime]:
        rt = build_runtime(runtime.settings.with_overrides(**overrides))
        built.append(rt)
        app = create_app(runtime=rt)
        app.config["TESTING"] = True
        return app.test_client(), rt

    yield build
    for rt in built:
        rt.close()


def pytest_report_header(config: pytest.Config) -> str:
    """Said before any test runs: the integration suite empties a Redis database."""
    url = os.environ.get("MOMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    return (
        f"integration tests empty the Redis database {url} (FLUSHDB) when they start and "
        "use the next one for stacks of their own; MOMO_TEST_REDIS_URL picks another"
    )
