"""Payment requests: ask a customer to pay (a prompt on their phone), and watch it settle."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import require
from api.common import (
    Fields,
    bp,
    change_then,
    decode_cursor,
    encode_cursor,
    json_body,
    limit_arg,
    money,
    path_id,
    provider_problem,
    request_session,
    runtime,
)
from ingest import asking
from ingest.providers import requesters
from ingest.providers.outbound import NoAnswer
from matcher.errors import InvalidInput, NotFound
from matcher.matching import account_key
from matcher.models import REQUEST_STATUSES, Customer, PaymentRequest
from matcher.money import parse_money
from matcher.payment_requests import get_request

REQUEST_BODY = Fields(required=("account_number", "amount"), optional=("phone", "provider"))
CUSTOMER_REQUEST_BODY = Fields(required=("amount",), optional=("phone", "provider"))


def request_json(r: PaymentRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "provider": r.provider,
        "status": r.status,
        "provider_reference": r.provider_reference,
        "account_number": r.account_number,
        "phone": r.phone,
        "amount": money(r.amount_minor),
        "currency": r.currency,
        "created_at": r.created_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
        "result_code": r.result_code,
        "result_description": r.result_description,
        "payment_id": r.payment_id,
    }


def _optional_name(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f'{field} must be text, e.g. "0712345678"', f"invalid_{field}")
    return value.strip()


def _ask(account: object, body: dict[str, Any]) -> tuple[Response, int]:
    if not isinstance(account, str) or not account.strip():
        raise InvalidInput(
            "account_number is required: the customer asked to pay, e.g. ACC1042",
            "invalid_account_number",
        )
    amount = parse_money(body["amount"])
    phone = _optional_name(body, "phone")
    provider = _optional_name(body, "provider")
    rt = runtime()
    askers = requesters()

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        made = asking.open_payment_request(
            rt,
            session,
            askers,
            account_number=account,
            amount=amount,
            phone=phone,
            provider=provider,
            actor=g.actor,
        )
        session.flush()  # its times, for the answer kept until the provider's is known
        return request_json(made), 201

    def afterwards(body: dict[str, Any], status: int) -> tuple[dict[str, Any], int]:
        sent = asking.send(rt, askers, body["id"])
        with rt.sessions.begin() as session:
            item = request_json(get_request(session, sent.request_id))
        error = sent.error
        if error is None or isinstance(error, NoAnswer):
            # no answer: the provider may have taken it; the query sweep settles it
            return item, 201
        return provider_problem(error, "payment request", "payment_request", item)

    return change_then(operation, afterwards)


@bp.post("/payment-requests")
@require("operator")
def create_payment_request() -> tuple[Response, int]:
    """Ask a customer to pay. Honours Idempotency-Key: a repeat never prompts twice."""
    body = json_body(REQUEST_BODY)
    return _ask(body["account_number"], body)


@bp.post("/customers/<account_number>/payment-requests")
@require("operator")
def create_customer_payment_request(account_number: str) -> tuple[Response, int]:
    """The same, for integrations (a captive portal) that know the account."""
    body = json_body(CUSTOMER_REQUEST_BODY)
    return _ask(account_number, body)


@bp.get("/payment-requests/<request_id>")
@require("viewer")
def show_payment_request(request_id: str) -> Response:
    with request_session() as session:
        return jsonify(
            request_json(
                get_request(
                    session, path_id(request_id, "payment request", "payment_request_not_found")
                )
            )
        )


@bp.get("/payment-requests")
@require("viewer")
def list_payment_requests() -> Response:
    """Newest first, keyset-paginated; ``status`` and ``account`` narrow it."""
    limit = limit_arg()
    query = select(PaymentRequest)
    status = request.args.get("status")
    if status is not None:
        if status not in REQUEST_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(REQUEST_STATUSES)}, not {status!r}",
                "invalid_status",
            )
        query = query.where(PaymentRequest.status == status)
    cursor = request.args.get("cursor")
    if cursor:
        (before,) = decode_cursor(cursor, int)
        query = query.where(PaymentRequest.id < before)
    with request_session() as session:
        account = request.args.get("account")
        if account is not None:
            customer_id = session.scalar(
                select(Customer.id).where(Customer.account_key == account_key(account))
            )
            if customer_id is None:
                raise NotFound(
                    f"no customer has account number {account.strip()!r}", "customer_not_found"
                )
            query = query.where(PaymentRequest.customer_id == customer_id)
        rows = list(session.scalars(query.order_by(PaymentRequest.id.desc()).limit(limit + 1)))
        page, more = rows[:limit], len(rows) > limit
        return jsonify(
            {
                "items": [request_json(r) for r in page],
                "next_cursor": encode_cursor(page[-1].id) if more else None,
            }
        )
