"""The provider's own record of money that moved, kept beside momo's books.

A payment that reaches momo from the provider's record rather than its callback (a
pull, a statement row, a lookup) is recorded like a callback, and is also kept here as
the provider wrote it (``note_payments``, called by the inbox worker for every such
payment, in the same transaction). A span of time whose record was read in full is
kept as coverage (``note_coverage``): within it, momo can say a payment it has is one
the provider does not. Both are what the reconciliation compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from matcher.db import upsert_insert, utcnow
from matcher.models import ProviderCoverage, ProviderRecord
from matcher.notifications import CALLBACK_SOURCE, PaymentNotification
from matcher.text import fit

PAYMENT_RECORD: Final = "payment"
REVERSAL_RECORD: Final = "reversal"


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``; a record already kept (same provider, kind and code) stays."""
    if not rows:
        return
    statement = upsert_insert(session, ProviderRecord).on_conflict_do_nothing(
        index_elements=["provider", "kind", "code"]
    )
    session.execute(statement, rows)


def note_payments(session: Session, batch: Iterable[tuple[int | None, PaymentNotification]]) -> int:
    """Keep the provider's record of each payment in ``batch`` (inbox id, payment) that
    came from its record rather than its callback; returns how many were offered."""
    now = utcnow()
    rows = [
        {
            "provider": n.provider,
            "kind": PAYMENT_RECORD,
            "code": n.code,
            "amount_minor": n.amount,
            "paid_at": n.paid_at,
            "source": n.source,
            "msisdn_raw": fit(n.msisdn.raw, ProviderRecord.msisdn_raw),
            "account_reference": fit(n.account_reference, ProviderRecord.account_reference),
            "reverses": None,
            "inbox_id": inbox_id,
            "created_at": now,
        }
        for inbox_id, n in batch
        if n.source != CALLBACK_SOURCE
    ]
    _insert_new(session, rows)
    return len(rows)


def note_reversal(
    session: Session,
    *,
    provider: str,
    code: str,
    reverses: str,
    amount: int,
    reversed_at: datetime,
    source: str,
    inbox_id: int | None,
) -> None:
    """Keep the provider's record of a reversal (its receipt ``code``, undoing the receipt
    ``reverses``); one already kept stays."""
    _insert_new(
        session,
        [
            {
                "provider": provider,
                "kind": REVERSAL_RECORD,
                "code": code,
                "amount_minor": amount,
                "paid_at": reversed_at,
                "source": source,
                "msisdn_raw": None,
                "account_reference": None,
                "reverses": reverses,
                "inbox_id": inbox_id,
                "created_at": utcnow(),
            }
        ],
    )


def note_coverage(
    session: Session,
    *,
    provider: str,
    source: str,
    starts_at: datetime,
    ends_at: datetime,
    records: int,
    actor: str,
) -> ProviderCoverage:
    """The provider's record from ``starts_at`` to ``ends_at`` was read in full."""
    if ends_at < starts_at:
        raise ValueError(f"coverage ends ({ends_at}) before it starts ({starts_at})")
    span = ProviderCoverage(
        provider=provider,
        source=source,
        starts_at=starts_at,
        ends_at=ends_at,
        records=records,
        created_by=actor,
    )
    session.add(span)
    session.flush()
    return span


def last_covered(session: Session, provider: str, source: str) -> datetime | None:
    """Where the last span read from ``source`` ended (the next pull starts there)."""
    return session.scalar(
        select(func.max(ProviderCoverage.ends_at)).where(
            ProviderCoverage.provider == provider, ProviderCoverage.source == source
        )
    )
