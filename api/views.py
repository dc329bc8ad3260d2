"""The operator API, under /api/v1. Errors are problem+json with a stable ``code``."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload

from api.auth import require
from matcher.customers import get_customer, save_customer
from matcher.errors import Conflict, DomainError, InvalidInput, NotFound
from matcher.models import ASSOCIATED, UNASSOCIATED, Customer, Payment
from matcher.money import format_minor
from momo.runtime import Runtime
from momo.web import problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")

STATUS_FOR = {InvalidInput: 400, NotFound: 404, Conflict: 409}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def runtime() -> Runtime:
    return current_app.extensions["momo"]


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Response:
    status = next((s for cls, s in STATUS_FOR.items() if isinstance(exc, cls)), 400)
    titles = {400: "Bad Request", 404: "Not Found", 409: "Conflict"}
    return problem(status, exc.code, titles[status], exc.message)


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput(
            "The body must be a JSON object sent with Content-Type: application/json.",
            "invalid_body",
        )
    return body


def customer_json(customer: Customer) -> dict[str, Any]:
    return {
        "account_number": customer.account_number,
        "name": customer.name,
        "phones": [phone.e164 for phone in customer.phones],
        "balance": format_minor(customer.balance_minor),
        "currency": runtime().settings.currency,
        "created_at": customer.created_at.isoformat(),
        "updated_at": customer.updated_at.isoformat(),
    }


def payment_json(payment: Payment) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": payment.id,
        "code": payment.code,
        "provider": payment.provider,
        "channel": payment.channel,
        "account_number": payment.customer.account_number if payment.customer else None,
        "phone": payment.phone,
        "payer_name": payment.payer_name,
        "amount": format_minor(payment.amount_minor),
        "currency": payment.currency,
        "paid_at": payment.paid_at.isoformat(),
        "status": payment.status,
        "match_method": payment.match_method,
        "account_reference": payment.account_reference,
    }
    if payment.status == UNASSOCIATED:
        item["reason"] = payment.reason
        item["candidates"] = list(payment.candidates or [])
    return item


@bp.post("/customers")
@require("operator")
def create_customer() -> tuple[Response, int]:
    body = _json_body()
    settings = runtime().settings
    with runtime().sessions.begin() as session:
        change = save_customer(
            session,
            account_number=body.get("account_number"),  # type: ignore[arg-type]
            name=body.get("name"),
            phones=body.get("phones"),
            region=settings.default_region,
            actor=g.actor,
            create_only=True,
        )
        session.refresh(change.customer)
        result = customer_json(change.customer)
        result["rematched_payments"] = change.rematched
    response = jsonify(result)
    response.headers["Location"] = f"/api/v1/customers/{quote(result['account_number'], safe='')}"
    return response, 201


@bp.get("/customers/<path:account_number>")
@require("viewer")
def show_customer(account_number: str) -> Response:
    with runtime().sessions.begin() as session:
        return jsonify(customer_json(get_customer(session, account_number)))


def _encode_cursor(payment: Payment) -> str:
    raw = f"{payment.paid_at.isoformat()}|{payment.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        paid_at = datetime.fromisoformat(when).astimezone(UTC)
        if not when.endswith("+00:00") or not ident.isascii():
            raise ValueError("not a cursor this API made")
        number = int(ident)
        if not 0 < number < 2**63:
            raise ValueError("id out of range")
        return paid_at, number
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not one this API gave out; pass next_cursor from the previous page",
            "invalid_cursor",
        ) from None


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}", "invalid_limit")
    return int(raw)


@bp.get("/payments")
@require("viewer")
def list_payments() -> Response:
    """Newest first (by time paid), keyset-paginated: a deep page costs what the first does."""
    status = request.args.get("status", ASSOCIATED)
    if status not in (ASSOCIATED, UNASSOCIATED):
        raise InvalidInput(
            f"status must be '{ASSOCIATED}' or '{UNASSOCIATED}', not {status!r}", "invalid_status"
        )
    limit = _limit()
    query = (
        select(Payment)
        .options(selectinload(Payment.customer))
        .where(Payment.status == status)
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(limit + 1)
    )
    cursor = request.args.get("cursor")
    if cursor:
        paid_at, ident = _decode_cursor(cursor)
        query = query.where(
            or_(Payment.paid_at < paid_at, and_(Payment.paid_at == paid_at, Payment.id < ident))
        )
    with runtime().sessions.begin() as session:
        rows = list(session.scalars(query))
        page, more = rows[:limit], len(rows) > limit
        return jsonify(
            {
                "items": [payment_json(p) for p in page],
                "next_cursor": _encode_cursor(page[-1]) if more else None,
            }
        )
