"""The operator API's contract: an OpenAPI 3.1 document of every endpoint under /api/v1.

The document is written by hand to say what the views do, and kept true by
tests/unit/test_openapi.py: every route is documented with its methods and the
role it needs, and schemathesis checks that answers match the schemas.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Response, jsonify

from api.auth import MAX_TOKEN_NAME, ROLES
from api.common import DEFAULT_LIMIT, MAX_IDEMPOTENCY_KEY, MAX_LIMIT, Fields, bp, runtime
from api.customers import CUSTOMER_CHANGE_BODY, NEW_CUSTOMER_BODY, PURCHASE_ORDER_BODY
from api.inbox import REPLAY_BODY
from api.lookups import LOOKUP_BODY, REVERSAL_BODY
from api.payment_requests import CUSTOMER_REQUEST_BODY, REQUEST_BODY
from api.payments import ASSOCIATION_BODY, DISASSOCIATION_BODY, NEW_PAYMENT_BODY
from api.plans import NEW_PLAN_BODY, PLAN_CHANGE_BODY
from api.tokens import TOKEN_ORDER_BODY
from core.config import Settings
from ingest.providers import ADAPTERS
from matcher.customers import MAX_ACCOUNT_LENGTH, MAX_NAME_LENGTH, MAX_PHONES
from matcher.ledger import DISASSOCIATION, MANUAL_PAYMENT, PAYMENT_CREDIT, PURCHASE, REVERSAL
from matcher.models import (
    ASSOCIATED,
    INBOX_STATUSES,
    LOOKUP_STATUSES,
    REQUEST_STATUSES,
    UNASSOCIATED,
)
from matcher.money import MAX_AMOUNT_MINOR, format_minor
from matcher.plans import MAX_VALIDITY_MINUTES
from matcher.reconcile import LISTS as RECONCILIATION_LISTS
from matcher.reports import MAX_BUCKETS, PERIODS, TRANSACTION_KINDS, TRANSACTION_STATUSES
from matcher.search import MAX_QUERY_LENGTH

API = "/api/v1"
MAX_INT64 = 2**63 - 1


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The contract itself; documentation, so it needs no token."""
    return jsonify(openapi_spec(runtime().settings))


# --- building blocks ----------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _json(schema)}
    if headers:
        answer["headers"] = headers
    return answer


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


#: ``status`` on the payments lists and their count: which list
_WHICH_LIST = _query(
    "status",
    {"type": "string", "enum": [ASSOCIATED, UNASSOCIATED], "default": ASSOCIATED},
    "Which list.",
)


def _path(name: str, schema: dict[str, Any], description: str, example: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
        "example": example,
    }


def _object(fields: Fields, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A request body's schema: exactly the fields its view reads (``api.common.json_body``
    refuses others with 422 and names missing ones), so the two cannot drift apart."""
    if set(properties) != set(fields.names):
        raise AssertionError(f"documented {sorted(properties)}, the view takes {fields.names}")
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
    if fields.required:
        schema["required"] = list(fields.required)
    return {**schema, **extra, "properties": properties}


def _body(
    schema: dict[str, Any], example: dict[str, Any], *, required: bool = True
) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


PROBLEMS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "UnprocessableContent",
    502: "BadGateway",
    503: "ServiceUnavailable",
}

LIMIT = {"$ref": "#/components/parameters/limit"}
CURSOR = {"$ref": "#/components/parameters/cursor"}
SEARCH = {"$ref": "#/components/parameters/q"}
TIME_FROM = {"$ref": "#/components/parameters/from"}
TIME_TO = {"$ref": "#/components/parameters/to"}
IDEMPOTENCY_KEY = {"$ref": "#/components/parameters/Idempotency-Key"}
ACCOUNT = _path(
    "account_number",
    {"type": "string", "minLength": 1},
    "The customer's account number, in any letter case (ACC1042 and acc1042 are one customer).",
    "ACC1042",
)
PAYMENT_ID = _path(
    "payment_id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT64},
    "The payment's id; anything else is answered 404.",
    2,
)
INBOX_ID = _path(
    "inbox_id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT64},
    "The inbox row's id; anything else is answered 404.",
    1,
)
REQUEST_ID = _path(
    "request_id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT64},
    "The payment request's id; anything else is answered 404.",
    1,
)
LOOKUP_ID = _path(
    "lookup_id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT64},
    "The lookup's id; anything else is answered 404.",
    1,
)
PLAN_CODE = _path("code", {"type": "string", "minLength": 1}, "The plan's code.", "DAY-1GB")


def _operation(
    endpoint: str,
    role: str,
    summary: str,
    *,
    answers: dict[int, dict[str, Any]],
    problems: tuple[int, ...] = (),
    parameters: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    change: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation needing a bearer token of ``role``; ``change`` ones honour Idempotency-Key.

    Every one may answer 400: a NUL or lone surrogate in any parameter is refused.
    """
    statuses = {400, 401, 403, 503, *problems}
    if change:
        # a malformed Idempotency-Key is 400; a reused one with another request is 422
        statuses |= {400, 422}
        parameters = (*parameters, IDEMPOTENCY_KEY)
    if body is not None:
        statuses |= {400, 413}
    responses: dict[str, Any] = {str(status): answer for status, answer in answers.items()}
    for status in sorted(statuses):
        responses[str(status)] = {"$ref": f"#/components/responses/{PROBLEMS[status]}"}
    operation: dict[str, Any] = {
        "operationId": endpoint,
        "summary": summary,
        "x-momo-role": role,
        "security": [{"bearerAuth": []}],
        "responses": dict(sorted(responses.items())),
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = body
    return operation


# --- schemas ------------------------------------------------------------------------------


def _schemas(settings: Settings) -> dict[str, Any]:
    max_amount = format_minor(MAX_AMOUNT_MINOR)
    money = {
        "type": "string",
        "pattern": r"^-?[0-9]+\.[0-9]{2}$",
        "description": f"An amount in {settings.currency} as a decimal string with two places.",
        "examples": ["1500.00"],
    }
    amount_in = {
        "description": (
            f"A positive amount of at most {max_amount}, with at most two decimal places: "
            'a decimal string such as "1500.00" (preferred), or a JSON number such as 1500 '
            "or 1500.5."
        ),
        "anyOf": [
            {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]{1,2})?\s*$"},
            {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_MINOR // 100},
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_AMOUNT_MINOR // 100,
                "multipleOf": 0.01,
            },
        ],
        "examples": ["1500.00", 1500],
    }
    moment = {"type": "string", "format": "date-time"}
    text_or_null = {"type": ["string", "null"]}
    payment = {
        "type": "object",
        "description": (
            "A payment as in the lists. Unassociated payments also carry `reason` "
            "(no_match, shared_phone, invalid_phone, invalid_reference, disassociated, "
            "reversed, ...) "
            "and `candidates`."
        ),
        "required": [
            "id",
            "code",
            "provider",
            "channel",
            "account_number",
            "phone",
            "payer_name",
            "amount",
            "currency",
            "paid_at",
            "status",
            "match_method",
            "account_reference",
            "reference",
            "confirmed_at",
            "confirmed_by",
            "reversed_at",
            "reversal_receipt",
        ],
        "properties": {
            "id": {"type": "integer"},
            "code": {"type": "string", "description": "The receipt code, e.g. SJK4H7Y2ZQ."},
            "provider": {"type": "string", "examples": ["mpesa", "manual"]},
            "channel": {"type": "string", "examples": ["c2b", "stk", "manual"]},
            "account_number": {
                **text_or_null,
                "description": "The customer's account number; null while unassociated.",
            },
            "phone": {**text_or_null, "description": "The payer's phone in E.164, when known."},
            "payer_name": text_or_null,
            "amount": _ref("Money"),
            "currency": {"type": "string", "examples": [settings.currency]},
            "paid_at": moment,
            "status": {"type": "string", "enum": [ASSOCIATED, UNASSOCIATED]},
            "match_method": {
                **text_or_null,
                "description": (
                    "How the customer was found: account_number, account_phone, phone, "
                    "phone_hash or manual; null while unassociated."
                ),
            },
            "account_reference": {
                **text_or_null,
                "description": "What the payer typed as account.",
            },
            "reference": {
                **text_or_null,
                "description": "The operator's reference for a payment recorded by hand.",
            },
            "confirmed_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": (
                    "When the provider's own record of a payment recorded by hand arrived "
                    "(it then carries the payer's phone, name and time); null otherwise."
                ),
            },
            "confirmed_by": {
                "type": ["string", "null"],
                "enum": ["callback", "pull", "statement", "lookup", None],
                "description": "Which kind of provider record confirmed it.",
            },
            "reversed_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": (
                    "When the provider gave the money back to the payer (a reversal); the "
                    "payment is then unassociated with reason `reversed`. Null otherwise."
                ),
            },
            "reversal_receipt": {
                **text_or_null,
                "description": "The provider's receipt of the reversal, when it named one.",
            },
            "reason": {**text_or_null, "description": "Why the payment is unassociated."},
            "candidates": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Account numbers that share the payer's phone.",
            },
        },
        "if": {"properties": {"status": {"const": UNASSOCIATED}}},
        "then": {"required": ["reason", "candidates"]},
    }
    ledger_line = {
        "type": "object",
        "required": ["id", "kind", "account_number", "amount", "created_by", "note", "at"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {
                "type": "string",
                "examples": [PAYMENT_CREDIT, MANUAL_PAYMENT, DISASSOCIATION, REVERSAL, PURCHASE],
            },
            "account_number": text_or_null,
            "amount": _ref("Money"),
            "created_by": {"type": "string"},
            "note": text_or_null,
            "at": moment,
        },
    }
    audit_event = {
        "type": "object",
        "required": ["action", "actor", "at", "before", "after"],
        "properties": {
            "action": {"type": "string", "examples": ["payment.associate"]},
            "actor": {"type": "string", "examples": ["token:alice"]},
            "at": moment,
            "before": {"type": ["object", "null"]},
            "after": {"type": ["object", "null"]},
        },
    }
    payment_detail = {
        "allOf": [
            _ref("Payment"),
            {
                "type": "object",
                "required": [
                    "msisdn",
                    "msisdn_kind",
                    "business_short_code",
                    "transaction_type",
                    "note",
                    "created_by",
                    "created_at",
                    "inbox_id",
                    "history",
                ],
                "properties": {
                    "msisdn": {**text_or_null, "description": "The phone as the provider sent it."},
                    "msisdn_kind": {
                        "type": "string",
                        "examples": ["phone", "hashed", "masked", "invalid", "missing"],
                    },
                    "business_short_code": text_or_null,
                    "transaction_type": text_or_null,
                    "note": text_or_null,
                    "created_by": text_or_null,
                    "created_at": moment,
                    "inbox_id": {"type": ["integer", "null"]},
                    "history": {
                        "type": "object",
                        "required": ["ledger", "events"],
                        "properties": {
                            "ledger": {"type": "array", "items": _ref("LedgerLine")},
                            "events": {"type": "array", "items": _ref("AuditEvent")},
                        },
                    },
                },
            },
        ]
    }
    recorded = {
        "allOf": [
            _ref("Payment"),
            {
                "type": "object",
                "required": ["balance"],
                "properties": {"balance": _ref("Money")},
            },
        ]
    }
    customer = {
        "type": "object",
        "required": [
            "account_number",
            "name",
            "phones",
            "balance",
            "currency",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "account_number": {"type": "string"},
            "name": {"type": "string"},
            "phones": {"type": "array", "items": {"type": "string", "examples": ["+254712345678"]}},
            "balance": _ref("Money"),
            "currency": {"type": "string", "examples": [settings.currency]},
            "created_at": moment,
            "updated_at": moment,
        },
    }
    customer_saved = {
        "allOf": [
            _ref("Customer"),
            {
                "type": "object",
                "required": ["rematched_payments"],
                "properties": {
                    "rematched_payments": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "Ids of no_match payments from a new phone, now credited.",
                    }
                },
            },
        ]
    }
    moved = {
        "type": "object",
        "required": ["payment", "balance", "customer"],
        "properties": {
            "payment": _ref("Payment"),
            "balance": _ref("Money"),
            "customer": _ref("Customer"),
            "negative_balance": {
                "const": True,
                "description": "Present when the balance went below zero.",
            },
            "message": {"type": "string", "description": "Present with negative_balance."},
        },
    }
    phones_in = {
        "type": ["array", "null"],
        "maxItems": MAX_PHONES,
        "items": {"type": ["string", "integer"]},
        "description": (
            f"Mobile numbers in any written form (0712345678, +254 712 345 678), "
            f"read in region {settings.default_region}; duplicates are folded."
        ),
    }
    name_in = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME_LENGTH,
        "pattern": r"\S",
        "description": "Every customer has a name; blank is refused.",
    }
    purchase = {
        "type": "object",
        "required": ["voucher_code", "plan", "price", "valid_until", "created_by", "created_at"],
        "properties": {
            "voucher_code": {"type": "string", "examples": ["K7M2QX9TPA"]},
            "plan": {"type": "string", "description": "The plan's code."},
            "price": _ref("Money"),
            "valid_until": moment,
            "created_by": {"type": "string"},
            "created_at": moment,
        },
    }
    purchase_made = {
        "allOf": [
            _ref("Purchase"),
            {
                "type": "object",
                "required": ["balance", "account_number"],
                "properties": {"balance": _ref("Money"), "account_number": {"type": "string"}},
            },
        ]
    }
    plan = {
        "type": "object",
        "required": ["code", "name", "price", "validity_minutes", "active", "currency"],
        "properties": {
            "code": {"type": "string", "examples": ["DAY-1GB"]},
            "name": {"type": "string"},
            "price": _ref("Money"),
            "validity_minutes": {"type": "integer", "minimum": 1},
            "active": {"type": "boolean"},
            "currency": {"type": "string", "examples": [settings.currency]},
        },
    }
    plan_name = {"type": "string", "minLength": 1, "maxLength": 200}
    validity = {"type": "integer", "minimum": 1, "maximum": MAX_VALIDITY_MINUTES}
    transaction = {
        "type": "object",
        "required": [
            "id",
            "kind",
            "status",
            "account_number",
            "amount",
            "currency",
            "code",
            "phone",
            "payment_id",
            "voucher_code",
            "created_by",
            "note",
            "result_code",
            "result_desc",
            "at",
        ],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[LA][0-9]+$",
                "description": "L<n> for a ledger entry, A<n> for a payment attempt.",
            },
            "kind": {"type": "string", "enum": list(TRANSACTION_KINDS)},
            "status": {"type": "string", "enum": list(TRANSACTION_STATUSES)},
            "account_number": text_or_null,
            "amount": {
                **_ref("Money"),
                "description": "Signed: credits are positive, reversals and purchases negative.",
            },
            "currency": {"type": "string"},
            "code": text_or_null,
            "phone": text_or_null,
            "payment_id": {"type": ["integer", "null"]},
            "voucher_code": text_or_null,
            "created_by": text_or_null,
            "note": text_or_null,
            "result_code": {"type": ["integer", "null"]},
            "result_desc": text_or_null,
            "at": moment,
        },
    }
    side = {
        "type": "object",
        "required": ["count", "amount", "reversed"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "amount": _ref("Money"),
            "reversed": _ref("Money"),
        },
    }
    span = {
        "type": "object",
        "required": ["from", "to"],
        "properties": {"from": moment, "to": moment},
    }
    receipt_line = {
        "type": "object",
        "required": ["code", "amount", "paid_at", "payment_id", "source"],
        "properties": {
            "code": {"type": "string"},
            "amount": _ref("Money"),
            "paid_at": moment,
            "payment_id": {"type": ["integer", "null"]},
            "source": text_or_null,
            "status": text_or_null,
            "account_number": text_or_null,
            "provider_amount": _ref("Money"),
            "reversal_receipt": text_or_null,
        },
    }
    reconciliation = {
        "type": "object",
        "required": [
            "provider",
            "from",
            "to",
            "timezone",
            "explained",
            "unexplained",
            "covered",
            "not_covered",
            *RECONCILIATION_LISTS,
            "totals",
            "days",
        ],
        "properties": {
            "provider": {"type": "string"},
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "timezone": {"type": "string", "examples": [settings.timezone]},
            "explained": {"type": "boolean"},
            "unexplained": {"type": "integer", "minimum": 0},
            "covered": {"type": "array", "items": span},
            "not_covered": {"type": "array", "items": span},
            **{name: {"type": "array", "items": receipt_line} for name in RECONCILIATION_LISTS},
            "totals": {
                "type": "object",
                "required": ["provider", "momo"],
                "properties": {"provider": side, "momo": side},
            },
            "days": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "provider", "momo", "difference"],
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "provider": side,
                        "momo": side,
                        "difference": _ref("Money"),
                    },
                },
            },
        },
    }
    revenue = {
        "type": "object",
        "required": [
            "currency",
            "timezone",
            "today",
            "this_week",
            "this_month",
            "all_time",
            "unassociated_total",
            "period",
            "series",
        ],
        "properties": {
            "currency": {"type": "string"},
            "timezone": {"type": "string", "examples": [settings.timezone]},
            "today": _ref("Money"),
            "this_week": _ref("Money"),
            "this_month": _ref("Money"),
            "all_time": _ref("Money"),
            "unassociated_total": _ref("Money"),
            "period": {"type": "string", "enum": list(PERIODS)},
            "series": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "end", "amount", "count"],
                    "properties": {
                        "start": moment,
                        "end": moment,
                        "amount": _ref("Money"),
                        "count": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    }
    payment_request = {
        "type": "object",
        "required": [
            "id",
            "provider",
            "status",
            "provider_reference",
            "account_number",
            "phone",
            "amount",
            "currency",
            "created_at",
            "updated_at",
            "result_code",
            "result_description",
            "payment_id",
        ],
        "properties": {
            "id": {"type": "integer"},
            "provider": {"type": "string", "examples": ["mpesa"]},
            "status": {
                "type": "string",
                "enum": list(REQUEST_STATUSES),
                "description": (
                    "pending until the provider's callback (or its answer when asked) "
                    "settles it; a payment that comes after failed or expired still makes "
                    "it paid."
                ),
            },
            "provider_reference": {
                "type": ["string", "null"],
                "description": "The provider's id of the request (M-PESA CheckoutRequestID).",
            },
            "account_number": {"type": "string"},
            "phone": {"type": "string", "examples": ["+254712345678"]},
            "amount": _ref("Money"),
            "currency": {"type": "string", "examples": ["KES"]},
            "created_at": moment,
            "updated_at": moment,
            "result_code": {"type": ["string", "null"], "examples": ["0", "1032"]},
            "result_description": {"type": ["string", "null"]},
            "payment_id": {
                "type": ["integer", "null"],
                "description": "The payment that paid it, once paid.",
            },
        },
    }
    provider_ids = {
        "originator_id": {
            "type": ["string", "null"],
            "description": "The provider's id of the question (M-PESA OriginatorConversationID).",
        },
        "conversation_id": {
            "type": ["string", "null"],
            "description": "The provider's other id (M-PESA ConversationID).",
        },
        "result_code": {"type": ["string", "null"], "examples": ["0", "R000002", "2001"]},
        "result_description": {"type": ["string", "null"]},
        "created_by": {"type": "string"},
        "created_at": moment,
        "updated_at": moment,
    }
    lookup = {
        "type": "object",
        "required": ["id", "provider", "code", "status", "payment_id", *provider_ids],
        "properties": {
            "id": {"type": "integer"},
            "provider": {"type": "string", "examples": ["mpesa"]},
            "code": {"type": "string", "examples": ["QK81AB12CD"]},
            "status": {"type": "string", "enum": list(LOOKUP_STATUSES)},
            "payment_id": {
                "type": ["integer", "null"],
                "description": "The payment it found (stored, or already known), once found.",
            },
            **provider_ids,
        },
    }
    reversal = {
        "type": "object",
        "required": ["id", "status", "note", *provider_ids],
        "properties": {
            "id": {"type": "integer"},
            "status": {
                "type": "string",
                "enum": ["requested", "sent", "reversed", "failed", "timed_out"],
            },
            "note": {"type": ["string", "null"]},
            **provider_ids,
        },
    }
    asking = {
        "amount": _ref("AmountInput"),
        "phone": {
            "type": ["string", "null"],
            "description": "The phone to prompt; default: the customer's first phone.",
        },
        "provider": {
            "type": ["string", "null"],
            "description": (
                "Default: the provider serving the phone's network, else MOMO_DEFAULT_PROVIDER."
            ),
        },
    }
    token = {
        "type": "object",
        "required": ["id", "name", "role", "created_at", "last_used_at", "revoked_at"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES)},
            "created_at": moment,
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
        },
    }
    new_token = {
        "allOf": [
            _ref("Token"),
            {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {
                        "type": "string",
                        "description": "The bearer secret, shown in this answer only.",
                    }
                },
            },
        ]
    }
    return {
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem; `code` is stable and machine-readable.",
            "required": ["type", "title", "status", "code", "detail"],
            "properties": {
                "type": {"type": "string", "examples": ["about:blank"]},
                "title": {"type": "string", "examples": ["Conflict"]},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "code": {"type": "string", "examples": ["insufficient_balance"]},
                "detail": {
                    "type": "string",
                    "examples": ["Insufficient balance: available 50.00, required 100.00"],
                },
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "With unknown_field and missing_field: the fields meant.",
                },
                "payment_request": {
                    **_ref("PaymentRequest"),
                    "description": "With provider_refused and provider_unavailable.",
                },
                "lookup": {
                    **_ref("Lookup"),
                    "description": "With provider_refused and provider_unavailable.",
                },
                "reversal_state": {
                    **_ref("ReversalState"),
                    "description": "With provider_refused and provider_unavailable.",
                },
            },
        },
        "Lookup": lookup,
        "NewLookup": _object(
            LOOKUP_BODY,
            {"code": {"type": "string", "minLength": 1, "examples": ["QK81AB12CD"]}},
        ),
        "Reversal": reversal,
        "ReversalState": {
            "type": "object",
            "required": ["payment", "reversal"],
            "properties": {
                "payment": _ref("Payment"),
                "reversal": {
                    "anyOf": [_ref("Reversal"), {"type": "null"}],
                    "description": "The latest reversal request; null when none was made.",
                },
            },
        },
        "NewReversal": _object(
            REVERSAL_BODY,
            {
                "note": {
                    "type": ["string", "null"],
                    "maxLength": 100,
                    "description": "Why; sent to the provider as the reversal's remarks.",
                }
            },
        ),
        "PaymentRequest": payment_request,
        "PaymentRequestPage": _page("PaymentRequest"),
        "NewPaymentRequest": _object(
            REQUEST_BODY, {"account_number": {"type": "string", "minLength": 1}, **asking}
        ),
        "CustomerPaymentRequest": _object(CUSTOMER_REQUEST_BODY, asking),
        "Money": money,
        "AmountInput": amount_in,
        "Payment": payment,
        "PaymentDetail": payment_detail,
        "RecordedPayment": recorded,
        "LedgerLine": ledger_line,
        "AuditEvent": audit_event,
        "Moved": moved,
        "Customer": customer,
        "SavedCustomer": customer_saved,
        "NewCustomer": _object(
            NEW_CUSTOMER_BODY,
            {
                "account_number": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ACCOUNT_LENGTH,
                    "description": "Printable text; compared trimmed and case-folded.",
                },
                "name": name_in,
                "phones": phones_in,
            },
        ),
        "CustomerChange": _object(
            CUSTOMER_CHANGE_BODY,
            {"name": name_in, "phones": phones_in},
            description="Only name and phones can change; the phones given replace all.",
        ),
        "NewPayment": _object(
            NEW_PAYMENT_BODY,
            {
                "account_number": {"type": "string", "minLength": 1},
                "amount": _ref("AmountInput"),
                "reference": {
                    "type": ["string", "null"],
                    "maxLength": 64,
                    "description": (
                        "An M-PESA receipt code here is the payment's identity, shared with "
                        "callbacks: the same receipt never credits twice."
                    ),
                },
                "note": {"type": ["string", "null"], "maxLength": 1000},
            },
        ),
        "Association": _object(
            ASSOCIATION_BODY, {"account_number": {"type": "string", "minLength": 1}}
        ),
        "Disassociation": _object(
            DISASSOCIATION_BODY, {"reason": {"type": ["string", "null"], "maxLength": 500}}
        ),
        "Replay": _object(REPLAY_BODY, {}, description="Takes no fields; any sent are refused."),
        "Purchase": purchase,
        "PurchaseMade": purchase_made,
        "PurchaseOrder": _object(
            PURCHASE_ORDER_BODY,
            {"plan": {"type": "string", "minLength": 1, "examples": ["DAY-1GB"]}},
        ),
        "Plan": plan,
        "NewPlan": _object(
            NEW_PLAN_BODY,
            {
                "code": {"type": "string", "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\s*$"},
                "name": plan_name,
                "price": _ref("AmountInput"),
                "validity_minutes": validity,
            },
        ),
        "PlanChange": _object(
            PLAN_CHANGE_BODY,
            {
                "name": plan_name,
                "price": _ref("AmountInput"),
                "validity_minutes": validity,
                "active": {"type": "boolean"},
            },
        ),
        "Transaction": transaction,
        "Revenue": revenue,
        "Reconciliation": reconciliation,
        "Token": token,
        "NewToken": new_token,
        "TokenOrder": _object(
            TOKEN_ORDER_BODY,
            {
                "name": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_NAME},
                "role": {"type": "string", "enum": list(ROLES)},
            },
        ),
        "PaymentPage": _page("Payment"),
        "CustomerPage": _page("Customer"),
        "PurchasePage": _page("Purchase"),
        "PlanPage": _page("Plan"),
        "TransactionPage": _page("Transaction"),
        "TokenPage": _page("Token"),
        "Me": {
            "type": "object",
            "required": ["id", "name", "role", "timezone", "currency"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "role": {"type": "string", "enum": list(ROLES)},
                "timezone": {
                    "type": "string",
                    "description": "MOMO_TIMEZONE: the zone the business reads times in.",
                    "examples": [settings.timezone],
                },
                "currency": {"type": "string", "examples": [settings.currency]},
            },
        },
        "PaymentCount": {
            "type": "object",
            "required": ["status", "count"],
            "properties": {
                "status": {"type": "string", "enum": [ASSOCIATED, UNASSOCIATED]},
                "count": {"type": "integer", "minimum": 0},
            },
        },
        "InboxItem": {
            "type": "object",
            "required": [
                "id",
                "provider",
                "kind",
                "status",
                "reason",
                "detail",
                "code",
                "attempts",
                "received_at",
                "processed_at",
                "next_attempt_at",
                "payment_id",
                "client_addr",
            ],
            "properties": {
                "id": {"type": "integer"},
                "provider": {"type": "string"},
                "kind": {"type": "string"},
                "status": {"type": "string", "enum": list(INBOX_STATUSES)},
                "reason": {"type": ["string", "null"]},
                "detail": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
                "attempts": {"type": "integer", "minimum": 0},
                "received_at": {"type": "string", "format": "date-time"},
                "processed_at": {"type": ["string", "null"], "format": "date-time"},
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                "payment_id": {"type": ["integer", "null"]},
                "client_addr": {"type": ["string", "null"]},
                "body": {"type": "string", "description": "The raw body (one row only)."},
                "headers": {
                    "type": "object",
                    "description": "Kept request headers (one row only).",
                },
            },
        },
        "InboxPage": _page("InboxItem"),
        "Health": {
            "type": "object",
            "required": ["status", "database"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "database": {"type": "string"},
                "detail": {"type": "string"},
                "spool": {
                    "type": "object",
                    "description": "Callbacks waiting in the spool to drain into the database.",
                    "required": ["files", "bytes"],
                    "properties": {"files": {"type": "integer"}, "bytes": {"type": "integer"}},
                },
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "database", "broker", "worker"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "database": {"type": "string", "description": "`ok`, or what failed."},
                "detail": {"type": "string"},
                "broker": {
                    "type": "string",
                    "description": "`ok`, `embedded` (no broker: `momo serve`), or what failed.",
                },
                "worker": {
                    "type": "string",
                    "description": "`ok`, `not seen since <UTC time>`, `not seen yet`, or "
                    "`unknown: ...` when the database did not answer.",
                },
            },
        },
    }


def _components(settings: Settings) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    described = {
        400: (
            "The request is malformed; `code` says how (invalid_amount, invalid_limit, ...): "
            "`missing_field` names required body fields that are absent; text holding a NUL "
            "or a lone surrogate is refused in any parameter or field."
        ),
        401: "No token, or a token that is unknown or revoked.",
        403: "The token's role may not do this.",
        404: "There is no such payment, customer, plan or token.",
        409: "The change conflicts with the current state (see `code`).",
        413: "The body is larger than the API accepts.",
        422: (
            "The body has fields this operation does not take (`unknown_field`, naming them "
            "in `fields`; nothing was changed), or the Idempotency-Key was already used with "
            "a different request (`idempotency_key_reused`)."
        ),
        502: (
            "The provider could not be reached or kept failing (`provider_unavailable`); "
            "`payment_request` is the request, kept as failed: nobody was asked to pay."
        ),
        503: "The database did not answer; nothing was changed.",
    }
    responses: dict[str, Any] = {
        name: {"description": described[status], "content": problem}
        for status, name in PROBLEMS.items()
    }
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="momo"'}
    }
    moment_or_day = {
        "type": "string",
        "anyOf": [{"format": "date"}, {"format": "date-time"}],
    }
    return {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "An operator token (`momo token create --name NAME --role operator`). "
                    "Roles: viewer reads; operator also records, associates, disassociates, "
                    "buys plans and edits customers; admin also manages plans and tokens."
                ),
            }
        },
        "parameters": {
            "limit": _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                "How many items per page.",
            ),
            "cursor": _query(
                "cursor",
                {"type": "string"},
                "`next_cursor` of the previous page; any other value is 400.",
            ),
            "q": _query(
                "q",
                {"type": "string", "maxLength": MAX_QUERY_LENGTH},
                "Search the whole history: account number, phone in any written form (or "
                "a run of at least four of its digits), receipt code, or amount (1500).",
            ),
            "from": _query(
                "from",
                moment_or_day,
                f"Since this time (inclusive): a date meaning local midnight in "
                f"{settings.timezone}, or a time with offset such as 2025-11-03T14:30:00+03:00.",
            ),
            "to": _query(
                "to",
                moment_or_day,
                "Until this time (exclusive); the same forms as `from`, and later than "
                "`from` (else 400 invalid_range).",
            ),
            "Idempotency-Key": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                "description": (
                    "1 to 200 printable characters, e.g. a UUID. A repeat with the same key "
                    "and body replays the first answer (with `Idempotent-Replayed: true`); "
                    "the same key with another body is 422."
                ),
            },
        },
        "responses": responses,
        "schemas": _schemas(settings),
    }


# --- paths --------------------------------------------------------------------------------


def _paths(settings: Settings) -> dict[str, Any]:
    replayed = {
        "Idempotent-Replayed": {
            "schema": {"type": "string", "const": "true"},
            "description": "Present when this answer is a replay for a repeated Idempotency-Key.",
        }
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Whether the database answers (for load balancers)",
                "security": [],
                "responses": {
                    "200": _answer("The database answers and takes writes.", _ref("Health")),
                    "503": _answer(
                        "The database does not answer, or takes no writes (read_only).",
                        _ref("Health"),
                    ),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Whether payments would be worked end to end now (for monitoring)",
                "security": [],
                "responses": {
                    "200": _answer(
                        "The database, the broker and a recently seen worker all work.",
                        _ref("Readiness"),
                    ),
                    "503": _answer("Each part that does not work is named.", _ref("Readiness")),
                },
            }
        },
        f"{API}/openapi.json": {
            "get": {
                "operationId": "openapi_document",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": _answer(
                        "The OpenAPI 3.1 document.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    ),
                    "400": {"$ref": "#/components/responses/BadRequest"},
                },
            }
        },
        f"{API}/payments": {
            "get": _operation(
                "list_payments",
                "viewer",
                "The associated (default) or unassociated list, newest first",
                parameters=(
                    _WHICH_LIST,
                    _query(
                        "confirmed",
                        {"type": "string", "enum": ["false"]},
                        "`false`: payments recorded by hand that no provider record has "
                        "confirmed yet, of any status, oldest first (the list to check for "
                        "mistyped or invented receipts). Not combined with status, q or "
                        "account.",
                    ),
                    _query(
                        "account",
                        {"type": "string"},
                        "Only this customer's payments (account number, in any letter case); "
                        "404 when no customer has it.",
                    ),
                    SEARCH,
                    LIMIT,
                    CURSOR,
                ),
                answers={200: _answer("A page of payments.", _ref("PaymentPage"))},
                problems=(400, 404),
            ),
            "post": _operation(
                "make_payment",
                "operator",
                "Make Payment: record a payment by hand, associated at once",
                body=_body(
                    _ref("NewPayment"),
                    {
                        "account_number": "ACC1042",
                        "amount": "1500.00",
                        "reference": "SJK4H7Y2ZQ",
                        "note": "paid cash at the desk",
                    },
                ),
                change=True,
                answers={
                    201: _answer("Recorded and credited.", _ref("RecordedPayment"), **replayed),
                    200: _answer(
                        "The receipt had come in by callback: now credited to this customer, "
                        "or already was.",
                        _ref("RecordedPayment"),
                        **replayed,
                    ),
                },
                problems=(404, 409),
                description=(
                    "404 when no customer has the account number; 409 when the reference is "
                    "a receipt already recorded with another amount or credited to another "
                    "customer."
                ),
            ),
        },
        f"{API}/payment-requests": {
            "get": _operation(
                "list_payment_requests",
                "viewer",
                "Payment requests, newest first",
                parameters=(
                    _query(
                        "status",
                        {"type": "string", "enum": list(REQUEST_STATUSES)},
                        "Only requests in this state.",
                    ),
                    _query("account", {"type": "string"}, "Only this customer's requests."),
                    LIMIT,
                    CURSOR,
                ),
                answers={200: _answer("A page of requests.", _ref("PaymentRequestPage"))},
                problems=(404,),
            ),
            "post": _operation(
                "create_payment_request",
                "operator",
                "Ask a customer to pay: a prompt on their phone",
                body=_body(
                    _ref("NewPaymentRequest"),
                    {"account_number": "ACC1042", "amount": "1500", "phone": "0712345678"},
                ),
                change=True,
                answers={
                    201: _answer(
                        "Asked (or sent and not yet answered): pending until it settles.",
                        _ref("PaymentRequest"),
                        **replayed,
                    )
                },
                problems=(404, 502),
                description=(
                    "422 `provider_refused` with the provider's words when it refused "
                    "(bad phone, limits); 502 `provider_unavailable` when it could not be "
                    "reached. Either way the request is kept as failed, in "
                    "`payment_request`. A repeat with the same Idempotency-Key never "
                    "prompts twice."
                ),
            ),
        },
        f"{API}/payment-requests/{{request_id}}": {
            "get": _operation(
                "show_payment_request",
                "viewer",
                "One payment request",
                parameters=(REQUEST_ID,),
                answers={200: _answer("The request.", _ref("PaymentRequest"))},
                problems=(404,),
            )
        },
        f"{API}/customers/{{account_number}}/payment-requests": {
            "post": _operation(
                "create_customer_payment_request",
                "operator",
                "Ask this customer to pay (for integrations that know the account)",
                parameters=(ACCOUNT,),
                body=_body(_ref("CustomerPaymentRequest"), {"amount": "1500"}),
                change=True,
                answers={
                    201: _answer("Asked.", _ref("PaymentRequest"), **replayed),
                },
                problems=(404, 502),
                description="As POST /payment-requests, with the account in the path.",
            )
        },
        f"{API}/payments/count": {
            "get": _operation(
                "count_payments",
                "viewer",
                "How many payments the associated (default) or unassociated list holds",
                parameters=(_WHICH_LIST,),
                answers={200: _answer("The list's size.", _ref("PaymentCount"))},
            ),
        },
        f"{API}/me": {
            "get": _operation(
                "show_me",
                "viewer",
                "The calling token's name and role, and the business's time zone and currency",
                answers={200: _answer("Who is asking.", _ref("Me"))},
                description=(
                    "Read-only: lets a screen offer only the actions the token's role may take "
                    "and show times and money as the business reads them."
                ),
            ),
        },
        f"{API}/payments/{{payment_id}}": {
            "get": _operation(
                "show_payment",
                "viewer",
                "One payment with its history: ledger entries and who did what",
                parameters=(PAYMENT_ID,),
                answers={200: _answer("The payment.", _ref("PaymentDetail"))},
                problems=(404,),
            )
        },
        f"{API}/payments/lookup": {
            "post": _operation(
                "look_up_payment",
                "operator",
                "Ask the provider about one receipt code (a payment whose callback never came)",
                body=_body(_ref("NewLookup"), {"code": "QK81AB12CD"}),
                change=True,
                answers={
                    202: _answer("Asked: the result comes later.", _ref("Lookup"), **replayed)
                },
                problems=(409, 502),
                description=(
                    "The result arrives by callback: a payment found is recorded like a "
                    "callback's (credited once, a duplicate when known, a manual entry "
                    "confirmed as `lookup`). 400 `invalid_code` when it is no provider's "
                    "receipt; 409 `provider_not_configured` naming the settings missing; 422 "
                    "`provider_refused`, 502 `provider_unavailable` (the lookup kept as "
                    "failed, in `lookup`)."
                ),
            )
        },
        f"{API}/lookups/{{lookup_id}}": {
            "get": _operation(
                "show_lookup",
                "viewer",
                "One lookup: pending, sent, found, not_found, failed or timed_out",
                parameters=(LOOKUP_ID,),
                answers={200: _answer("The lookup.", _ref("Lookup"))},
                problems=(404,),
            )
        },
        f"{API}/payments/{{payment_id}}/reversal": {
            "get": _operation(
                "show_reversal",
                "viewer",
                "A payment's reversal state: the payment and its latest reversal request",
                parameters=(PAYMENT_ID,),
                answers={200: _answer("The state.", _ref("ReversalState"))},
                problems=(404,),
            ),
            "post": _operation(
                "reverse_payment",
                "admin",
                "Ask the provider to give a payment's money back to its payer",
                parameters=(PAYMENT_ID,),
                body=_body(_ref("NewReversal"), {"note": "paid twice"}, required=False),
                change=True,
                answers={
                    202: _answer(
                        "Asked: the result comes later.", _ref("ReversalState"), **replayed
                    )
                },
                problems=(404, 409, 502),
                description=(
                    "The result arrives by callback: the payment is marked reversed and a "
                    "customer it was credited to is debited once (the balance may go "
                    "negative). 409 `provider_cannot_reverse` (not the provider's payment), "
                    "`receipt_unconfirmed` (entered by hand, unconfirmed), `already_reversed`, "
                    "`reversal_in_progress`, `provider_not_configured`; 422 "
                    "`provider_refused`, 502 `provider_unavailable` (kept as failed, in "
                    "`reversal_state`)."
                ),
            ),
        },
        f"{API}/payments/{{payment_id}}/associate": {
            "post": _operation(
                "associate_payment",
                "operator",
                "Move an unassociated payment to a customer and credit the balance",
                parameters=(PAYMENT_ID,),
                body=_body(_ref("Association"), {"account_number": "ACC1042"}),
                change=True,
                answers={200: _answer("Associated.", _ref("Moved"), **replayed)},
                problems=(404, 409),
                description="409 `already_associated` names the payment's current customer.",
            )
        },
        f"{API}/payments/{{payment_id}}/disassociate": {
            "post": _operation(
                "disassociate_payment",
                "operator",
                "Take a payment off its customer: a reversal of the same amount",
                parameters=(PAYMENT_ID,),
                body=_body(_ref("Disassociation"), {"reason": "wrong customer"}, required=False),
                change=True,
                answers={200: _answer("Disassociated.", _ref("Moved"), **replayed)},
                problems=(404, 409),
                description=(
                    "The balance may go negative when the credit was already spent "
                    "(`negative_balance`); the payment returns to the unassociated list with "
                    "reason `disassociated`. 409 `not_associated` when it is not associated."
                ),
            )
        },
        f"{API}/customers": {
            "get": _operation(
                "list_customers",
                "viewer",
                "Customers by account number; q finds by account, name or phone",
                parameters=(SEARCH, LIMIT, CURSOR),
                answers={200: _answer("A page of customers.", _ref("CustomerPage"))},
                problems=(400,),
            ),
            "post": _operation(
                "create_customer",
                "operator",
                "Create a customer; its phones' no_match payments are matched again",
                body=_body(
                    _ref("NewCustomer"),
                    {"account_number": "ACC1043", "name": "Wanjiru", "phones": ["0712345678"]},
                ),
                change=True,
                answers={
                    201: _answer(
                        "Created.",
                        _ref("SavedCustomer"),
                        Location={
                            "schema": {"type": "string"},
                            "description": "The customer's URL.",
                        },
                        **replayed,
                    )
                },
                problems=(409,),
            ),
        },
        f"{API}/customers/{{account_number}}": {
            "get": _operation(
                "show_customer",
                "viewer",
                "One customer, with the balance",
                parameters=(ACCOUNT,),
                answers={200: _answer("The customer.", _ref("Customer"))},
                problems=(404,),
            ),
            "patch": _operation(
                "edit_customer",
                "operator",
                "Change a customer's name and/or phones",
                parameters=(ACCOUNT,),
                body=_body(
                    _ref("CustomerChange"),
                    {"name": "Wanjiru K.", "phones": ["0712345678", "+254722000111"]},
                ),
                change=True,
                answers={200: _answer("Changed.", _ref("SavedCustomer"), **replayed)},
                problems=(404,),
            ),
        },
        f"{API}/customers/{{account_number}}/transactions": {
            "get": _operation(
                "customer_transactions",
                "viewer",
                "A customer's balance movements, newest first",
                parameters=(
                    ACCOUNT,
                    _query(
                        "kind",
                        {"type": "string", "enum": list(TRANSACTION_KINDS)},
                        "Only this kind of movement.",
                    ),
                    TIME_FROM,
                    TIME_TO,
                    SEARCH,
                    LIMIT,
                    CURSOR,
                ),
                answers={200: _answer("A page of transactions.", _ref("TransactionPage"))},
                problems=(400, 404),
            )
        },
        f"{API}/customers/{{account_number}}/purchases": {
            "get": _operation(
                "customer_purchases",
                "viewer",
                "Vouchers a customer bought, newest first",
                parameters=(ACCOUNT, LIMIT, CURSOR),
                answers={200: _answer("A page of purchases.", _ref("PurchasePage"))},
                problems=(400, 404),
            ),
            "post": _operation(
                "buy_plan",
                "operator",
                "Buy a plan from the balance: a voucher code and the new balance",
                parameters=(ACCOUNT,),
                body=_body(_ref("PurchaseOrder"), {"plan": "DAY-1GB"}),
                change=True,
                answers={201: _answer("Bought.", _ref("PurchaseMade"), **replayed)},
                problems=(404, 409),
                description=(
                    "409 `insufficient_balance` says the available and required amounts; "
                    "409 `plan_inactive` when the plan is no longer sold."
                ),
            ),
        },
        f"{API}/plans": {
            "get": _operation(
                "list_plans",
                "viewer",
                "Plans, cheapest first",
                parameters=(
                    _query(
                        "active",
                        {"type": "string", "enum": ["true", "false"]},
                        "Only plans still sold (true) or withdrawn (false).",
                    ),
                ),
                answers={200: _answer("Every plan (one page).", _ref("PlanPage"))},
                problems=(400,),
            ),
            "post": _operation(
                "add_plan",
                "admin",
                "Create a plan",
                body=_body(
                    _ref("NewPlan"),
                    {
                        "code": "WEEK-5GB",
                        "name": "Week 5GB",
                        "price": "300.00",
                        "validity_minutes": 10080,
                    },
                ),
                change=True,
                answers={201: _answer("Created.", _ref("Plan"), **replayed)},
                problems=(409,),
            ),
        },
        f"{API}/plans/{{code}}": {
            "get": _operation(
                "show_plan",
                "viewer",
                "One plan",
                parameters=(PLAN_CODE,),
                answers={200: _answer("The plan.", _ref("Plan"))},
                problems=(404,),
            ),
            "patch": _operation(
                "edit_plan",
                "admin",
                "Change a plan's name, price, validity or whether it is sold",
                parameters=(PLAN_CODE,),
                body=_body(_ref("PlanChange"), {"price": "55.00", "active": True}),
                change=True,
                answers={200: _answer("Changed.", _ref("Plan"), **replayed)},
                problems=(404,),
            ),
        },
        f"{API}/transactions": {
            "get": _operation(
                "list_transactions",
                "viewer",
                "Every balance movement and every attempt that moved no money, newest first",
                parameters=(
                    _query("account", {"type": "string"}, "Only this customer's (account number)."),
                    _query(
                        "kind",
                        {"type": "string", "enum": list(TRANSACTION_KINDS)},
                        "Only this kind.",
                    ),
                    _query(
                        "status",
                        {"type": "string", "enum": list(TRANSACTION_STATUSES)},
                        "completed movements, or failed and cancelled attempts.",
                    ),
                    TIME_FROM,
                    TIME_TO,
                    SEARCH,
                    LIMIT,
                    CURSOR,
                ),
                answers={200: _answer("A page of transactions.", _ref("TransactionPage"))},
                problems=(400,),
            )
        },
        f"{API}/dashboard/revenue": {
            "get": _operation(
                "revenue",
                "viewer",
                "Revenue today, this week, this month and all time, plus a series",
                description=(
                    f"In {settings.timezone}: today from local midnight, the week from Monday. "
                    "Revenue is associated payments net of disassociations; the unassociated "
                    f"total is beside it. The series has at most {MAX_BUCKETS} buckets; by "
                    "default the last 30 days, 12 weeks or 12 months up to `to` (today)."
                ),
                parameters=(
                    _query(
                        "period",
                        {"type": "string", "enum": list(PERIODS), "default": "day"},
                        "The series' bucket.",
                    ),
                    _query(
                        "from", {"type": "string", "format": "date"}, "First day of the series."
                    ),
                    _query("to", {"type": "string", "format": "date"}, "Last day of the series."),
                ),
                answers={200: _answer("Revenue.", _ref("Revenue"))},
                problems=(400,),
            )
        },
        f"{API}/reconciliation": {
            "get": _operation(
                "reconciliation",
                "viewer",
                "momo's books beside the provider's own record, day by day",
                description=(
                    f"For the local days (in {settings.timezone}) `from` to `to`, both "
                    "included (default today): the spans the provider's record was read "
                    "for (pulls, statements), payments momo learnt of only from it "
                    "(`recovered`), provider records momo has no payment for, momo payments "
                    "the provider's record lacks, amount conflicts, manual entries no "
                    "provider record confirmed, and both sides' totals per day. "
                    "`explained` is true when nothing but recoveries is listed and the "
                    "whole span was covered."
                ),
                parameters=(
                    _query("from", {"type": "string", "format": "date"}, "First day."),
                    _query("to", {"type": "string", "format": "date"}, "Last day."),
                    _query(
                        "provider",
                        {"type": "string", "enum": list(ADAPTERS)},
                        "Whose record; default MOMO_DEFAULT_PROVIDER, or the one momo keeps.",
                    ),
                ),
                answers={200: _answer("The report.", _ref("Reconciliation"))},
                problems=(400,),
            )
        },
        f"{API}/tokens": {
            "get": _operation(
                "list_tokens",
                "admin",
                "Every operator token (never the secrets)",
                answers={200: _answer("Every token (one page).", _ref("TokenPage"))},
            ),
            "post": _operation(
                "add_token",
                "admin",
                "Create a token; its secret is in this answer only",
                body=_body(_ref("TokenOrder"), {"name": "alice", "role": "operator"}),
                change=True,
                answers={201: _answer("Created.", _ref("NewToken"))},
                problems=(409,),
                description=(
                    "The secret is shown once and stored only as a hash, whatever the headers: "
                    "a repeat with the same Idempotency-Key is 409 `token_secret_shown_once`, "
                    "naming the token made the first time, never its secret."
                ),
            ),
        },
        f"{API}/inbox": {
            "get": _operation(
                "list_inbox",
                "admin",
                "Stored callbacks in one state (default dead), newest first",
                parameters=(
                    _query(
                        "status",
                        {"type": "string", "enum": list(INBOX_STATUSES), "default": "dead"},
                        "pending, processed, rejected (not the provider's shape), dead (failed "
                        "after its retries) or conflict (a receipt repeated with other data).",
                    ),
                    LIMIT,
                    CURSOR,
                ),
                answers={200: _answer("A page of inbox rows.", _ref("InboxPage"))},
                problems=(400,),
            )
        },
        f"{API}/inbox/{{inbox_id}}": {
            "get": _operation(
                "show_inbox",
                "admin",
                "One stored callback with its raw body and headers",
                parameters=(INBOX_ID,),
                answers={200: _answer("The inbox row.", _ref("InboxItem"))},
                problems=(404,),
            )
        },
        f"{API}/inbox/{{inbox_id}}/replay": {
            "post": _operation(
                "replay_inbox",
                "admin",
                "Queue a dead or rejected callback again; its effect happens at most once",
                parameters=(INBOX_ID,),
                body=_body(_ref("Replay"), {}, required=False),
                change=True,
                answers={202: _answer("Queued again.", _ref("InboxItem"), **replayed)},
                problems=(404, 409),
            )
        },
        f"{API}/tokens/{{token_id}}": {
            "delete": _operation(
                "delete_token",
                "admin",
                "Revoke a token: it answers 401 from now on",
                parameters=(
                    _path(
                        "token_id",
                        {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT64},
                        "The token's id.",
                        1,
                    ),
                ),
                change=True,
                answers={
                    200: _answer(
                        "Revoked (revoking twice changes nothing).", _ref("Token"), **replayed
                    )
                },
                problems=(404,),
            )
        },
    }


def openapi_spec(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operator API as this code behaves.

    A fresh copy each call: a caller may change it without changing the next one.
    """
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "momo operator API",
            "version": "1",
            "description": (
                "Payments, customers, plans, the transaction log and revenue for the "
                "operators' Payments desk. Errors are application/problem+json with a stable "
                f"`code`. Amounts are decimal strings in {settings.currency}."
            ),
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(settings),
        "components": _components(settings),
    }
    return copy.deepcopy(document)
