"""Customers: find, create, edit, their ledger, and vouchers bought from their balance."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Response, g, jsonify, request
from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session

from api.auth import require
from api.common import (
    CUSTOMER_COLUMNS,
    Fields,
    bp,
    change,
    customer_item,
    customer_json,
    decode_cursor,
    encode_cursor,
    json_body,
    limit_arg,
    money,
    phones_of,
    q_arg,
    request_session,
    runtime,
    time_arg,
)
from api.reports import transaction_page
from matcher.customers import UNCHANGED, get_customer, save_customer
from matcher.matching import account_key
from matcher.models import Customer, CustomerPhone, Purchase
from matcher.phones import normalise_msisdn
from matcher.plans import purchase
from matcher.reports import TransactionFilter
from matcher.search import like_escape, phone_digit_runs

NEW_CUSTOMER_BODY = Fields(required=("account_number", "name"), optional=("phones",))
CUSTOMER_CHANGE_BODY = Fields(optional=("name", "phones"))
PURCHASE_ORDER_BODY = Fields(required=("plan",))


@bp.post("/customers")
@require("operator")
def create_customer() -> tuple[Response, int]:
    body = json_body(NEW_CUSTOMER_BODY)
    settings = runtime().settings

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        saved = save_customer(
            session,
            account_number=body["account_number"],
            name=body["name"],
            phones=body.get("phones"),
            region=settings.default_region,
            actor=g.actor,
            create_only=True,
        )
        session.refresh(saved.customer)
        result = customer_json(saved.customer)
        result["rematched_payments"] = saved.rematched
        return result, 201

    response, status = change(operation)
    if status == 201:
        account = response.get_json()["account_number"]
        response.headers["Location"] = f"/api/v1/customers/{quote(account, safe='')}"
    return response, status


@bp.get("/customers")
@require("viewer")
def list_customers() -> Response:
    """Customers by account number, for the dropdown; ``q`` finds by account, name or phone."""
    limit = limit_arg()
    customer = Customer.__table__.c
    query = select(*CUSTOMER_COLUMNS).order_by(customer.account_key).limit(limit + 1)
    q = q_arg()
    if q:
        # lower(), not casefold(): the database lowers the stored name the same way
        lowered = like_escape(q.lower())
        phone_matches = []
        e164 = normalise_msisdn(q, runtime().settings.default_region)
        if e164:
            phone_matches.append(CustomerPhone.e164 == e164)
        phone_matches.extend(
            CustomerPhone.e164.like(f"%{like_escape(run)}%", escape="\\")
            for run in phone_digit_runs(q)
        )
        conditions: list[ColumnElement[bool]] = [
            customer.account_key.like(f"{like_escape(account_key(q))}%", escape="\\"),
            func.lower(customer.name).like(f"%{lowered}%", escape="\\"),
        ]
        if phone_matches:
            conditions.append(
                exists().where(CustomerPhone.customer_id == customer.id, or_(*phone_matches))
            )
        query = query.where(or_(*conditions))
    cursor = request.args.get("cursor")
    if cursor:
        (after,) = decode_cursor(cursor, str)
        query = query.where(customer.account_key > after)
    with request_session() as session:
        rows = session.execute(query).all()
        page, more = rows[:limit], len(rows) > limit
        phones = phones_of(session, [c.id for c in page])
        return jsonify(
            {
                "items": [customer_item(c, phones[c.id]) for c in page],
                "next_cursor": encode_cursor(page[-1].account_key) if more else None,
            }
        )


@bp.get("/customers/<path:account_number>/transactions")
@require("viewer")
def customer_transactions(account_number: str) -> Response:
    with request_session() as session:
        customer = get_customer(session, account_number)
        account = customer.account_number
    return transaction_page(
        TransactionFilter(
            account_number=account,
            kind=request.args.get("kind") or None,
            since=time_arg("from"),
            until=time_arg("to"),
            q=q_arg(),
        )
    )


@bp.get("/customers/<path:account_number>/purchases")
@require("viewer")
def customer_purchases(account_number: str) -> Response:
    limit = limit_arg()
    with request_session() as session:
        customer = get_customer(session, account_number)
        query = (
            select(Purchase)
            .where(Purchase.customer_id == customer.id)
            .order_by(Purchase.id.desc())
            .limit(limit + 1)
        )
        cursor = request.args.get("cursor")
        if cursor:
            (before,) = decode_cursor(cursor, int)
            query = query.where(Purchase.id < before)
        rows = list(session.scalars(query))
        page, more = rows[:limit], len(rows) > limit
        return jsonify(
            {
                "items": [purchase_json(p) for p in page],
                "next_cursor": encode_cursor(page[-1].id) if more else None,
            }
        )


def purchase_json(bought: Purchase) -> dict[str, Any]:
    return {
        "voucher_code": bought.voucher_code,
        "plan": bought.plan_code,
        "price": money(bought.price_minor),
        "valid_until": bought.valid_until.isoformat(),
        "created_by": bought.created_by,
        "created_at": bought.created_at.isoformat(),
    }


@bp.get("/customers/<path:account_number>")
@require("viewer")
def show_customer(account_number: str) -> Response:
    with request_session() as session:
        return jsonify(customer_json(get_customer(session, account_number)))


@bp.patch("/customers/<path:account_number>")
@require("operator")
def edit_customer(account_number: str) -> tuple[Response, int]:
    """Change name and/or phones (the list given replaces the customer's phones)."""
    body = json_body(CUSTOMER_CHANGE_BODY)
    settings = runtime().settings

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        customer = get_customer(session, account_number, lock=True)
        saved = save_customer(
            session,
            account_number=customer.account_number,
            name=body.get("name", UNCHANGED),
            phones=body["phones"] if "phones" in body else [p.e164 for p in customer.phones],
            region=settings.default_region,
            actor=g.actor,
        )
        session.refresh(saved.customer)
        result = customer_json(saved.customer)
        result["rematched_payments"] = saved.rematched
        return result, 200

    return change(operation)


@bp.post("/customers/<path:account_number>/purchases")
@require("operator")
def buy_plan(account_number: str) -> tuple[Response, int]:
    """Buy a plan from the balance: 201 with the voucher, 409 when the balance is short."""
    body = json_body(PURCHASE_ORDER_BODY)

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        bought = purchase(session, account_number, body["plan"], actor=g.actor)
        result = purchase_json(bought.purchase)
        result["balance"] = money(bought.customer.balance_minor)
        result["account_number"] = bought.customer.account_number
        return result, 201

    return change(operation)
