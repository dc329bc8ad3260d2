"""Reconciling with a provider's own record: look one transaction code up, and reverse a
payment.

Like a payment request, each is stored before the provider is asked
(``open_lookup``/``open_reversal`` in the caller's transaction), the provider is asked
outside any transaction (``send_lookup``/``send_reversal``), and its reply is stored in a
transaction of its own. The provider's result comes later through the inbox, like any
callback, and is recorded there (``matcher.lookups``, ``matcher.reversals``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from core.config import Settings
from core.runtime import Runtime
from ingest.providers.outbound import (
    Accepted,
    NoAnswer,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
)
from matcher import lookups, reversals
from matcher.errors import Conflict, InvalidInput
from matcher.inbox import requeue_naming
from matcher.models import Lookup, Payment, Reversal

log = logging.getLogger(__name__)


class Reconciler(Protocol):
    """What a provider adapter that can look codes up and reverse payments offers."""

    name: str

    def receipt_code(self, reference: str) -> str | None:
        """The receipt code ``reference`` names, or None if it is not one of its codes."""
        ...

    def reconcile_missing(self, settings: Settings) -> list[str]:
        """The settings it still needs before it can ask (variable names); empty: ready."""
        ...

    def look_up(self, settings: Settings, code: str) -> Accepted:
        """Ask about one code; the result comes later, by callback."""
        ...

    def reverse(self, settings: Settings, code: str, amount: int, remarks: str) -> Accepted:
        """Ask for a payment's money to go back to its payer; the result comes later."""
        ...


@dataclass
class Sent:
    """What asking the provider came to: None, or why it did not take the question."""

    error: ProviderError | None = None


def ready(reconciler: Reconciler, settings: Settings, what: str) -> None:
    missing = reconciler.reconcile_missing(settings)
    if not settings.public_url:
        missing = ["MOMO_PUBLIC_URL", *missing]
    if missing:
        raise Conflict(
            f"{reconciler.name} is not set up for {what}: set {', '.join(missing)} "
            "(README: Lookups and reversals)",
            "provider_not_configured",
        )


def whose_code(reconcilers: dict[str, Reconciler], code: object) -> tuple[Reconciler, str]:
    """The provider whose receipt ``code`` is, and the code as it writes it."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput('code is required: a receipt code, e.g. "QK81AB12CD"', "invalid_code")
    for reconciler in reconcilers.values():
        receipt = reconciler.receipt_code(code)
        if receipt is not None:
            return reconciler, receipt
    raise InvalidInput(
        f"{code.strip()[:40]!r} is not a receipt code momo can look up (providers that can: "
        f"{', '.join(sorted(reconcilers)) or 'none'}); check the code the customer read out",
        "invalid_code",
    )


def open_lookup(
    runtime: Runtime, session: Session, reconcilers: dict[str, Reconciler], code: object, actor: str
) -> Lookup:
    reconciler, receipt = whose_code(reconcilers, code)
    ready(reconciler, runtime.settings, "lookups")
    return lookups.open_lookup(session, provider=reconciler.name, code=receipt, actor=actor)


def _failed(exc: ProviderError) -> tuple[str, str]:
    return (exc.reason if isinstance(exc, ProviderRefused) else exc.code), exc.message


def send_lookup(runtime: Runtime, reconcilers: dict[str, Reconciler], lookup_id: int) -> Sent:
    """Ask the provider once, outside any transaction, and store its reply."""
    with runtime.sessions.begin() as session:
        lookup = lookups.get_lookup(session, lookup_id)
        reconciler, code = reconcilers[lookup.provider], lookup.code
    return _asked(
        runtime,
        f"lookup {lookup_id}",
        lambda: reconciler.look_up(runtime.settings, code),
        lambda session: lookups.get_lookup(session, lookup_id, lock=True),
        lookups.lookup_refused,
        lookups.lookup_sent,
    )


Question = TypeVar("Question", Lookup, Reversal)


def _asked(
    runtime: Runtime,
    what: str,
    ask: Callable[[], Accepted],
    get: Callable[[Session], Question],
    refused: Callable[[Question, str, str], None],
    sent: Callable[[Question, str | None, str | None], None],
) -> Sent:
    """``ask`` the provider, then store its refusal, or the ids it named the question by
    (and work again a result it posted before they were stored)."""
    try:
        accepted = ask()
    except (ProviderRefused, ProviderUnavailable) as exc:
        with runtime.sessions.begin() as session:
            refused(get(session), *_failed(exc))
        return Sent(exc)
    except NoAnswer as exc:
        # it may have been taken, but without its ids its result cannot be matched to it
        log.warning("%s: %s", what, exc.message)
        with runtime.sessions.begin() as session:
            get(session).result_description = exc.message
        return Sent(exc)
    with runtime.sessions.begin() as session:
        asked = get(session)
        sent(asked, accepted.originator_id, accepted.conversation_id)
        _early_results(session, asked.provider, asked.created_at, accepted)
    return Sent()


def _early_results(session: Session, provider: str, since: datetime, accepted: Accepted) -> None:
    """A result the provider posted before its reply's ids were stored is worked again."""
    ids = [i for i in (accepted.conversation_id, accepted.originator_id) if i]
    if requeue_naming(session, provider, since, ids):
        log.info("%s answered before its reply was stored; its result is worked again", provider)


def open_reversal(
    runtime: Runtime,
    session: Session,
    reconcilers: dict[str, Reconciler],
    payment_id: int,
    *,
    note: str | None,
    actor: str,
) -> Reversal:
    reversal = reversals.open_reversal(
        session, payment_id, reversible=frozenset(reconcilers), note=note, actor=actor
    )
    ready(reconcilers[reversal.provider], runtime.settings, "reversals")
    return reversal


def send_reversal(runtime: Runtime, reconcilers: dict[str, Reconciler], reversal_id: int) -> Sent:
    with runtime.sessions.begin() as session:
        reversal = reversals.get_reversal(session, reversal_id)
        payment = session.get(Payment, reversal.payment_id)
        assert payment is not None
        reconciler = reconcilers[reversal.provider]
        code, amount = payment.code, payment.amount_minor
        remarks = reversal.note or f"reversal of {code}"
    return _asked(
        runtime,
        f"reversal {reversal_id}",
        lambda: reconciler.reverse(runtime.settings, code, amount, remarks),
        lambda session: reversals.get_reversal(session, reversal_id, lock=True),
        reversals.reversal_refused,
        reversals.reversal_sent,
    )
