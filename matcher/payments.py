"""Recording payments and attempts, and crediting matched ones through the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from matcher.ledger import PAYMENT_CREDIT, Ledger, Posting
from matcher.matching import NO_MATCH, Match, match_payment
from matcher.models import (
    ASSOCIATED,
    UNASSOCIATED,
    LedgerEntry,
    Payment,
    PaymentAttempt,
)
from matcher.notifications import FailedAttempt, Msisdn, PaymentNotification

# What recording a callback came to; also the processed inbox row's ``reason``.
CREDITED = "credited"
UNMATCHED = "unassociated"
DUPLICATE = "duplicate"
ATTEMPT_RECORDED = "attempt_recorded"
ATTEMPT_DUPLICATE = "attempt_duplicate"


@dataclass(frozen=True)
class Recorded:
    outcome: str
    payment_id: int | None = None


def find_payment(session: Session, provider: str, code: str) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.provider == provider, Payment.code == code))


def credit(ledger: Ledger, payment: Payment, customer_id: int, *, kind: str, actor: str) -> None:
    """Credit ``payment`` to a customer: the n-th association of a payment has key n."""
    previous = ledger.session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.payment_id == payment.id, LedgerEntry.amount_minor > 0)
    )
    ledger.post(
        Posting(
            customer_id=customer_id,
            amount=payment.amount_minor,
            kind=kind,
            idempotency_key=f"payment:{payment.id}:credit:{int(previous or 0) + 1}",
            created_by=actor,
            payment_id=payment.id,
        )
    )


def _apply_match(payment: Payment, match: Match) -> None:
    if match.matched:
        payment.status = ASSOCIATED
        payment.customer_id = match.customer_id
        payment.match_method = match.method
        payment.reason = None
        payment.candidates = []
    else:
        payment.status = UNASSOCIATED
        payment.customer_id = None
        payment.match_method = None
        payment.reason = match.reason
        payment.candidates = list(match.candidates)


def record_payment(
    session: Session,
    ledger: Ledger,
    notification: PaymentNotification,
    *,
    region: str,
    inbox_id: int | None = None,
    actor: str = "system",
) -> Recorded:
    """Store a payment once and credit its customer once.

    A payment whose (provider, code) is already stored is left as it is: a
    repeated callback changes nothing. Two transactions racing to store the
    same code meet at the unique constraint; the loser raises IntegrityError,
    which the caller turns into ``duplicate`` after rolling back its savepoint.
    """
    existing = find_payment(session, notification.provider, notification.code)
    if existing is not None:
        return Recorded(DUPLICATE, existing.id)
    msisdn = notification.msisdn
    payment = Payment(
        provider=notification.provider,
        channel=notification.channel,
        code=notification.code,
        amount_minor=notification.amount,
        currency=notification.currency,
        paid_at=notification.paid_at,
        msisdn_raw=msisdn.raw,
        msisdn_kind=msisdn.kind,
        phone=msisdn.e164,
        msisdn_sha256=msisdn.sha256,
        payer_name=notification.payer_name,
        account_reference=notification.account_reference,
        business_short_code=notification.business_short_code,
        transaction_type=notification.transaction_type,
        inbox_id=inbox_id,
        candidates=[],
    )
    match = match_payment(
        session,
        account_reference=notification.account_reference,
        msisdn=msisdn,
        region=region,
    )
    _apply_match(payment, match)
    session.add(payment)
    session.flush()
    if match.customer_id is None:
        return Recorded(UNMATCHED, payment.id)
    credit(ledger, payment, match.customer_id, kind=PAYMENT_CREDIT, actor=actor)
    return Recorded(CREDITED, payment.id)


def record_attempt(session: Session, attempt: FailedAttempt, *, inbox_id: int | None) -> Recorded:
    """Keep a failed attempt for the transaction log; it never touches a balance."""
    existing = session.scalar(
        select(PaymentAttempt.id).where(
            PaymentAttempt.provider == attempt.provider,
            PaymentAttempt.reference == attempt.reference,
        )
    )
    if existing is not None:
        return Recorded(ATTEMPT_DUPLICATE)
    row = PaymentAttempt(
        provider=attempt.provider,
        channel=attempt.channel,
        reference=attempt.reference,
        merchant_reference=attempt.merchant_reference,
        result_code=attempt.result_code,
        result_desc=attempt.result_desc[:500],
        inbox_id=inbox_id,
    )
    session.add(row)
    session.flush()
    return Recorded(ATTEMPT_RECORDED)


def rematch_phones(
    session: Session,
    ledger: Ledger,
    *,
    e164s: list[str],
    sha256s: list[str],
    region: str,
    actor: str,
) -> list[int]:
    """Match again the ``no_match`` payments from these numbers; return those now credited.

    Payments an operator disassociated keep their reason and are never matched
    again automatically. Rows are locked so a concurrent operator action on
    the same payment waits instead of crediting twice.
    """
    if not e164s and not sha256s:
        return []
    conditions = []
    if e164s:
        conditions.append(Payment.phone.in_(e164s))
    if sha256s:
        conditions.append(Payment.msisdn_sha256.in_(sha256s))
    payments = session.scalars(
        select(Payment)
        .where(Payment.status == UNASSOCIATED, Payment.reason == NO_MATCH, or_(*conditions))
        .order_by(Payment.id)
        .with_for_update()
    ).all()
    credited = []
    for payment in payments:
        match = match_payment(
            session,
            account_reference=payment.account_reference,
            msisdn=Msisdn(
                raw=payment.msisdn_raw,
                kind=payment.msisdn_kind,  # type: ignore[arg-type]
                e164=payment.phone,
                sha256=payment.msisdn_sha256,
            ),
            region=region,
        )
        _apply_match(payment, match)
        if match.customer_id is not None:
            credit(ledger, payment, match.customer_id, kind=PAYMENT_CREDIT, actor=actor)
            credited.append(payment.id)
    session.flush()
    return credited
