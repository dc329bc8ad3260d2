"""Operator tokens, managed by admins over the API (the CLI does the same)."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import issue_token, require, revoke_token
from api.common import (
    Fields,
    ShownOnce,
    bp,
    change,
    json_body,
    path_id,
    request_session,
    runtime,
)
from matcher.errors import Conflict, DomainError, NotFound
from matcher.models import ApiToken


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


TOKEN_ORDER_BODY = Fields(required=("name", "role"))


def _secret_shown_once(first: dict[str, Any]) -> DomainError:
    return Conflict(
        f"this Idempotency-Key already created token {first.get('id')} "
        f"({first.get('name')!r}, {first.get('role')}); its secret was in that answer only "
        "and is kept nowhere. If it was lost, revoke the token with "
        f"DELETE /api/v1/tokens/{first.get('id')} and create a new one.",
        "token_secret_shown_once",
    )


@bp.post("/tokens")
@require("admin")
def add_token() -> tuple[Response, int]:
    """A new token; the secret is in this answer only, whatever the headers."""
    body = json_body(TOKEN_ORDER_BODY)

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        token, raw = issue_token(session, name=body["name"], role=body["role"], actor=g.actor)
        return {**token_json(token), "token": raw}, 201

    return change(operation, secret=ShownOnce("token", _secret_shown_once))


@bp.get("/tokens")
@require("admin")
def list_tokens() -> Response:
    with request_session() as session:
        tokens = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        return jsonify({"items": [token_json(t) for t in tokens], "next_cursor": None})


@bp.get("/me")
@require("viewer")
def show_me() -> Response:
    """The calling token's own name and role, and the business's time zone and currency:
    what a screen needs to offer only the actions the token may take and to show times and
    money as the business reads them. It changes nothing and shows no secret."""
    settings = runtime().settings
    bearer = g.bearer
    return jsonify(
        {
            "id": bearer.id,
            "name": bearer.name,
            "role": bearer.role,
            "timezone": settings.zone.key,
            "currency": settings.currency,
        }
    )


@bp.delete("/tokens/<token_id>")
@require("admin")
def delete_token(token_id: str) -> tuple[Response, int]:
    """Revoke a token: it answers 401 from now on. Revoking twice changes nothing."""
    ident = path_id(token_id, "token", "token_not_found")

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        token = revoke_token(session, ident, actor=g.actor)
        if token is None:
            raise NotFound(f"no token has id {ident}", "token_not_found")
        return token_json(token), 200

    return change(operation)
