"""The operator API's OpenAPI document as test data: operations, parameters and bodies.

Tests that try something on every operation take the operations from here, so a new
endpoint is tried as soon as it is documented (test_openapi.py checks every route is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from api.openapi import openapi_spec
from core.config import Settings

DOCUMENT = openapi_spec(Settings())
#: a value of the right kind for each path parameter
PATH_VALUES = {
    "account_number": "ACC1042",
    "code": "DAY-1GB",
    "payment_id": "1",
    "request_id": "1",
    "inbox_id": "1",
    "token_id": "1",
}


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    spec: dict[str, Any]

    def url(self, **values: str) -> str:
        """The path with its parameters filled (PATH_VALUES, or ``values``), each quoted."""
        filled = {**PATH_VALUES, **values}
        return self.path.format(**{k: quote(v, safe="") for k, v in filled.items()})

    def parameters(self, where: str) -> list[str]:
        return [
            p["name"] for p in map(resolve, self.spec.get("parameters", [])) if p["in"] == where
        ]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = self.spec.get("requestBody")
        return resolve(body["content"]["application/json"]["schema"]) if body else None

    @property
    def body_example(self) -> dict[str, Any]:
        example: dict[str, Any] = self.spec["requestBody"]["content"]["application/json"]["example"]
        return example

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` points at within the document."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def api_operations() -> list[Operation]:
    """Every operation under /api/v1."""
    return [
        Operation(path, method.upper(), operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/")
    ]


def writes() -> list[Operation]:
    """Every operation that takes a JSON body."""
    return [operation for operation in api_operations() if operation.body_schema is not None]
