"""api.openapi: the operator API's contract is valid, complete, role-true, and kept by the app.

The last part runs schemathesis in-process against the app on a migrated SQLite
with data in it: no 5xx, every status, content type and body as documented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from sqlalchemy import String

from api.auth import ROLES
from api.openapi import MAX_TOKEN_NAME, openapi_spec
from core.config import Settings
from core.runtime import Runtime
from matcher.models import AuditEvent, IdempotencyRecord, LedgerEntry, Payment, Purchase
from tasks.work import drain_inbox
from tests.conftest import make_token, sample, sample_bytes, webhook_url
from tests.unit.contract import resolve

PROBLEM = "application/problem+json"
#: Flask answers these for every route by itself; they are not part of the contract
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
#: the document does not depend on the deployment except for words in descriptions
DOCUMENT = openapi_spec(Settings())


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method.upper(), operation


def app_operations(app: Flask) -> dict[tuple[str, str], str]:
    """(documented-style path, method) -> endpoint, for /api/v1, /healthz and /readyz."""
    found: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/v1/") or rule.rule in ("/healthz", "/readyz")):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - AUTOMATIC_METHODS):
            found[(path, method)] = rule.endpoint
    return found


# --- the document is OpenAPI 3.1 ----------------------------------------------------------


class TestDocument:
    def test_document_is_valid_openapi_3_1(self, settings: Settings) -> None:
        document = openapi_spec(settings)
        assert document["openapi"].startswith("3.1")
        errors = [str(error) for error in OPENAPI_31_VALIDATOR.iter_errors(document)]
        assert errors == []

    def test_every_reference_resolves(self) -> None:
        def refs(node: object) -> Iterator[str]:
            if isinstance(node, dict):
                if isinstance(node.get("$ref"), str):
                    yield node["$ref"]
                for value in node.values():
                    yield from refs(value)
            elif isinstance(node, list):
                for value in node:
                    yield from refs(value)

        seen = set(refs(DOCUMENT))
        assert seen
        for ref in seen:
            assert ref.startswith("#/"), ref
            target: Any = DOCUMENT
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                assert part in target, f"{ref} does not resolve"
                target = target[part]

    def test_operation_ids_are_unique(self) -> None:
        ids = [operation["operationId"] for _, _, operation in operations(DOCUMENT)]
        assert len(ids) == len(set(ids))

    def test_every_path_parameter_is_declared_and_required(self) -> None:
        parameters = DOCUMENT["components"]["parameters"]
        for path, _, operation in operations(DOCUMENT):
            declared = {
                p["name"]
                for p in (
                    parameters[r["$ref"].rsplit("/", 1)[1]] if "$ref" in r else r
                    for r in operation.get("parameters", [])
                )
                if p["in"] == "path" and p["required"]
            }
            assert declared == set(re.findall(r"{([^}]+)}", path)), path

    def test_every_error_answer_is_a_problem(self) -> None:
        for path, method, operation in operations(DOCUMENT):
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and path not in ("/healthz", "/readyz"):
                    ref = answer["$ref"].rsplit("/", 1)[1]
                    content = DOCUMENT["components"]["responses"][ref]["content"]
                    assert list(content) == [PROBLEM], (method, path, status)

    def test_every_post_and_patch_documents_a_body_that_takes_no_other_fields(self) -> None:
        for path, method, operation in operations(DOCUMENT):
            if method in ("POST", "PATCH"):
                content = operation["requestBody"]["content"]["application/json"]
                schema = resolve(content["schema"])
                assert schema["additionalProperties"] is False, (method, path)
                assert set(schema.get("required", [])) <= set(schema["properties"])
                assert set(content["example"]) <= set(schema["properties"]), (method, path)

    def test_app_serves_the_document_without_a_token(
        self, client: FlaskClient, settings: Settings
    ) -> None:
        response = client.get("/api/v1/openapi.json")

        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert response.get_json() == json.loads(json.dumps(openapi_spec(settings)))


# --- the document and the app have the same routes ----------------------------------------


class TestCompleteness:
    def test_every_route_is_documented_with_its_methods(self, app: Flask) -> None:
        documented = {(path, method) for path, method, _ in operations(DOCUMENT)}
        undocumented = sorted(set(app_operations(app)) - documented)
        assert undocumented == [], "add these routes to api/openapi.py"

    def test_every_documented_operation_exists(self, app: Flask) -> None:
        documented = {(path, method) for path, method, _ in operations(DOCUMENT)}
        assert sorted(documented - set(app_operations(app))) == []

    def test_operation_ids_name_the_views(self, app: Flask) -> None:
        endpoints = app_operations(app)
        for path, method, operation in operations(DOCUMENT):
            assert endpoints[(path, method)].rsplit(".", 1)[-1] == operation["operationId"]


# --- roles: what the document says each operation needs, the app enforces ------------------

ROLE_OPERATIONS = [
    pytest.param(path, method, operation["x-momo-role"], id=f"{method} {path}")
    for path, method, operation in operations(DOCUMENT)
    if "x-momo-role" in operation
]


def placeholder_url(path: str) -> str:
    """The path with every parameter filled by a value that names nothing (999999, NOBODY-1)."""
    operation = next(op for p, _, op in operations(DOCUMENT) if p == path)
    values = {
        parameter["name"]: "999999" if parameter["schema"]["type"] == "integer" else "NOBODY-1"
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "path"
    }
    return path.format(**values)


class TestRoles:
    def test_each_view_carries_the_documented_role(self, app: Flask) -> None:
        endpoints = app_operations(app)
        for path, method, operation in operations(DOCUMENT):
            view = app.view_functions[endpoints[(path, method)]]
            assert getattr(view, "required_role", None) == operation.get("x-momo-role"), (
                method,
                path,
            )
            assert operation.get("x-momo-role") in (*ROLES, None)

    def test_only_the_document_and_health_need_no_token(self) -> None:
        open_ = sorted(
            (method, path)
            for path, method, operation in operations(DOCUMENT)
            if operation.get("security") == []
        )
        assert open_ == [("GET", "/api/v1/openapi.json"), ("GET", "/healthz"), ("GET", "/readyz")]
        for path, method, operation in operations(DOCUMENT):
            assert ("x-momo-role" in operation) == (operation.get("security") != []), (
                method,
                path,
            )

    @pytest.mark.parametrize(("path", "method", "role"), ROLE_OPERATIONS)
    def test_documented_role_is_enforced(
        self, client: FlaskClient, runtime: Runtime, path: str, method: str, role: str
    ) -> None:
        url = placeholder_url(path)
        body: dict[str, Any] | None = {} if method in ("POST", "PATCH") else None

        def call(headers: dict[str, str]) -> Any:
            return client.open(url, method=method, json=body, headers=headers)

        anonymous = call({})
        assert anonymous.status_code == 401
        assert anonymous.mimetype == PROBLEM
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert call({"Authorization": "Bearer momo_not-a-token"}).status_code == 401

        needed = ROLES.index(role)
        for lower in ROLES[:needed]:
            refused = call({"Authorization": f"Bearer {make_token(runtime, lower)}"})
            assert refused.status_code == 403, (lower, refused.get_data(as_text=True))
            assert refused.get_json()["code"] == "forbidden"
        for enough in ROLES[needed:]:
            allowed = call({"Authorization": f"Bearer {make_token(runtime, enough)}"})
            assert allowed.status_code not in (401, 403), (enough, allowed.get_json())


# --- schemathesis: the running app keeps the contract --------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
#: Africa/Nairobi kept local mean time (+02:27:16) until May 1908


def seed(client: FlaskClient, runtime: Runtime, headers: dict[str, str]) -> None:
    """Customers, a plan, payments of every kind and a failed attempt, so lists are not empty."""
    for body in (
        {"account_number": "ACC1042", "name": "Wanjiru", "phones": ["0712345678"]},
        {"account_number": "ACC2001", "name": "Otieno", "phones": ["0722000111"]},
    ):
        assert client.post("/api/v1/customers", json=body, headers=headers).status_code == 201
    plan = {"code": "DAY-1GB", "name": "Day 1GB", "price": "50.00", "validity_minutes": 1440}
    assert client.post("/api/v1/plans", json=plan, headers=headers).status_code == 201

    for code, msisdn, ref in (
        ("TKS0000001", "254712345678", "ACC1042"),  # matched by account
        ("TKS0000002", "254799000000", ""),  # nobody's phone: unassociated
    ):
        doc = sample("c2b_confirmation_paybill_plain.json")
        doc.update(TransID=code, MSISDN=msisdn, BillRefNumber=ref, TransAmount="1500.00")
        response = client.post(
            webhook_url("c2b/confirmation"), data=json.dumps(doc), content_type="application/json"
        )
        assert response.status_code == 200
    response = client.post(
        webhook_url("stk"),
        data=sample_bytes("stk_callback_cancelled.json"),
        content_type="application/json",
    )
    assert response.status_code == 200
    drain_inbox(runtime)

    manual = {"account_number": "ACC2001", "amount": "200.00", "note": "cash at the desk"}
    made = client.post("/api/v1/payments", json=manual, headers=headers)
    assert made.status_code == 201, made.get_json()
    buy = client.post(
        "/api/v1/customers/ACC1042/purchases", json={"plan": "DAY-1GB"}, headers=headers
    )
    assert buy.status_code == 201, buy.get_json()
    gone = client.post(
        f"/api/v1/payments/{made.get_json()['id']}/disassociate",
        json={"reason": "wrong customer"},
        headers=headers,
    )
    assert gone.status_code == 200, gone.get_json()


@pytest.fixture
def seeded_admin(client: FlaskClient, runtime: Runtime) -> dict[str, str]:
    # a few tokens first, so a fuzzed DELETE /tokens/{small id} rarely revokes the admin's own
    for n in range(5):
        make_token(runtime, "viewer", name=f"spare-{n}")
    headers = {"Authorization": f"Bearer {make_token(runtime, 'admin', name='fuzzer')}"}
    seed(client, runtime, headers)
    return headers


def test_seed_fills_every_list(client: FlaskClient, seeded_admin: dict[str, str]) -> None:
    for url in (
        "/api/v1/payments",
        "/api/v1/payments?status=unassociated",
        "/api/v1/customers",
        "/api/v1/customers/ACC1042/purchases",
        "/api/v1/plans",
        "/api/v1/tokens",
        "/api/v1/transactions?kind=failed_attempt",
        "/api/v1/transactions?kind=disassociation",
    ):
        assert client.get(url, headers=seeded_admin).get_json()["items"], url


# /readyz takes no input and answers 503 by design here (no worker runs in a unit test):
# test_readyz_answers_in_its_documented_shape holds it to its schema
@SCHEMA.exclude(path="/readyz").parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    # the same examples every run: a failure here is reproducible, never a flake
    derandomize=True,
    # one seeded database serves every example of an operation; slow data is fine here
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_app_keeps_the_contract(case: Any, app: Flask, seeded_admin: dict[str, str]) -> None:
    case.call_and_validate(app=app, headers=seeded_admin, checks=CHECKS)


# --- inputs that once escaped as 5xx or broke the contract --------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/api/v1/payments", '{"account_number": "ACC1042", "amount": "1e999999"}'),
        ("POST", "/api/v1/payments", '{"account_number": "ACC1042", "amount": 1e999999}'),
        (
            "POST",
            "/api/v1/plans",
            '{"code": "X", "name": "X", "price": "1e999999", "validity_minutes": 5}',
        ),
        ("PATCH", "/api/v1/plans/DAY-1GB", '{"price": 1E+999999}'),
    ],
    ids=["payment-string", "payment-number", "new-plan", "plan-change"],
)
def test_an_absurd_exponent_in_an_amount_is_a_400(
    client: FlaskClient, seeded_admin: dict[str, str], method: str, url: str, body: str
) -> None:
    response = client.open(
        url, method=method, data=body, content_type="application/json", headers=seeded_admin
    )
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_amount"


@pytest.mark.parametrize(
    "query",
    ["to=0001-01-01", "to=9999-12-31&from=9999-12-30", "period=month&to=9999-12-31"],
)
def test_revenue_at_the_ends_of_the_calendar_is_a_400(
    client: FlaskClient, seeded_admin: dict[str, str], query: str
) -> None:
    response = client.get(f"/api/v1/dashboard/revenue?{query}", headers=seeded_admin)
    assert response.status_code == 400


def test_revenue_series_times_are_rfc3339_for_any_date(
    client: FlaskClient, seeded_admin: dict[str, str]
) -> None:
    response = client.get(
        "/api/v1/dashboard/revenue?period=month&from=1900-01-01&to=1900-02-01",
        headers=seeded_admin,
    )
    assert response.status_code in (200, 400)
    for bucket in response.get_json().get("series", []):
        for moment in (bucket["start"], bucket["end"]):
            assert re.fullmatch(r".*[+-]\d\d:\d\d", moment), moment


def test_revoking_a_token_id_past_64_bits_is_a_404(
    client: FlaskClient, seeded_admin: dict[str, str]
) -> None:
    response = client.delete(f"/api/v1/tokens/{2**64}", headers=seeded_admin)
    assert response.status_code == 404


def test_the_longest_token_name_fits_every_actor_column() -> None:
    actor = "token:" + "x" * MAX_TOKEN_NAME
    columns = [
        AuditEvent.__table__.c.actor,
        IdempotencyRecord.__table__.c.actor,
        LedgerEntry.__table__.c.created_by,
        Payment.__table__.c.created_by,
        Purchase.__table__.c.created_by,
    ]
    lengths = [column.type.length for column in columns if isinstance(column.type, String)]
    assert len(lengths) == len(columns)
    assert all(length is None or len(actor) <= length for length in lengths)


def test_readyz_answers_in_its_documented_shape(client: FlaskClient) -> None:
    answer = client.get("/readyz")

    # no worker has been seen in a unit test: not ready, the worker named
    assert answer.status_code == 503
    body = answer.get_json()
    shape = DOCUMENT["components"]["schemas"]["Readiness"]
    assert set(shape["required"]) <= set(body) <= set(shape["properties"])
    assert body["status"] in shape["properties"]["status"]["enum"]
    assert all(isinstance(value, str) for value in body.values())
    assert (body["status"], body["worker"]) == ("not_ready", "not seen yet")
