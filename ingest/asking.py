"""Asking customers to pay, and asking providers how it went.

A request is committed before its provider is asked (``open_payment_request``), the
provider is asked outside any transaction (``send``), and its reply is stored in a
transaction of its own: a crash in between leaves a pending request that the query
sweep (``settle_due``) settles or expires, never a prompt momo knows nothing about.
A request that was sent and not answered is never sent again: the provider is asked
what became of it instead.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import phonenumbers
from phonenumbers import carrier
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.runtime import Runtime
from ingest.providers.outbound import (
    Ask,
    Asked,
    NoAnswer,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
)
from matcher.db import utcnow
from matcher.errors import InvalidInput
from matcher.ledger import Ledger
from matcher.matching import get_customer
from matcher.models import REQUEST_PAID, REQUEST_PENDING, PaymentRequest
from matcher.notifications import RequestResult
from matcher.payment_requests import (
    Timing,
    asked,
    due_for_query,
    expire,
    get_request,
    open_request,
    refused,
    submitted,
)
from matcher.payments import record_request_result
from matcher.phones import normalise_msisdn

log = logging.getLogger(__name__)


class Requester(Protocol):
    """What a provider adapter that can ask customers to pay offers."""

    name: str
    cancelled_codes: frozenset[int]
    #: the mobile networks (phonenumbers' carrier names) whose subscribers it asks
    networks: frozenset[str]

    def requests_missing(self, settings: Settings) -> list[str]:
        """The settings it still needs before it can ask (variable names); empty: ready."""
        ...

    def phone_region(self, settings: Settings) -> str:
        """Where a number written without its country code is read for this provider (a
        number written with its country code is read as written)."""
        ...

    def our_reference(self, request_id: int) -> str | None:
        """The id the provider will know the request by, when momo chooses it (then the
        request can be asked about even when the provider's reply never came)."""
        ...

    def callback_path(self, settings: Settings) -> str:
        """The path (under MOMO_PUBLIC_URL) its request callbacks are posted to."""
        ...

    def ask(self, settings: Settings, ask: Ask) -> Asked:
        """Prompt the customer (ProviderRefused, ProviderUnavailable or NoAnswer)."""
        ...

    def query(self, settings: Settings, ask: Ask) -> RequestResult:
        """How the request went ("pending" while undecided)."""
        ...


@dataclass
class Sent:
    """What asking the provider came to."""

    request_id: int
    error: ProviderError | None = None


def timing(settings: Settings) -> Timing:
    return Timing(
        query_after=timedelta(seconds=settings.request_query_after_seconds),
        expire_after=timedelta(seconds=settings.request_expire_after_seconds),
    )


def phone_network(e164: str) -> str:
    """The network a number was issued to (phonenumbers' prefix data), or ""."""
    try:
        return carrier.name_for_number(phonenumbers.parse(e164), "en")
    except phonenumbers.NumberParseException:
        return ""


def choose_provider(
    requesters: dict[str, Requester], settings: Settings, phone: str, named: str | None
) -> Requester:
    """The provider asked: the one named, else the one serving the phone's network, else
    MOMO_DEFAULT_PROVIDER."""
    if named is not None:
        requester = requesters.get(named)
        if requester is None:
            raise InvalidInput(
                f"provider {named!r} cannot ask customers to pay; use one of: "
                + ", ".join(sorted(requesters)),
                "invalid_provider",
            )
        return requester
    network = phone_network(phone)
    serving = [r for r in requesters.values() if network and network in r.networks]
    if len(serving) == 1:
        return serving[0]
    default = settings.default_provider
    if default and default in requesters:
        return requesters[default]
    raise InvalidInput(
        f"no provider is known to serve {phone} (network {network or 'unknown'}); name one "
        f'with "provider" ({", ".join(sorted(requesters))}) or set MOMO_DEFAULT_PROVIDER',
        "provider_unknown_for_phone",
    )


def ready(requester: Requester, settings: Settings) -> None:
    missing = requester.requests_missing(settings)
    if not settings.public_url:
        missing = ["MOMO_PUBLIC_URL", *missing]
    if missing:
        raise InvalidInput(
            f"{requester.name} is not set up to ask customers to pay: set "
            + ", ".join(missing)
            + " (README: Payment requests)",
            "provider_not_configured",
        )


def open_payment_request(
    runtime: Runtime,
    session: Session,
    requesters: dict[str, Requester],
    *,
    account_number: str,
    amount: int,
    phone: str | None,
    provider: str | None,
    actor: str,
) -> PaymentRequest:
    """Store a pending request in ``session`` (the caller commits, then calls ``send``)."""
    settings = runtime.settings
    customer = get_customer(session, account_number)
    if phone is None:
        if not customer.phones:
            raise InvalidInput(
                f'{customer.account_number} has no phone number: give "phone", or add one '
                "to the customer",
                "phone_required",
            )
        e164 = customer.phones[0].e164
    else:
        region = settings.default_region
        if provider is not None:  # its country reads the local numbers it is asked with
            region = choose_provider(requesters, settings, "", provider).phone_region(settings)
        normal = normalise_msisdn(phone, region)
        if normal is None:
            raise InvalidInput(
                f"phone {phone!r} is not a mobile number; write it as +254712345678 or 0712345678",
                "invalid_phone",
            )
        e164 = normal
    requester = choose_provider(requesters, settings, e164, provider)
    ready(requester, settings)
    request = open_request(
        session,
        provider=requester.name,
        customer=customer,
        phone=e164,
        amount=amount,
        currency=settings.currency,
        actor=actor,
        timing=timing(settings),
    )
    ours = requester.our_reference(request.id)
    if ours is not None:
        request.provider_reference = ours
    return request


def _ask_for(request: PaymentRequest, settings: Settings, callback_url: str | None) -> Ask:
    return Ask(
        request_id=request.id,
        phone=request.phone,
        amount=request.amount_minor,
        currency=request.currency,
        account_number=request.account_number,
        reference=request.provider_reference,
        callback_url=callback_url,
    )


def callback_url(requester: Requester, settings: Settings) -> str:
    return (settings.public_url or "").rstrip("/") + requester.callback_path(settings)


def send(runtime: Runtime, requesters: dict[str, Requester], request_id: int) -> Sent:
    """Ask the provider once, outside any transaction, and store its reply."""
    settings = runtime.settings
    with runtime.sessions.begin() as session:
        request = get_request(session, request_id)
        requester = requesters[request.provider]
        ask = _ask_for(request, settings, callback_url(requester, settings))
    try:
        reply = requester.ask(settings, ask)
    except (ProviderRefused, ProviderUnavailable) as exc:
        with runtime.sessions.begin() as session:
            request = get_request(session, request_id, lock=True)
            code = exc.reason if isinstance(exc, ProviderRefused) else exc.code
            refused(request, code, exc.message)
        return Sent(request_id, exc)
    except NoAnswer as exc:
        # may have been taken: keep it pending, and ask the provider later
        log.warning("payment request %s: %s", request_id, exc.message)
        with runtime.sessions.begin() as session:
            request = get_request(session, request_id, lock=True)
            request.result_description = exc.message
        return Sent(request_id, exc)
    with runtime.sessions.begin() as session:
        request = get_request(session, request_id, lock=True)
        if request.provider_reference is None:
            submitted(
                session,
                request,
                reply.reference,
                reply.merchant_reference,
                cancelled_codes=requester.cancelled_codes,
            )
        else:
            request.merchant_reference = reply.merchant_reference
    return Sent(request_id)


@dataclass
class SettleSummary:
    asked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return f"asked={self.asked}" + (f" ({parts})" if parts else "")


def settle_due(
    runtime: Runtime,
    requesters: dict[str, Requester],
    *,
    limit: int = 50,
    budget_seconds: float = 10.0,
) -> SettleSummary:
    """Ask the providers about requests still pending past their query time; expire those
    past their expiry that no answer settled.

    No new question is started after ``budget_seconds``: a slow provider must not hold a
    worker that the inbox needs. The requests not asked keep their claim's next query
    time and are asked on a later sweep.
    """
    started = time.monotonic()
    settings = runtime.settings
    retry_after = timedelta(seconds=settings.request_query_after_seconds)
    summary = SettleSummary()
    with runtime.sessions.begin() as session:
        due = due_for_query(session, limit=limit)
        work: list[tuple[int, Ask, str]] = []
        claimed = session.scalars(
            select(PaymentRequest)
            .where(PaymentRequest.id.in_(due))
            .order_by(PaymentRequest.query_at, PaymentRequest.id)
        )
        for request in claimed:
            asked(request, retry_after=retry_after)
            work.append((request.id, _ask_for(request, settings, None), request.provider))
    for request_id, ask, provider in work:
        requester = requesters.get(provider)
        result: RequestResult | None = None
        if time.monotonic() - started > budget_seconds:
            summary.outcomes["not_asked_yet"] += 1
            continue
        if requester is not None and ask.reference is not None:
            summary.asked += 1
            try:
                result = requester.query(settings, ask)
            except ProviderError as exc:
                log.info("payment request %s: no answer yet (%s)", request_id, exc.message)
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            request = get_request(session, request_id, lock=True)
            if result is not None and result.state != "pending":
                outcome = record_request_result(
                    session, ledger, result, region=settings.default_region, actor=provider
                ).outcome
            elif expire(request, now=utcnow()):
                outcome = "expired"
            else:
                outcome = "pending"
            if request.status not in (REQUEST_PENDING, REQUEST_PAID):
                request.query_at = None  # a settled request checked once more: done
        summary.outcomes[outcome] += 1
    return summary
