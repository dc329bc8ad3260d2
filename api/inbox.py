"""The inbox for admins: every stored callback by state, and replay of dead ones."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import require
from api.common import (
    Fields,
    bp,
    change,
    decode_cursor,
    encode_cursor,
    json_body,
    limit_arg,
    path_id,
    request_session,
    runtime,
)
from matcher.errors import InvalidInput, NotFound
from matcher.inbox import replay
from matcher.models import INBOX_STATUSES, InboxItem


def inbox_json(item: InboxItem, *, body: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.id,
        "provider": item.provider,
        "kind": item.kind,
        "status": item.status,
        "reason": item.reason,
        "detail": item.detail,
        "code": item.code,
        "attempts": item.attempts,
        "received_at": item.received_at.isoformat(),
        "processed_at": item.processed_at.isoformat() if item.processed_at else None,
        "next_attempt_at": item.next_attempt_at.isoformat() if item.next_attempt_at else None,
        "payment_id": item.payment_id,
        "client_addr": item.client_addr,
    }
    if body:
        data["body"] = item.body.decode("utf-8", errors="replace")
        data["headers"] = item.headers
    return data


@bp.get("/inbox")
@require("admin")
def list_inbox() -> Response:
    """Stored callbacks in one state (default dead), newest first."""
    status = request.args.get("status", "dead")
    if status not in INBOX_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(INBOX_STATUSES)}", "invalid_status")
    limit = limit_arg()
    query = (
        select(InboxItem)
        .where(InboxItem.status == status)
        .order_by(InboxItem.id.desc())
        .limit(limit + 1)
    )
    cursor = request.args.get("cursor")
    if cursor:
        (before,) = decode_cursor(cursor, int)
        query = query.where(InboxItem.id < before)
    with request_session() as session:
        rows = list(session.scalars(query))
    page, more = rows[:limit], len(rows) > limit
    return jsonify(
        {
            "items": [inbox_json(item) for item in page],
            "next_cursor": encode_cursor(page[-1].id) if more else None,
        }
    )


@bp.get("/inbox/<inbox_id>")
@require("admin")
def show_inbox(inbox_id: str) -> Response:
    ident = path_id(inbox_id, "inbox row", "inbox_not_found")
    with request_session() as session:
        item = session.get(InboxItem, ident)
        if item is None:
            raise NotFound(f"no inbox row has id {ident}", "inbox_not_found")
        return jsonify(inbox_json(item, body=True))


#: a replay takes no fields: any sent are refused, as on every other change
REPLAY_BODY = Fields()


@bp.post("/inbox/<inbox_id>/replay")
@require("admin")
def replay_inbox(inbox_id: str) -> tuple[Response, int]:
    """Queue a dead or rejected callback again; its effect happens at most once."""
    ident = path_id(inbox_id, "inbox row", "inbox_not_found")
    json_body(REPLAY_BODY, may_be_empty=True)

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        return inbox_json(replay(session, ident, actor=g.actor)), 202

    response = change(operation)
    runtime().nudge()
    return response
