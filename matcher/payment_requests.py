"""Payment requests: momo asks a customer to pay, and the provider's answer settles it.

A request is stored before the provider is asked, so a request the provider took is
never unknown to momo. Its callback (or the provider's answer when asked) settles it
once: a success credits the request's customer whatever phone paid, through
``matcher.payments``; a failure moves no money; a success that comes after a failure,
a query or the request's expiry still makes it paid, and nothing makes a paid request
anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.audit import audit
from matcher.db import utcnow
from matcher.errors import InvalidInput, NotFound
from matcher.matching import Match
from matcher.models import (
    REQUEST_CANCELLED,
    REQUEST_EXPIRED,
    REQUEST_FAILED,
    REQUEST_PAID,
    REQUEST_PENDING,
    Customer,
    Payment,
    PaymentAttempt,
    PaymentRequest,
)
from matcher.money import format_minor
from matcher.notifications import PaymentNotification
from matcher.text import fit

#: ``Payment.match_method`` of a payment credited because it answered momo's request
BY_REQUEST = "payment_request"
#: why a payment that answered a request was not credited: it paid another amount
AMOUNT_DIFFERS = "amount_differs"
#: the result code momo gives a request that nobody answered before it expired
NO_ANSWER = "no_answer"

#: what a request's result came to (the processed inbox row's reason)
REQUEST_FAILED_OUTCOME = "request_failed"
REQUEST_PENDING_OUTCOME = "request_pending"
UNKNOWN_REQUEST = "unknown_request"
#: an unauthenticated callback said how a request went: the provider is asked first
TO_CONFIRM = "request_to_confirm"
ALREADY_SETTLED = "request_already_settled"


@dataclass(frozen=True)
class Timing:
    """When a pending request is first asked about, and when it is given up."""

    query_after: timedelta
    expire_after: timedelta


def open_request(
    session: Session,
    *,
    provider: str,
    customer: Customer,
    phone: str,
    amount: int,
    currency: str,
    actor: str,
    timing: Timing,
    now: datetime | None = None,
) -> PaymentRequest:
    """Store a new pending request, before the provider is asked."""
    if amount <= 0:
        raise InvalidInput(
            f"amount must be more than zero, not {format_minor(amount)}", "invalid_amount"
        )
    now = now or utcnow()
    request = PaymentRequest(
        provider=provider,
        status=REQUEST_PENDING,
        customer_id=customer.id,
        account_number=customer.account_number,
        phone=phone,
        amount_minor=amount,
        currency=currency,
        query_at=now + timing.query_after,
        queries=0,
        expires_at=now + timing.expire_after,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    audit(
        session,
        actor=actor,
        action="payment_request.create",
        subject_type="payment_request",
        subject_id=str(request.id),
        before=None,
        after=request_state(request),
    )
    return request


def request_state(request: PaymentRequest) -> dict[str, object]:
    return {
        "status": request.status,
        "provider": request.provider,
        "provider_reference": request.provider_reference,
        "account_number": request.account_number,
        "phone": request.phone,
        "amount": format_minor(request.amount_minor),
        "result_code": request.result_code,
        "payment_id": request.payment_id,
    }


def get_request(session: Session, request_id: int, *, lock: bool = False) -> PaymentRequest:
    query = select(PaymentRequest).where(PaymentRequest.id == request_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    request = session.scalar(query)
    if request is None:
        raise NotFound(f"no payment request has id {request_id}", "payment_request_not_found")
    return request


def find_request(session: Session, provider: str, reference: str) -> PaymentRequest | None:
    """The request the provider knows as ``reference``, locked until the transaction ends
    (its callback and a query's answer may arrive together)."""
    return session.scalar(
        select(PaymentRequest)
        .where(
            PaymentRequest.provider == provider,
            PaymentRequest.provider_reference == reference,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def submitted(
    session: Session,
    request: PaymentRequest,
    reference: str,
    merchant_reference: str | None = None,
    *,
    cancelled_codes: frozenset[int] = frozenset(),
) -> None:
    """The provider took the request and calls it ``reference``. Its answer may already
    be here (a callback that overtook the provider's reply to us): it settles the
    request now."""
    request.provider_reference = reference
    request.merchant_reference = fit(merchant_reference, PaymentRequest.merchant_reference)
    payment = payment_answering(session, request.provider, reference)
    if payment is not None:
        paid(request, payment, "paid", f"paid, receipt {payment.code}")
        return
    attempt = session.scalar(
        select(PaymentAttempt)
        .where(PaymentAttempt.provider == request.provider, PaymentAttempt.reference == reference)
        .limit(1)
    )
    if attempt is not None:
        failed(
            request,
            str(attempt.result_code),
            attempt.result_desc,
            cancelled=attempt.result_code in cancelled_codes,
        )


def payment_answering(session: Session, provider: str, reference: str) -> Payment | None:
    """The first payment stored as answering the request ``reference`` (it names it)."""
    return session.scalar(
        select(Payment)
        .where(Payment.provider == provider, Payment.request_reference == reference)
        .order_by(Payment.id)
        .limit(1)
    )


def request_answered(session: Session, notification: PaymentNotification) -> PaymentRequest | None:
    """The request a payment answers, locked: the one the provider knows by the payment's
    request reference; else a request the provider never named to us (its reply to our
    request was lost), still open, for the same phone and amount, oldest first, which
    then takes that reference."""
    reference = notification.request_reference
    if reference is None:
        return None
    request = find_request(session, notification.provider, reference)
    if request is not None or notification.msisdn.e164 is None:
        return request
    request = session.scalar(
        select(PaymentRequest)
        .where(
            PaymentRequest.provider == notification.provider,
            PaymentRequest.provider_reference.is_(None),
            PaymentRequest.status.in_([REQUEST_PENDING, REQUEST_EXPIRED]),
            PaymentRequest.phone == notification.msisdn.e164,
            PaymentRequest.amount_minor == notification.amount,
        )
        .order_by(PaymentRequest.id)
        .limit(1)
        .with_for_update()
    )
    if request is not None:
        request.provider_reference = fit(reference, PaymentRequest.provider_reference)
        return request
    # The request was open when looked for, and was named meanwhile by the transaction
    # whose lock the search above waited for (the provider's reply, recorded at the same
    # moment): asked again, it is seen now.
    return find_request(session, notification.provider, reference)


def refused(request: PaymentRequest, code: str, description: str) -> None:
    """The provider refused the request: nobody was asked to pay, nothing will come."""
    if request.status != REQUEST_PENDING:
        return
    request.status = REQUEST_FAILED
    _result(request, code, description)
    request.query_at = None


def request_match(request: PaymentRequest, amount: int) -> Match:
    """Whom a payment answering ``request`` belongs to: the request's customer, unless it
    paid another amount than was asked (then an operator decides)."""
    if amount != request.amount_minor:
        return Match(None, reason=AMOUNT_DIFFERS, candidates=(request.account_number,))
    return Match(request.customer_id, BY_REQUEST)


def paid(request: PaymentRequest, payment: Payment, code: str, description: str) -> None:
    request.status = REQUEST_PAID
    request.payment_id = payment.id
    request.query_at = None
    _result(request, code, description)


def failed(request: PaymentRequest, code: str, description: str, *, cancelled: bool) -> bool:
    """The provider says the customer did not pay; a paid request stays paid. Whether
    the request changed."""
    if request.status == REQUEST_PAID:
        return False
    request.status = REQUEST_CANCELLED if cancelled else REQUEST_FAILED
    request.query_at = None
    _result(request, code, description)
    return True


def _result(request: PaymentRequest, code: str, description: str) -> None:
    request.result_code = fit(code, PaymentRequest.result_code)
    request.result_description = description[:2000]


def due_for_query(session: Session, *, limit: int, now: datetime | None = None) -> list[int]:
    """Requests whose provider is to be asked now (oldest first), claimed: their next
    query moves ``retry_after`` on, so two askers do not ask twice at once. Pending ones,
    and settled ones an unauthenticated late word asked to check again."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(PaymentRequest.id)
            .where(PaymentRequest.status != REQUEST_PAID, PaymentRequest.query_at <= now)
            .order_by(PaymentRequest.query_at, PaymentRequest.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def confirm_soon(request: PaymentRequest, *, now: datetime | None = None) -> None:
    """Ask the provider about a request at the next query sweep: a pending one, or one
    already failed or expired (a word that comes late may be a success; it is asked
    about once more). A paid request is settled for good."""
    if request.status != REQUEST_PAID:
        request.query_at = now or utcnow()


def asked(request: PaymentRequest, *, retry_after: timedelta, now: datetime | None = None) -> None:
    """Count a query and say when to ask again."""
    now = now or utcnow()
    request.queries += 1
    request.query_at = now + retry_after


def expire(request: PaymentRequest, *, now: datetime | None = None) -> bool:
    """A pending request past its expiry that no answer settled is expired; whether it was."""
    now = now or utcnow()
    if request.status != REQUEST_PENDING or request.expires_at > now:
        return False
    request.status = REQUEST_EXPIRED
    request.query_at = None
    _result(
        request,
        NO_ANSWER,
        "the provider gave no answer before the request expired; a payment that comes "
        "later is still credited",
    )
    return True
