"""Plans customers buy from their balance (admins manage them, everyone reads them)."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import require
from api.common import Fields, bp, change, json_body, money, request_session, runtime
from matcher.errors import InvalidInput
from matcher.models import Plan
from matcher.plans import create_plan, get_plan, update_plan


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "code": plan.code,
        "name": plan.name,
        "price": money(plan.price_minor),
        "validity_minutes": plan.validity_minutes,
        "active": plan.active,
        "currency": runtime().settings.currency,
    }


NEW_PLAN_BODY = Fields(required=("code", "name", "price", "validity_minutes"))
PLAN_CHANGE_BODY = Fields(optional=("name", "price", "validity_minutes", "active"))


@bp.post("/plans")
@require("admin")
def add_plan() -> tuple[Response, int]:
    body = json_body(NEW_PLAN_BODY)

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        plan = create_plan(
            session,
            code=body["code"],
            name=body["name"],
            price=body["price"],
            validity_minutes=body["validity_minutes"],
            actor=g.actor,
        )
        return plan_json(plan), 201

    return change(operation)


@bp.get("/plans")
@require("viewer")
def list_plans() -> Response:
    active = request.args.get("active")
    if active not in (None, "true", "false"):
        raise InvalidInput("active must be true or false", "invalid_active")
    query = select(Plan).order_by(Plan.price_minor, Plan.code)
    if active is not None:
        query = query.where(Plan.active == (active == "true"))
    with request_session() as session:
        return jsonify(
            {"items": [plan_json(p) for p in session.scalars(query)], "next_cursor": None}
        )


@bp.get("/plans/<code>")
@require("viewer")
def show_plan(code: str) -> Response:
    with request_session() as session:
        return jsonify(plan_json(get_plan(session, code)))


@bp.patch("/plans/<code>")
@require("admin")
def edit_plan(code: str) -> tuple[Response, int]:
    body = json_body(PLAN_CHANGE_BODY)

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        return plan_json(update_plan(session, code, body, actor=g.actor)), 200

    return change(operation)
