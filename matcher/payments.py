"""Recording payments and attempts, and crediting matched ones through the ledger."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, case, func, or_, select
from sqlalchemy.orm import Session

from matcher import payment_requests
from matcher.audit import audit
from matcher.db import insert_rows, one_of, utcnow
from matcher.errors import Conflict, InvalidInput, NotFound
from matcher.ledger import DISASSOCIATION, MANUAL_PAYMENT, PAYMENT_CREDIT, Ledger, Posting
from matcher.matching import (
    BY_OPERATOR,
    DISASSOCIATED,
    INVALID_REFERENCE,
    NO_MATCH,
    LoadedDirectory,
    Match,
    decide,
    get_customer,
    hold_phones,
    match_payment,
)
from matcher.models import (
    ASSOCIATED,
    UNASSOCIATED,
    Customer,
    LedgerEntry,
    Payment,
    PaymentAttempt,
    PaymentRequest,
)
from matcher.money import format_minor
from matcher.notifications import FailedAttempt, Msisdn, PaymentNotification, RequestResult
from matcher.phones import classify_msisdn
from matcher.text import fit

# What recording a callback came to; also the processed inbox row's ``reason``.
CREDITED = "credited"
UNMATCHED = "unassociated"
DUPLICATE = "duplicate"
CONFLICT = "conflict"

MANUAL = "manual"

#: Which provider issued a receipt code, and the code as that provider writes it: given
#: a reference an operator typed, ``(provider, code)`` or None when it is no provider's
#: receipt. Supplied by the caller (the provider adapters know their receipt formats).
ReceiptOwner = Callable[[str], tuple[str, str] | None]
#: a receipt and a payment settled by asking, which named none, are one payment when
#: they are this close in time (and of the same amount and payer): the asking happens
#: minutes after the payer paid
RECEIPT_WINDOW = timedelta(minutes=15)
ATTEMPT_RECORDED = "attempt_recorded"
ATTEMPT_DUPLICATE = "attempt_duplicate"

PAYMENTS: Table = Payment.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Recorded:
    outcome: str
    payment_id: int | None = None
    detail: str | None = None


def differences(payment: Payment, notification: PaymentNotification) -> list[str]:
    """How a repeated receipt disagrees with the stored payment, field by field.

    Only what both sides know is compared: a phone-prompt callback may have no account
    reference, a payment recorded by hand has no phone, and a hashed number
    is compared with a hash.
    """
    found = []
    if payment.amount_minor != notification.amount:
        found.append(
            f"amount {format_minor(notification.amount)} != {format_minor(payment.amount_minor)}"
        )
    if payment.channel == MANUAL:
        return found
    # compared as it would be stored: a reference too long for its column was kept cut
    kept = fit(notification.account_reference, Payment.account_reference)
    stored_ref = (payment.account_reference or "").strip().casefold()
    new_ref = (kept or "").strip().casefold()
    if payment.account_reference is not None and kept is not None and stored_ref != new_ref:
        found.append(
            f"account reference {notification.account_reference!r} != {payment.account_reference!r}"
        )
    msisdn = notification.msisdn
    if payment.phone and msisdn.e164 and payment.phone != msisdn.e164:
        found.append(f"phone {msisdn.e164} != {payment.phone}")
    elif (
        payment.msisdn_sha256
        and msisdn.sha256
        and not (payment.phone and msisdn.e164)
        and payment.msisdn_sha256 != msisdn.sha256
    ):
        found.append("phone hash differs")
    return found


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
            revenue_at=payment.paid_at,
        )
    )


def match_values(match: Match) -> dict[str, Any]:
    """A payment's columns that say whom it belongs to, or why no one."""
    if match.matched:
        return {
            "status": ASSOCIATED,
            "customer_id": match.customer_id,
            "match_method": match.method,
            "reason": None,
            "candidates": [],
        }
    return {
        "status": UNASSOCIATED,
        "customer_id": None,
        "match_method": None,
        "reason": match.reason,
        "candidates": list(match.candidates),
    }


def _apply_match(payment: Payment, match: Match) -> None:
    for name, value in match_values(match).items():
        setattr(payment, name, value)


def payment_values(notification: PaymentNotification, inbox_id: int | None) -> dict[str, Any]:
    """The columns of a new payment; the provider's free text is kept as its column can
    hold it (the inbox keeps the exact body), so no text can stop money that moved from
    being recorded."""
    msisdn = notification.msisdn
    return {
        "provider": notification.provider,
        "channel": notification.channel,
        "code": notification.code,
        "amount_minor": notification.amount,
        "currency": notification.currency,
        "paid_at": notification.paid_at,
        "msisdn_raw": fit(msisdn.raw, Payment.msisdn_raw),
        "msisdn_kind": msisdn.kind,
        "phone": msisdn.e164,
        "msisdn_sha256": msisdn.sha256,
        "payer_name": fit(notification.payer_name, Payment.payer_name),
        "account_reference": fit(notification.account_reference, Payment.account_reference),
        "business_short_code": fit(notification.business_short_code, Payment.business_short_code),
        "transaction_type": fit(notification.transaction_type, Payment.transaction_type),
        "request_reference": fit(notification.request_reference, Payment.request_reference),
        "inbox_id": inbox_id,
        "created_by": notification.provider,
        "candidates": [],
    }


def new_payment(notification: PaymentNotification, inbox_id: int | None) -> Payment:
    """The payment row (see ``payment_values``), not yet matched nor added."""
    return Payment(**payment_values(notification, inbox_id))


def repeated(
    session: Session, ledger: Ledger, existing: Payment, notification: PaymentNotification
) -> Recorded:
    """What a receipt arriving again comes to: a duplicate, or a conflict left unapplied.

    A payment an operator entered by hand that the provider's own record now names, for
    the same amount, is confirmed by it (``confirm``): still a duplicate, no money moves.
    """
    found = differences(existing, notification)
    if found:
        return Recorded(
            CONFLICT,
            existing.id,
            f"receipt {notification.code} arrived again with different data: "
            + "; ".join(found)
            + f". Payment {existing.id} is kept as it was; nothing was applied.",
        )
    if existing.channel == MANUAL and existing.confirmed_at is None:
        confirm(session, ledger, existing, notification)
    return Recorded(DUPLICATE, existing.id)


def confirm(
    session: Session, ledger: Ledger, payment: Payment, notification: PaymentNotification
) -> None:
    """The provider's record of a payment entered by hand: the payment gains the payer's
    phone and name and the time it was paid, keeps its customer and its money, and is
    marked confirmed by that kind of record. Its revenue moves with its time."""
    lock_payment(session, payment.id)  # an operator moving it meanwhile waits, or is seen
    if payment.confirmed_at is not None or payment.amount_minor != notification.amount:
        return
    before = confirmation_state(payment)
    msisdn = notification.msisdn
    if msisdn.kind != "missing":
        payment.msisdn_raw = fit(msisdn.raw, Payment.msisdn_raw)
        payment.msisdn_kind = msisdn.kind
        payment.phone, payment.msisdn_sha256 = msisdn.e164, msisdn.sha256
    if notification.payer_name:
        payment.payer_name = fit(notification.payer_name, Payment.payer_name)
    if notification.paid_at != payment.paid_at:
        amount = LedgerEntry.amount_minor
        net, count = session.execute(
            select(
                func.coalesce(func.sum(amount), 0),
                func.coalesce(func.sum(case((amount > 0, 1), else_=-1)), 0),
            ).where(LedgerEntry.payment_id == payment.id)
        ).one()
        ledger.repaid(payment, notification.paid_at, net=int(net), count=int(count))
        payment.paid_at = notification.paid_at
    payment.confirmed_at = utcnow()
    payment.confirmed_by = notification.source
    audit(
        session,
        actor=notification.provider,
        action="payment.confirmed",
        subject_type="payment",
        subject_id=str(payment.id),
        before=before,
        after=confirmation_state(payment),
    )


def confirmation_state(payment: Payment) -> dict[str, object]:
    return {
        "phone": payment.phone,
        "msisdn_kind": payment.msisdn_kind,
        "payer_name": payment.payer_name,
        "paid_at": payment.paid_at.isoformat(),
        "confirmed_at": payment.confirmed_at.isoformat() if payment.confirmed_at else None,
        "confirmed_by": payment.confirmed_by,
    }


def record_payments(
    session: Session,
    ledger: Ledger,
    batch: list[tuple[int | None, PaymentNotification]],
    *,
    region: str,
) -> list[Recorded]:
    """``record_payment`` for a whole batch of (inbox id, notification), in a few statements.

    Same rules, same outcomes, in the batch's order: stored payments are read in
    one query, customers for every reference and payer in three, new payments and
    their credits written in one statement each (``insert_rows``); no ORM object is
    made for a new payment. The batch's phones are held (``hold_phones``) before its
    customers are read, as ``record_payment`` does for its one; a caller that already
    holds them (the inbox worker, for its fallback) asks the database nothing more. A
    receipt that another worker stores at the same moment makes the insert fail with
    IntegrityError; the caller then records the batch one row at a time, where that
    race is handled row by row.
    Payments that answer a request momo made are recorded by ``record_payment``, after
    the others, each with its request.
    """
    awaiting = awaiting_receipts(session, [n for _, n in batch])
    if any(n.request_reference or id(n) in awaiting for _, n in batch):
        plain = [(i, n) for i, n in batch if not (n.request_reference or id(n) in awaiting)]
        outcomes = iter(record_payments(session, ledger, plain, region=region))
        return [
            record_payment(session, ledger, n, region=region, inbox_id=i, actor=n.provider)
            if n.request_reference or id(n) in awaiting
            else next(outcomes)
            for i, n in batch
        ]
    wanted = {(n.provider, n.code) for _, n in batch}
    stored = {
        (p.provider, p.code): p
        for p in session.scalars(
            select(Payment).where(one_of(session, Payment.code, {code for _, code in wanted}))
        )
        if (p.provider, p.code) in wanted
    }
    fresh = [(inbox_id, n) for inbox_id, n in batch if (n.provider, n.code) not in stored]
    hold_phones(session, (n.msisdn.sha256 for _, n in fresh))
    directory = LoadedDirectory.for_payments(
        session, ((n.account_reference, n.msisdn) for _, n in fresh), region=region
    )
    now = utcnow()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for inbox_id, n in fresh:
        if (n.provider, n.code) in rows:
            continue
        match = decide(
            directory, account_reference=n.account_reference, msisdn=n.msisdn, region=region
        )
        rows[(n.provider, n.code)] = {
            **payment_values(n, inbox_id),
            **match_values(match),
            "created_at": now,
            "updated_at": now,
        }
    ids = {
        (provider, code): ident
        for ident, provider, code in insert_rows(
            session, PAYMENTS, list(rows.values()), returning=("id", "provider", "code")
        )
    }
    for row in rows.values():
        ledger.receive(row["paid_at"], row["amount_minor"])
    ledger.post_many(
        [
            Posting(
                customer_id=row["customer_id"],
                amount=row["amount_minor"],
                kind=PAYMENT_CREDIT,
                # a payment stored just now has no credits yet: this is its first
                idempotency_key=f"payment:{ids[key]}:credit:1",
                created_by=row["provider"],
                payment_id=ids[key],
                revenue_at=row["paid_at"],
            )
            for key, row in rows.items()
            if row["customer_id"] is not None
        ]
    )
    results = []
    claimed: set[tuple[str, str]] = set()
    for _, n in batch:
        key = (n.provider, n.code)
        if key in stored:
            results.append(repeated(session, ledger, stored[key], n))
        elif key in claimed:
            # a repeat inside the batch meets the payment its first stored, as it would
            # row by row (rare: read back only then)
            first = session.get(Payment, ids[key])
            assert first is not None  # inserted above, in this transaction
            results.append(repeated(session, ledger, first, n))
        else:
            claimed.add(key)
            credited = rows[key]["customer_id"] is not None
            results.append(Recorded(CREDITED if credited else UNMATCHED, ids[key]))
    return results


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
    repeated callback changes nothing. A payment that answers a request momo made
    belongs to that request's customer (``request_match``) and settles the request;
    any other is matched by the rules. A customer gaining the payer's phone at the
    same moment is either seen here or sees this payment (``hold_phones``). Two
    transactions racing to store the same code meet at the unique constraint; the
    loser raises IntegrityError, which the caller turns into ``duplicate`` after
    rolling back its savepoint.
    """
    request = (
        payment_requests.request_answered(session, notification)
        if notification.request_reference
        else None
    )
    existing = find_payment(session, notification.provider, notification.code)
    if existing is not None:
        return repeated(session, ledger, existing, notification)
    if request is not None and request.payment_id is not None:
        return _paid_again(session, request, notification, actor)
    if request is None:
        booked = awaiting_receipts(session, [notification]).get(id(notification))
        if booked is not None:
            return _receipt_named(session, booked, notification, actor, reference=booked.code)
    payment = new_payment(notification, inbox_id)
    hold_phones(session, [notification.msisdn.sha256])
    if request is not None:
        match = payment_requests.request_match(request, notification.amount)
    else:
        match = match_payment(
            session,
            account_reference=notification.account_reference,
            msisdn=notification.msisdn,
            region=region,
        )
    _apply_match(payment, match)
    session.add(payment)
    session.flush()
    ledger.received([payment])
    if request is not None:
        payment_requests.paid(request, payment, *_paid_words(notification, match))
    if match.customer_id is None:
        return Recorded(UNMATCHED, payment.id)
    credit(ledger, payment, match.customer_id, kind=PAYMENT_CREDIT, actor=actor)
    return Recorded(CREDITED, payment.id)


def _paid_words(notification: PaymentNotification, match: Match) -> tuple[str, str]:
    if match.reason == payment_requests.AMOUNT_DIFFERS:
        return (
            payment_requests.AMOUNT_DIFFERS,
            f"paid {format_minor(notification.amount)}, not the amount asked; the payment "
            "waits unassociated for an operator",
        )
    return "paid", f"paid, receipt {notification.code}"


def _paid_again(
    session: Session, request: PaymentRequest, notification: PaymentNotification, actor: str
) -> Recorded:
    """A second receipt for a request already paid. When the first was settled by asking
    the provider, who named no receipt, it was kept under the request's reference: the
    receipt now named is that payment's, and replaces it. Two receipts for one request
    are a conflict, left for an operator; nothing is applied."""
    payment = session.get(Payment, request.payment_id)
    assert payment is not None  # a request names the payment that settled it
    if payment.code == request.provider_reference and payment.amount_minor == notification.amount:
        return _receipt_named(session, payment, notification, actor, request_id=request.id)
    return Recorded(
        CONFLICT,
        payment.id,
        f"receipt {notification.code} answers payment request {request.id}, which payment "
        f"{payment.id} (receipt {payment.code}) already paid. Nothing was applied; compare "
        "both with the provider's statement.",
    )


def awaiting_receipts(
    session: Session, notifications: Iterable[PaymentNotification]
) -> dict[int, Payment]:
    """The payments settled by asking the provider, which named no receipt (kept under
    their request's reference), that these notifications are the receipts of: by
    ``id(notification)``. A receipt names such a payment when it answers no request
    itself, and has the payment's provider, amount and payer and was paid within
    ``RECEIPT_WINDOW`` of it; of several, the closest in time."""
    wanted = [n for n in notifications if not n.request_reference and n.msisdn.sha256 is not None]
    if not wanted:
        return {}
    candidates = list(
        session.scalars(
            select(Payment).where(
                one_of(session, Payment.msisdn_sha256, {n.msisdn.sha256 for n in wanted}),
                Payment.request_reference.is_not(None),
                Payment.code == Payment.request_reference,
            )
        )
    )
    found: dict[int, Payment] = {}
    taken: set[int] = set()
    for n in wanted:
        near = [
            p
            for p in candidates
            if p.id not in taken
            and p.provider == n.provider
            and p.amount_minor == n.amount
            and p.msisdn_sha256 == n.msisdn.sha256
            and abs(p.paid_at - n.paid_at) <= RECEIPT_WINDOW
        ]
        if near:
            best = min(near, key=lambda p: (abs(p.paid_at - n.paid_at), p.id))
            found[id(n)] = best
            taken.add(best.id)
    return found


def _receipt_named(
    session: Session,
    payment: Payment,
    notification: PaymentNotification,
    actor: str,
    **detail: object,
) -> Recorded:
    """The receipt of a payment kept under its request's reference (the provider, asked,
    named none): the receipt replaces the reference, the receipt's payer is the true one,
    and no money moves (the payment was credited when it was settled)."""
    before = payment_state(payment)
    payment.code = notification.code
    msisdn = notification.msisdn
    if msisdn.kind != "missing":
        payment.msisdn_raw = fit(msisdn.raw, Payment.msisdn_raw)
        payment.msisdn_kind = msisdn.kind
        payment.phone, payment.msisdn_sha256 = msisdn.e164, msisdn.sha256
    _audit(session, actor, "payment.receipt", payment, before, **detail)
    return Recorded(DUPLICATE, payment.id)


def record_request_result(
    session: Session,
    ledger: Ledger,
    result: RequestResult,
    *,
    region: str,
    inbox_id: int | None = None,
    actor: str = "system",
) -> Recorded:
    """What the provider said became of a request (its callback, or its answer when
    asked): a success is recorded and credited like any payment, once; a failure marks
    the request and moves no money. A result for a request momo does not know moves no
    money either: without the request there is no amount or customer to trust."""
    request = payment_requests.find_request(session, result.provider, result.reference)
    if request is None:
        return Recorded(
            payment_requests.UNKNOWN_REQUEST,
            detail=f"no payment request is known to {result.provider} as {result.reference!r}",
        )
    if result.state == "pending":
        return Recorded(payment_requests.REQUEST_PENDING_OUTCOME)
    if not result.verified:
        # Nothing proves who sent it: neither a success nor a failure is taken on its
        # word (a forged failure would leave a real payment uncredited). The provider is
        # asked at the next sweep; its answer settles the request.
        payment_requests.confirm_soon(request)
        return Recorded(payment_requests.TO_CONFIRM)
    if result.state == "paid" and result.code is None and request.payment_id is not None:
        return Recorded(DUPLICATE, request.payment_id)  # the provider confirms what we know
    if result.state == "paid" and result.code is None:
        # a payment naming this request that was stored before the request could be found
        # for it is the one the provider means: it settles the request, nothing is booked
        known = payment_requests.payment_answering(session, result.provider, result.reference)
        if known is not None:
            payment_requests.paid(request, known, "paid", f"paid, receipt {known.code}")
            return Recorded(DUPLICATE, known.id)
    if result.state != "paid":
        changed = payment_requests.failed(
            request,
            result.result_code,
            result.result_description,
            cancelled=result.state == "cancelled",
        )
        return Recorded(
            payment_requests.REQUEST_FAILED_OUTCOME if changed else payment_requests.ALREADY_SETTLED
        )
    notification = PaymentNotification(
        provider=result.provider,
        channel=result.channel,
        code=result.code or result.reference,
        amount=request.amount_minor if result.amount is None else result.amount,
        currency=result.currency or request.currency,
        paid_at=result.paid_at or utcnow(),
        msisdn=result.msisdn or classify_msisdn(request.phone, region),
        payer_name=result.payer_name,
        request_reference=result.reference,
    )
    return record_payment(
        session, ledger, notification, region=region, inbox_id=inbox_id, actor=actor
    )


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
        merchant_reference=fit(attempt.merchant_reference, PaymentAttempt.merchant_reference),
        result_code=attempt.result_code,
        result_desc=fit(attempt.result_desc, PaymentAttempt.result_desc),
        inbox_id=inbox_id,
    )
    session.add(row)
    session.flush()
    request = payment_requests.find_request(session, attempt.provider, attempt.reference)
    if request is not None:
        payment_requests.failed(
            request, str(attempt.result_code), attempt.result_desc, cancelled=attempt.cancelled
        )
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
    """Match again the ``no_match`` payments from these numbers (and those whose account
    reference was unusable, which their phone may still match); return those now credited.

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
        .where(
            Payment.status == UNASSOCIATED,
            Payment.reason.in_([NO_MATCH, INVALID_REFERENCE]),
            or_(*conditions),
        )
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


# --- operator actions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Moved:
    """An operator action's result: the payment and the customer's balance after it."""

    payment: Payment
    customer: Customer
    created: bool = False


def lock_payment(session: Session, payment_id: int) -> Payment:
    """The payment, locked until the transaction ends: concurrent actions on it queue up."""
    payment = session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        raise NotFound(f"no payment has id {payment_id}", "payment_not_found")
    return payment


def _audit(
    session: Session, actor: str, action: str, payment: Payment, before: dict, **extra: object
) -> None:
    after = payment_state(payment)
    after.update(extra)
    audit(
        session,
        actor=actor,
        action=action,
        subject_type="payment",
        subject_id=str(payment.id),
        before=before,
        after=after,
    )


def payment_state(payment: Payment) -> dict[str, object]:
    return {
        "status": payment.status,
        "account_number": payment.customer.account_number if payment.customer else None,
        "match_method": payment.match_method,
        "reason": payment.reason,
    }


def associate(session: Session, payment_id: int, account_number: str, *, actor: str) -> Moved:
    """Move an unassociated payment to a customer and credit it; 409 when already associated."""
    payment = lock_payment(session, payment_id)
    if payment.status == ASSOCIATED:
        current = payment.customer.account_number if payment.customer else "?"
        raise Conflict(
            f"payment {payment.id} is already associated with {current}; "
            "disassociate it first to move it",
            "already_associated",
        )
    if payment.reversed_at is not None:
        raise Conflict(
            f"payment {payment.id} was reversed: its money went back to the payer, so it "
            "cannot be credited to anyone",
            "payment_reversed",
        )
    customer = get_customer(session, account_number)
    before = payment_state(payment)
    with Ledger(session) as ledger:
        _apply_match(payment, Match(customer.id, BY_OPERATOR))
        payment.customer = customer
        session.flush()
        credit(ledger, payment, customer.id, kind=PAYMENT_CREDIT, actor=actor)
    _audit(session, actor, "payment.associate", payment, before)
    session.refresh(customer)
    return Moved(payment, customer)


def disassociate(session: Session, payment_id: int, *, reason: str | None, actor: str) -> Moved:
    """Take a payment off its customer: a reversal entry of the same amount.

    The balance may go negative when the credit was already spent. The payment
    returns to the unassociated list as ``disassociated`` and automatic
    matching never touches it again.
    """
    payment = lock_payment(session, payment_id)
    if payment.status != ASSOCIATED or payment.customer_id is None:
        raise Conflict(
            f"payment {payment.id} is not associated with any customer", "not_associated"
        )
    customer = payment.customer
    assert customer is not None
    before = payment_state(payment)
    reversals = session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.payment_id == payment.id, LedgerEntry.amount_minor < 0)
    )
    with Ledger(session) as ledger:
        ledger.post(
            Posting(
                customer_id=customer.id,
                amount=-payment.amount_minor,
                kind=DISASSOCIATION,
                idempotency_key=f"payment:{payment.id}:reversal:{int(reversals or 0) + 1}",
                created_by=actor,
                payment_id=payment.id,
                note=reason,
                revenue_at=payment.paid_at,
            )
        )
        _apply_match(payment, Match(None, reason=DISASSOCIATED))
        payment.customer = None
    _audit(session, actor, "payment.disassociate", payment, before, note=reason)
    session.refresh(customer)
    return Moved(payment, customer)


def record_manual_payment(
    session: Session,
    *,
    account_number: str,
    amount: int,
    currency: str,
    reference: str | None,
    note: str | None,
    actor: str,
    receipt_owner: ReceiptOwner,
) -> Moved:
    """A payment recorded by an operator, associated at once.

    A reference that ``receipt_owner`` recognises as a provider's receipt code is the
    payment's identity, shared with callbacks: whichever arrives second credits nothing
    more.
    """
    customer = get_customer(session, account_number)
    reference = (reference or "").strip() or None
    if reference is not None and (len(reference) > 64 or not reference.isprintable()):
        raise InvalidInput(
            "reference must be printable text of at most 64 characters", "invalid_reference"
        )
    owner = receipt_owner(reference) if reference else None
    provider, receipt = owner if owner is not None else (MANUAL, None)
    if receipt is not None:
        existing = session.scalar(
            select(Payment)
            .where(Payment.provider == provider, Payment.code == receipt)
            .with_for_update()
        )
        if existing is not None:
            return _claim_existing(session, existing, customer, amount, actor)
    payment = Payment(
        provider=provider,
        channel=MANUAL,
        code=receipt or _manual_code(),
        amount_minor=amount,
        currency=currency,
        paid_at=utcnow(),
        msisdn_raw=None,
        msisdn_kind="missing",
        phone=None,
        msisdn_sha256=None,
        payer_name=customer.name or None,
        account_reference=None,
        reference=reference,
        note=note,
        created_by=actor,
        candidates=[],
    )
    _apply_match(payment, Match(customer.id, BY_OPERATOR))
    payment.customer = customer
    session.add(payment)
    session.flush()
    with Ledger(session) as ledger:
        ledger.received([payment])
        credit(ledger, payment, customer.id, kind=MANUAL_PAYMENT, actor=actor)
    _audit(session, actor, "payment.record", payment, {})
    session.refresh(customer)
    return Moved(payment, customer, created=True)


def _claim_existing(
    session: Session, payment: Payment, customer: Customer, amount: int, actor: str
) -> Moved:
    """The receipt already came in by callback: credit it to this customer at most once."""
    if payment.amount_minor != amount:
        raise Conflict(
            f"receipt {payment.code} is already recorded with amount "
            f"{format_minor(payment.amount_minor)}, not {format_minor(amount)}",
            "reference_conflict",
        )
    if payment.status == ASSOCIATED:
        if payment.customer_id == customer.id:
            return Moved(payment, customer)
        current = payment.customer.account_number if payment.customer else "?"
        raise Conflict(
            f"receipt {payment.code} is already credited to {current}", "already_associated"
        )
    moved = associate(session, payment.id, customer.account_number, actor=actor)
    return Moved(moved.payment, moved.customer, created=False)


def _manual_code() -> str:
    return "MAN" + secrets.token_hex(6).upper()
