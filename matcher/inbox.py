"""Working the inbox: claim pending callbacks in batches and record each exactly once.

A batch is one transaction. Rows are claimed with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several workers share the queue without waiting on each
other; SQLite has one writer at a time, which claims the same way by nature.
A row is ``processed`` in the same commit as the payment and the ledger
entries it produced, so a crash anywhere rolls all of it back and the row is
claimed again later: effects happen once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from matcher.db import utcnow
from matcher.ledger import Ledger
from matcher.models import INBOX_FAILED, INBOX_PENDING, INBOX_PROCESSED, INBOX_REJECTED, InboxItem
from matcher.notifications import (
    Callback,
    FailedAttempt,
    InvalidCallback,
    PaymentNotification,
    ValidationRequest,
)
from matcher.payments import DUPLICATE, Recorded, find_payment, record_attempt, record_payment

log = logging.getLogger(__name__)

#: errors that mean "the database is unwell right now", never "this row is bad"
TRANSIENT_ERRORS = (OperationalError, InterfaceError)

VALIDATION_SEEN = "validation"


#: turns an inbox row into what the provider said (adapters live in ingest/)
Parser = Callable[[InboxItem], Callback]


@dataclass
class BatchResult:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return f"claimed={self.claimed}" + (f" ({parts})" if parts else "")


def claim_pending(session: Session, limit: int) -> list[InboxItem]:
    """Lock up to ``limit`` pending rows, oldest first, skipping rows others hold."""
    return list(
        session.scalars(
            select(InboxItem)
            .where(InboxItem.status == INBOX_PENDING)
            .order_by(InboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def _record(
    session: Session, ledger: Ledger, item: InboxItem, callback: Callback, region: str
) -> Recorded:
    if isinstance(callback, PaymentNotification):
        return record_payment(
            session, ledger, callback, region=region, inbox_id=item.id, actor=item.provider
        )
    if isinstance(callback, FailedAttempt):
        return record_attempt(session, callback, inbox_id=item.id)
    if isinstance(callback, ValidationRequest):
        return Recorded(VALIDATION_SEEN)
    raise TypeError(f"unknown callback type {type(callback).__name__}")


def process_items(
    session: Session, items: list[InboxItem], parse: Parser, *, region: str
) -> BatchResult:
    """Record each claimed row; a bad row is marked, never allowed to sink the batch.

    Transient database errors propagate so the caller rolls back and retries
    the whole batch later.
    """
    result = BatchResult(claimed=len(items))
    with Ledger(session) as ledger:
        for item in items:
            item.attempts += 1
            try:
                with session.begin_nested():
                    callback = parse(item)
                    recorded = _record(session, ledger, item, callback, region)
            except InvalidCallback as exc:
                item.status, item.reason, item.detail = INBOX_REJECTED, exc.reason, exc.message
                result.outcomes[INBOX_REJECTED] += 1
                continue
            except IntegrityError:
                # Another transaction stored the same code first: that is a duplicate.
                code = getattr(callback, "code", None)
                existing = (
                    find_payment(session, callback.provider, code)
                    if isinstance(callback, PaymentNotification) and code
                    else None
                )
                recorded = Recorded(DUPLICATE, existing.id if existing else None)
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                log.exception("inbox row %s failed", item.id)
                item.status, item.reason = INBOX_FAILED, "processing_error"
                item.detail = f"{type(exc).__name__}: {exc}"[:2000]
                result.outcomes[INBOX_FAILED] += 1
                continue
            item.status, item.reason = INBOX_PROCESSED, recorded.outcome
            item.payment_id = recorded.payment_id
            item.processed_at = utcnow()
            result.outcomes[recorded.outcome] += 1
    return result


def process_pending(session: Session, parse: Parser, *, region: str, limit: int) -> BatchResult:
    """Claim one batch and record it; the caller commits."""
    items = claim_pending(session, limit)
    if not items:
        return BatchResult()
    return process_items(session, items, parse, region=region)


def stranded(session: Session, *, older_than: timedelta, now: datetime | None = None) -> int:
    """How many rows are still pending after ``older_than``: the sweeper's work."""
    cutoff = (now or utcnow()) - older_than
    return int(
        session.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.status == INBOX_PENDING, InboxItem.received_at < cutoff)
        )
        or 0
    )
