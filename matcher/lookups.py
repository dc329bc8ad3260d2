"""Lookups: an operator asks a provider about one transaction code (a payment whose
callback never came, a code a customer reads out), and its answer settles the lookup.

The lookup is stored before the provider is asked, so a crash in between leaves a
pending lookup, never a question momo knows nothing about. The answer arrives later, as
a callback through the inbox; a payment it finds is recorded like any provider record
(``record_payment``): credited once, a duplicate when known, a manual entry confirmed.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from matcher.errors import NotFound
from matcher.ledger import Ledger
from matcher.models import (
    LOOKUP_FAILED,
    LOOKUP_FOUND,
    LOOKUP_PENDING,
    LOOKUP_SENT,
    Lookup,
)
from matcher.notifications import LookupResult
from matcher.payments import Recorded, record_payment
from matcher.provider_records import note_payments
from matcher.text import fit

#: what recording a lookup's answer came to (also the inbox row's reason)
LOOKUP_SETTLED = "lookup_settled"
#: an answer for a lookup momo does not know (its ids lost with a reply that never came)
UNKNOWN_LOOKUP = "unknown_lookup"
#: an answer for a lookup already settled: nothing more happens to the lookup
LOOKUP_ALREADY_SETTLED = "lookup_already_settled"


def open_lookup(session: Session, *, provider: str, code: str, actor: str) -> Lookup:
    """A pending lookup of ``code``, stored in ``session`` (the caller commits, then asks)."""
    lookup = Lookup(provider=provider, code=code, status=LOOKUP_PENDING, created_by=actor)
    session.add(lookup)
    session.flush()
    return lookup


def get_lookup(session: Session, lookup_id: int, *, lock: bool = False) -> Lookup:
    query = select(Lookup).where(Lookup.id == lookup_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    lookup = session.scalar(query)
    if lookup is None:
        raise NotFound(f"no lookup has id {lookup_id}", "lookup_not_found")
    return lookup


def lookup_sent(lookup: Lookup, originator_id: str | None, conversation_id: str | None) -> None:
    """The provider took the question; its answer names these ids. An answer that came
    first (it can: the provider's reply and its callback race) is kept."""
    lookup.originator_id = fit(originator_id, Lookup.originator_id)
    lookup.conversation_id = fit(conversation_id, Lookup.conversation_id)
    if lookup.status == LOOKUP_PENDING:
        lookup.status = LOOKUP_SENT


def lookup_refused(lookup: Lookup, code: str, description: str) -> None:
    """The provider would not take the question: the lookup failed, with its words."""
    if lookup.status in (LOOKUP_PENDING, LOOKUP_SENT):
        lookup.status = LOOKUP_FAILED
        lookup.result_code = fit(code, Lookup.result_code)
        lookup.result_description = description


def find_lookup(
    session: Session, provider: str, conversation_id: str | None, originator_id: str | None
) -> Lookup | None:
    """The lookup the provider's answer names, locked until the transaction ends."""
    ids = []
    if conversation_id:
        ids.append(Lookup.conversation_id == conversation_id)
    if originator_id:
        ids.append(Lookup.originator_id == originator_id)
    if not ids:
        return None
    return session.scalar(
        select(Lookup)
        .where(Lookup.provider == provider, or_(*ids))
        .order_by(Lookup.id)
        .limit(1)
        .with_for_update()
    )


def record_lookup_result(
    session: Session,
    ledger: Ledger,
    result: LookupResult,
    *,
    region: str,
    inbox_id: int | None = None,
    actor: str = "system",
) -> Recorded:
    """The provider's answer to a lookup. A payment it found is recorded (and credited)
    once, whether or not the lookup is still known or already settled: money that moved
    is never ignored. The lookup itself is settled once; a second answer changes it no
    more."""
    lookup = find_lookup(session, result.provider, result.conversation_id, result.originator_id)
    recorded: Recorded | None = None
    if result.payment is not None:
        note_payments(session, [(inbox_id, result.payment)])
        recorded = record_payment(
            session, ledger, result.payment, region=region, inbox_id=inbox_id, actor=actor
        )
    if lookup is None:
        if recorded is not None:
            return recorded
        return Recorded(
            UNKNOWN_LOOKUP,
            detail=f"no lookup is known to {result.provider} by conversation "
            f"{result.conversation_id!r} or originator {result.originator_id!r}",
        )
    if lookup.status not in (LOOKUP_PENDING, LOOKUP_SENT):
        return recorded or Recorded(LOOKUP_ALREADY_SETTLED, lookup.payment_id)
    lookup.status = LOOKUP_FOUND if result.state == "found" else result.state
    lookup.result_code = fit(result.result_code, Lookup.result_code)
    lookup.result_description = result.result_description
    if recorded is not None:
        lookup.payment_id = recorded.payment_id
        return recorded
    return Recorded(LOOKUP_SETTLED)
