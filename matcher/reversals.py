"""Reversals: the provider gives a payment's money back to its payer.

An admin asks for one (``open_reversal``: stored before the provider is asked, like a
payment request); the provider's result, or its statement's reversal row, reports that
it happened, and ``reverse_payment`` applies it: the payment is marked reversed once,
and a customer it was credited to is debited once through the ledger (the balance may go
negative, as with a disassociation), its revenue moving as a disassociation's does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from matcher.audit import audit
from matcher.db import utcnow
from matcher.errors import Conflict
from matcher.ledger import REVERSAL, Ledger, Posting
from matcher.matching import REVERSED, Match
from matcher.models import (
    ASSOCIATED,
    REVERSAL_DONE,
    REVERSAL_FAILED,
    REVERSAL_OPEN,
    REVERSAL_REQUESTED,
    REVERSAL_SENT,
    Payment,
    Reversal,
)
from matcher.notifications import ReversalResult
from matcher.payments import MANUAL, Recorded, _apply_match, find_payment, lock_payment
from matcher.provider_records import note_reversal
from matcher.text import fit

#: what recording a reversal came to (also the inbox row's reason)
REVERSED_OUTCOME = "reversed"
ALREADY_REVERSED = "already_reversed"
REVERSAL_FAILED_OUTCOME = "reversal_failed"
#: a reversal of a payment momo never stored, or an answer to a request it does not know
UNKNOWN_REVERSAL = "unknown_reversal"


def latest_reversal(session: Session, payment_id: int) -> Reversal | None:
    return session.scalar(
        select(Reversal)
        .where(Reversal.payment_id == payment_id)
        .order_by(Reversal.id.desc())
        .limit(1)
    )


def open_reversal(
    session: Session,
    payment_id: int,
    *,
    reversible: frozenset[str],
    note: str | None,
    actor: str,
) -> Reversal:
    """A reversal request for a payment, stored (the caller commits, then asks the
    provider). Refused for a payment no provider in ``reversible`` recorded, one without
    the provider's receipt, one already reversed, and one with a request still open."""
    payment = lock_payment(session, payment_id)
    if payment.provider not in reversible:
        can = ", ".join(sorted(reversible)) or "none is set up"
        raise Conflict(
            f"payment {payment.id} came from {payment.provider}, which momo cannot ask to "
            f"reverse a payment (providers that can: {can}); reverse it with the provider",
            "provider_cannot_reverse",
        )
    if payment.channel == MANUAL and payment.confirmed_at is None:
        raise Conflict(
            f"payment {payment.id} was entered by hand and no provider record has confirmed "
            f"its receipt {payment.code}; confirm it first (look the code up), or "
            "disassociate it",
            "receipt_unconfirmed",
        )
    if payment.reversed_at is not None:
        raise Conflict(
            f"payment {payment.id} was already reversed on {payment.reversed_at.isoformat()} "
            f"(reversal receipt {payment.reversal_receipt or 'unknown'})",
            "already_reversed",
        )
    open_one = session.scalar(
        select(Reversal).where(
            Reversal.payment_id == payment.id, Reversal.status.in_(REVERSAL_OPEN)
        )
    )
    if open_one is not None:
        raise Conflict(
            f"reversal {open_one.id} of payment {payment.id} is still {open_one.status}; "
            "wait for the provider's result",
            "reversal_in_progress",
        )
    reversal = Reversal(
        payment_id=payment.id,
        provider=payment.provider,
        status=REVERSAL_REQUESTED,
        note=note,
        created_by=actor,
    )
    session.add(reversal)
    session.flush()
    audit(
        session,
        actor=actor,
        action="payment.reversal_requested",
        subject_type="payment",
        subject_id=str(payment.id),
        before=None,
        after={"reversal_id": reversal.id, "note": note},
    )
    return reversal


def reversal_sent(
    reversal: Reversal, originator_id: str | None, conversation_id: str | None
) -> None:
    reversal.originator_id = fit(originator_id, Reversal.originator_id)
    reversal.conversation_id = fit(conversation_id, Reversal.conversation_id)
    if reversal.status == REVERSAL_REQUESTED:
        reversal.status = REVERSAL_SENT


def reversal_refused(reversal: Reversal, code: str, description: str) -> None:
    if reversal.status in REVERSAL_OPEN:
        reversal.status = REVERSAL_FAILED
        reversal.result_code = fit(code, Reversal.result_code)
        reversal.result_description = description


def get_reversal(session: Session, reversal_id: int, *, lock: bool = False) -> Reversal:
    query = select(Reversal).where(Reversal.id == reversal_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    reversal = session.scalar(query)
    assert reversal is not None, f"reversal {reversal_id} vanished"
    return reversal


def reverse_payment(
    session: Session,
    ledger: Ledger,
    payment_id: int,
    *,
    receipt: str | None,
    reversed_at: datetime | None,
    actor: str,
    source: str,
) -> bool:
    """Mark the payment reversed and take its money off the customer it was credited to;
    False (and nothing changed) when it was already reversed. Once, however often and by
    however many records (result callbacks, statements) it is reported: the payment row
    is locked, and the debit's idempotency key is the payment's."""
    payment = lock_payment(session, payment_id)
    if payment.reversed_at is not None:
        return False
    before = reversal_state(payment)
    customer = payment.customer
    if payment.status == ASSOCIATED and customer is not None:
        ledger.post(
            Posting(
                customer_id=customer.id,
                amount=-payment.amount_minor,
                kind=REVERSAL,
                idempotency_key=f"payment:{payment.id}:reversed",
                created_by=actor,
                payment_id=payment.id,
                note=f"reversed ({source})",
                revenue_at=payment.paid_at,
            )
        )
    _apply_match(payment, Match(None, reason=REVERSED))
    payment.customer = None
    payment.reversed_at = reversed_at or utcnow()
    payment.reversal_receipt = fit(receipt, Payment.reversal_receipt)
    session.flush()
    audit(
        session,
        actor=actor,
        action="payment.reversed",
        subject_type="payment",
        subject_id=str(payment.id),
        before=before,
        after={**reversal_state(payment), "source": source},
    )
    return True


def reversal_state(payment: Payment) -> dict[str, object]:
    return {
        "status": payment.status,
        "account_number": payment.customer.account_number if payment.customer else None,
        "reversed_at": payment.reversed_at.isoformat() if payment.reversed_at else None,
        "reversal_receipt": payment.reversal_receipt,
    }


def _find_reversal(session: Session, result: ReversalResult) -> Reversal | None:
    ids = []
    if result.conversation_id:
        ids.append(Reversal.conversation_id == result.conversation_id)
    if result.originator_id:
        ids.append(Reversal.originator_id == result.originator_id)
    if not ids:
        return None
    return session.scalar(
        select(Reversal)
        .where(Reversal.provider == result.provider, or_(*ids))
        .order_by(Reversal.id)
        .limit(1)
        .with_for_update()
    )


def record_reversal_result(
    session: Session,
    ledger: Ledger,
    result: ReversalResult,
    *,
    inbox_id: int | None = None,
    actor: str = "system",
) -> Recorded:
    """A reversal the provider reports (its result callback, a statement row): the payment
    it names is reversed once (``reverse_payment``); a failed one marks the request and
    moves no money."""
    reversal = _find_reversal(session, result)
    payment: Payment | None = None
    if reversal is not None:
        payment = session.get(Payment, reversal.payment_id)
    elif result.original_code:
        payment = find_payment(session, result.provider, result.original_code)
    if result.state != "reversed":
        if reversal is None:
            return Recorded(
                UNKNOWN_REVERSAL,
                detail=f"no reversal request is known to {result.provider} by conversation "
                f"{result.conversation_id!r} or originator {result.originator_id!r}",
            )
        if reversal.status in REVERSAL_OPEN:
            reversal.status = REVERSAL_FAILED if result.state == "failed" else result.state
            reversal.result_code = fit(result.result_code, Reversal.result_code)
            reversal.result_description = result.result_description
        return Recorded(REVERSAL_FAILED_OUTCOME, reversal.payment_id)
    if result.receipt and (result.original_code or payment is not None):
        note_reversal(
            session,
            provider=result.provider,
            code=result.receipt,
            reverses=result.original_code or (payment.code if payment else ""),
            amount=result.amount or (payment.amount_minor if payment else 0),
            reversed_at=result.reversed_at or utcnow(),
            source=result.source,
            inbox_id=inbox_id,
        )
    if payment is None:
        return Recorded(
            UNKNOWN_REVERSAL,
            detail=f"{result.provider} reversed receipt {result.original_code!r}, which no "
            "stored payment has; nothing was applied",
        )
    if reversal is not None and reversal.status != REVERSAL_DONE:
        reversal.status = REVERSAL_DONE
        reversal.result_code = fit(result.result_code, Reversal.result_code)
        reversal.result_description = result.result_description
    changed = reverse_payment(
        session,
        ledger,
        payment.id,
        receipt=result.receipt,
        reversed_at=result.reversed_at,
        actor=actor,
        source=result.source,
    )
    if changed and reversal is None:
        # reversed by the provider on its own (its portal): any open request is done too
        for open_one in session.scalars(
            select(Reversal).where(
                Reversal.payment_id == payment.id, Reversal.status.in_(REVERSAL_OPEN)
            )
        ):
            open_one.status = REVERSAL_DONE
    return Recorded(REVERSED_OUTCOME if changed else ALREADY_REVERSED, payment.id)
