"""Reconciling with the provider: look one transaction code up, and reverse a payment.

Each is stored, committed, then the provider is asked (outside the transaction); its
result arrives later by callback and is worked from the inbox like any other.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify
from sqlalchemy.orm import Session

from api.auth import require
from api.common import (
    Fields,
    bp,
    change_then,
    json_body,
    optional_text,
    path_id,
    payment_json,
    provider_problem,
    request_session,
    runtime,
)
from ingest import lookups_reversals
from ingest.providers import reconcilers
from ingest.providers.outbound import NoAnswer
from matcher.errors import NotFound
from matcher.lookups import get_lookup
from matcher.models import Lookup, Payment, Reversal
from matcher.payments import lock_payment
from matcher.reversals import get_reversal, latest_reversal

LOOKUP_BODY = Fields(required=("code",))
REVERSAL_BODY = Fields(optional=("note",))


def lookup_json(lookup: Lookup) -> dict[str, Any]:
    return {
        "id": lookup.id,
        "provider": lookup.provider,
        "code": lookup.code,
        "status": lookup.status,
        "originator_id": lookup.originator_id,
        "conversation_id": lookup.conversation_id,
        "result_code": lookup.result_code,
        "result_description": lookup.result_description,
        "payment_id": lookup.payment_id,
        "created_by": lookup.created_by,
        "created_at": lookup.created_at.isoformat(),
        "updated_at": lookup.updated_at.isoformat(),
    }


def reversal_json(reversal: Reversal | None) -> dict[str, Any] | None:
    if reversal is None:
        return None
    return {
        "id": reversal.id,
        "status": reversal.status,
        "originator_id": reversal.originator_id,
        "conversation_id": reversal.conversation_id,
        "result_code": reversal.result_code,
        "result_description": reversal.result_description,
        "note": reversal.note,
        "created_by": reversal.created_by,
        "created_at": reversal.created_at.isoformat(),
        "updated_at": reversal.updated_at.isoformat(),
    }


def reversal_state(payment: Payment, reversal: Reversal | None) -> dict[str, Any]:
    return {"payment": payment_json(payment), "reversal": reversal_json(reversal)}


@bp.post("/payments/lookup")
@require("operator")
def look_up_payment() -> tuple[Response, int]:
    """Ask the provider about one transaction code. Honours Idempotency-Key."""
    body = json_body(LOOKUP_BODY)
    rt = runtime()
    askers = reconcilers()

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        made = lookups_reversals.open_lookup(rt, session, askers, body["code"], g.actor)
        return lookup_json(made), 202

    def afterwards(item: dict[str, Any], status: int) -> tuple[dict[str, Any], int]:
        sent = lookups_reversals.send_lookup(rt, askers, item["id"])
        with rt.sessions.begin() as session:
            item = lookup_json(get_lookup(session, item["id"]))
        if sent.error is None or isinstance(sent.error, NoAnswer):
            return item, 202
        return provider_problem(sent.error, "lookup", "lookup", item)

    return change_then(operation, afterwards)


@bp.get("/lookups/<lookup_id>")
@require("viewer")
def show_lookup(lookup_id: str) -> Response:
    with request_session() as session:
        ident = path_id(lookup_id, "lookup", "lookup_not_found")
        return jsonify(lookup_json(get_lookup(session, ident)))


@bp.post("/payments/<payment_id>/reversal")
@require("admin")
def reverse_payment(payment_id: str) -> tuple[Response, int]:
    """Ask the provider to give a payment's money back to its payer. Honours
    Idempotency-Key: a repeat never asks twice."""
    ident = path_id(payment_id, "payment", "payment_not_found")
    body = json_body(REVERSAL_BODY, may_be_empty=True)
    note = optional_text(body, "note", 100)
    rt = runtime()
    askers = reconcilers()

    def operation(session: Session) -> tuple[dict[str, Any], int]:
        reversal = lookups_reversals.open_reversal(
            rt, session, askers, ident, note=note, actor=g.actor
        )
        return reversal_state(lock_payment(session, ident), reversal), 202

    def afterwards(item: dict[str, Any], status: int) -> tuple[dict[str, Any], int]:
        reversal_id = item["reversal"]["id"]
        sent = lookups_reversals.send_reversal(rt, askers, reversal_id)
        with rt.sessions.begin() as session:
            reversal = get_reversal(session, reversal_id)
            payment = session.get(Payment, reversal.payment_id)
            assert payment is not None
            item = reversal_state(payment, reversal)
        if sent.error is None or isinstance(sent.error, NoAnswer):
            return item, 202
        return provider_problem(sent.error, "reversal", "reversal_state", item)

    return change_then(operation, afterwards)


@bp.get("/payments/<payment_id>/reversal")
@require("viewer")
def show_reversal(payment_id: str) -> Response:
    ident = path_id(payment_id, "payment", "payment_not_found")
    with request_session() as session:
        # The reversal first: each statement reads what is committed when it starts, and a
        # result marks the reversal done and reverses the payment in one commit, so a
        # payment read after a done reversal is always the reversed one (the other order
        # could show a done reversal beside a payment not yet reversed).
        reversal = latest_reversal(session, ident)
        payment = session.get(Payment, ident)
        if payment is None:
            raise NotFound(f"no payment has id {ident}", "payment_not_found")
        return jsonify(reversal_state(payment, reversal))
