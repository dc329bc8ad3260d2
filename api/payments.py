"""Payments: the associated and unassociated lists, search, one payment's history,
Make Payment, Associate and Disassociate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import func, select, tuple_, union
from sqlalchemy.orm import Session, selectinload

from api.auth import require
from api.common import (
    PAYMENTS,
    Fields,
    bp,
    change,
    customer_json,
    decode_cursor,
    encode_cursor,
    json_body,
    limit_arg,
    money,
    optional_text,
    path_id,
    payment_item,
    payment_json,
    payments_with_accounts,
    q_arg,
    request_session,
    runtime,
)
from ingest.providers import receipt_owner
from matcher.errors import InvalidInput, NotFound
from matcher.matching import get_customer
from matcher.models import ASSOCIATED, UNASSOCIATED, AuditEvent, Customer, LedgerEntry, Payment
from matcher.money import parse_money
from matcher.payments import MANUAL, associate, disassociate, record_manual_payment
from matcher.search import text_matches


def list_arg() -> str:
    """``status``: which list, associated (the default) or unassociated."""
    status = request.args.get("status", ASSOCIATED)
    if status not in (ASSOCIATED, UNASSOCIATED):
        raise InvalidInput(
            f"status must be '{ASSOCIATED}' or '{UNASSOCIATED}', not {status!r}", "invalid_status"
        )
    return status


@bp.get("/payments")
@require("viewer")
def list_payments() -> Response:
    """Newest first (by time paid), keyset-paginated: a deep page costs what the first does."""
    if "confirmed" in request.args:
        return unconfirmed_payments()
    status = list_arg()
    limit = limit_arg()
    newest_first = (PAYMENTS.paid_at.desc(), PAYMENTS.id.desc())
    filters = [PAYMENTS.status == status]
    account = request.args.get("account")
    if account is not None:
        # exactly this customer's, along the (customer_id, paid_at, id) index; q would also
        # find payments whose code, phone or amount reads like the account number
        with request_session() as session:
            filters.append(PAYMENTS.customer_id == get_customer(session, account).id)
    cursor = request.args.get("cursor")
    if cursor:
        paid_at, ident = decode_cursor(cursor, datetime, int)
        # a row comparison reads straight on along the (status, paid_at, id) index
        filters.append(tuple_(PAYMENTS.paid_at, PAYMENTS.id) < tuple_(paid_at, ident))
    q = q_arg()
    if q:
        # One indexed, ordered, limited probe per meaning of q, merged: an OR across
        # columns would make the planner walk the whole table in date order instead.
        probes = [
            select(Payment.id)
            .where(match, *filters)
            .order_by(*newest_first)
            .limit(limit + 1)
            .subquery()
            for match in text_matches(
                q,
                region=runtime().settings.default_region,
                customer_id=Payment.customer_id,
                phone=Payment.phone,
                codes=[Payment.code],
                amount=Payment.amount_minor,
            )
        ]
        found = union(*(select(probe.c.id) for probe in probes)).subquery()
        query = payments_with_accounts((found, found.c.id == PAYMENTS.id))
    else:
        query = payments_with_accounts().where(*filters)
    query = query.order_by(*newest_first).limit(limit + 1)
    with request_session() as session:
        rows = session.execute(query).all()
        page, more = rows[:limit], len(rows) > limit
        return jsonify(
            {
                "items": [payment_item(p, p.account_number) for p in page],
                "next_cursor": encode_cursor(page[-1].paid_at, page[-1].id) if more else None,
            }
        )


@bp.get("/payments/count")
@require("viewer")
def count_payments() -> Response:
    """How many payments one list holds (the number on the Unassociated button)."""
    status = list_arg()
    with request_session() as session:
        count = session.execute(
            select(func.count()).select_from(Payment).where(Payment.status == status)
        ).scalar_one()
    return jsonify({"status": status, "count": count})


def unconfirmed_payments() -> Response:
    """``confirmed=false``: payments entered by hand that no provider record has confirmed
    yet, oldest first (by when they were entered), whatever their status: the list an
    owner checks for mistyped or invented receipts."""
    if request.args["confirmed"] != "false":
        raise InvalidInput(
            "confirmed takes only 'false': the manual entries no provider record has "
            f"confirmed yet, not {request.args['confirmed']!r}; leave it out for the other lists",
            "invalid_confirmed",
        )
    if "status" in request.args or q_arg():
        raise InvalidInput(
            "confirmed=false lists every unconfirmed manual entry, oldest first: give it "
            "without status or q",
            "invalid_confirmed",
        )
    limit = limit_arg()
    filters = [PAYMENTS.channel == MANUAL, PAYMENTS.confirmed_at.is_(None)]
    cursor = request.args.get("cursor")
    if cursor:
        created_at, ident = decode_cursor(cursor, datetime, int)
        filters.append(tuple_(PAYMENTS.created_at, PAYMENTS.id) > tuple_(created_at, ident))
    query = (
        payments_with_accounts()
        .where(*filters)
        .order_by(PAYMENTS.created_at, PAYMENTS.id)
        .limit(limit + 1)
    )
    with request_session() as session:
        rows = session.execute(query).all()
        page, more = rows[:limit], len(rows) > limit
        return jsonify(
            {
                "items": [payment_item(p, p.account_number) for p in page],
                "next_cursor": encode_cursor(page[-1].created_at, page[-1].id) if more else None,
            }
        )


@bp.get("/payments/<payment_id>")
@require("viewer")
def show_payment(payment_id: str) -> Response:
    """One payment with everything that happened to it: ledger entries and who did what."""
    ident = path_id(payment_id, "payment", "payment_not_found")
    with request_session() as session:
        payment = session.get(Payment, ident, options=[selectinload(Payment.customer)])
        if payment is None:
            raise NotFound(f"no payment has id {ident}", "payment_not_found")
        item = payment_json(payment)
        item.update(
            {
                "msisdn": payment.msisdn_raw,
                "msisdn_kind": payment.msisdn_kind,
                "business_short_code": payment.business_short_code,
                "transaction_type": payment.transaction_type,
                "note": payment.note,
                "created_by": payment.created_by,
                "created_at": payment.created_at.isoformat(),
                "inbox_id": payment.inbox_id,
            }
        )
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id == ident).order_by(LedgerEntry.id)
        ).all()
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_type == "payment", AuditEvent.subject_id == str(ident))
            .order_by(AuditEvent.id)
        ).all()
        item["history"] = {
            "ledger": [ledger_json(e, session) for e in entries],
            "events": [event_json(e) for e in events],
        }
        return jsonify(item)


def ledger_json(entry: LedgerEntry, session: Session) -> dict[str, Any]:
    customer = session.get(Customer, entry.customer_id)
    return {
        "id": entry.id,
        "kind": entry.kind,
        "account_number": customer.account_number if customer else None,
        "amount": money(entry.amount_minor),
        "created_by": entry.created_by,
        "note": entry.note,
        "at": entry.created_at.isoformat(),
    }


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "action": event.action,
        "actor": event.actor,
        "at": event.at.isoformat(),
        "before": event.before,
        "after": event.after,
    }


NEW_PAYMENT_BODY = Fields(required=("account_number", "amount"), optional=("reference", "note"))
ASSOCIATION_BODY = Fields(required=("account_number",))
DISASSOCIATION_BODY = Fields(optional=("reason",))


@bp.post("/payments")
@require("operator")
def make_payment() -> tuple[Response, int]:
    """Record a payment by hand, associated at once. Honours Idempotency-Key."""
    body = json_body(NEW_PAYMENT_BODY)
    account = body["account_number"]
    if not isinstance(account, str) or not account.strip():
        raise InvalidInput(
            "account_number is required: the account the payment is for, e.g. ACC1042",
            "invalid_account_number",
        )
    amount = parse_money(body["amount"])
    reference = optional_text(body, "reference", 64)
    note = optional_text(body, "note", 1000)
    settings = runtime().settings

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        moved = record_manual_payment(
            session,
            account_number=account,
            amount=amount,
            currency=settings.currency,
            reference=reference,
            note=note,
            actor=g.actor,
            receipt_owner=receipt_owner,
        )
        item = payment_json(moved.payment)
        item["balance"] = money(moved.customer.balance_minor)
        return item, 201 if moved.created else 200

    return change(operation)


def _moved_json(moved: Any) -> dict[str, Any]:
    balance = moved.customer.balance_minor
    body: dict[str, Any] = {
        "payment": payment_json(moved.payment),
        "balance": money(balance),
        "customer": customer_json(moved.customer),
    }
    if balance < 0:
        body["negative_balance"] = True
        body["message"] = (
            f"{moved.customer.account_number}'s balance is now {money(balance)}: "
            "the credit had already been spent"
        )
    return body


@bp.post("/payments/<payment_id>/associate")
@require("operator")
def associate_payment(payment_id: str) -> tuple[Response, int]:
    ident = path_id(payment_id, "payment", "payment_not_found")
    body = json_body(ASSOCIATION_BODY)
    account = body["account_number"]
    if not isinstance(account, str) or not account.strip():
        raise InvalidInput(
            "account_number is required: the customer to move the payment to",
            "invalid_account_number",
        )

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        return _moved_json(associate(session, ident, account, actor=g.actor)), 200

    return change(operation)


@bp.post("/payments/<payment_id>/disassociate")
@require("operator")
def disassociate_payment(payment_id: str) -> tuple[Response, int]:
    ident = path_id(payment_id, "payment", "payment_not_found")
    body = json_body(DISASSOCIATION_BODY, may_be_empty=True)
    reason = optional_text(body, "reason", 500)

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        return _moved_json(disassociate(session, ident, reason=reason, actor=g.actor)), 200

    return change(operation)
