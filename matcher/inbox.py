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

from sqlalchemy import ColumnElement, Table, and_, func, or_, select
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from matcher.audit import audit
from matcher.db import describe_error, update_rows, utcnow
from matcher.errors import Conflict, InvalidInput, NotFound
from matcher.ledger import Ledger
from matcher.lookups import record_lookup_result
from matcher.matching import hold_phones
from matcher.models import (
    INBOX_CONFLICT,
    INBOX_DEAD,
    INBOX_PENDING,
    INBOX_PROCESSED,
    INBOX_REJECTED,
    InboxItem,
    Payment,
)
from matcher.notifications import (
    Callback,
    FailedAttempt,
    InvalidCallback,
    LookupResult,
    Notice,
    PaymentNotification,
    RequestResult,
    ReversalResult,
    ValidationRequest,
)
from matcher.payments import (
    CONFLICT,
    CREDITED,
    DUPLICATE,
    UNMATCHED,
    Recorded,
    find_payment,
    record_attempt,
    record_payment,
    record_payments,
    record_request_result,
    repeated,
)
from matcher.provider_records import note_payments
from matcher.reversals import record_reversal_result
from matcher.text import storable

log = logging.getLogger(__name__)

#: errors that mean "the database is unwell right now", never "this row is bad": lost or
#: refused connections, deadlocks and serialization failures (OperationalError in psycopg),
#: an exhausted pool. The batch is rolled back whole and tried again.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, PoolTimeout)

#: the reason of a dead row whose content the database refuses (and always will)
UNSTORABLE = "unstorable"
#: the reason of a dead row that failed in any other way: a bug to fix, then replay
FAILED = "failed"


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same row again later may succeed; every other error recurs."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


VALIDATION_SEEN = "validation"
#: a stored row that turned out to be a notice (the webhook keeps none): nothing to record
NOTICE_SEEN = "notice"
#: the outcomes of a processed row that stand for a stored payment
PAYMENT_OUTCOMES = (CREDITED, UNMATCHED, DUPLICATE)
#: the reason of a conflict row an operator has looked at and settled
SETTLED = "settled"


@dataclass(eq=False)
class Claimed:
    """An inbox row claimed for processing: what parsing it needs, and what it came to.

    Rows are read and written as plain values, not ORM objects: a batch's outcomes are
    written back in one statement (``update_rows``) in the batch's transaction.
    """

    id: int
    provider: str
    kind: str
    body: bytes
    attempts: int
    status: str
    reason: str | None
    detail: str | None
    payment_id: int | None
    processed_at: datetime | None
    next_attempt_at: datetime | None
    #: when the callback reached the inbox (how long a credit took is measured from it)
    received_at: datetime | None = None
    #: the receipt code the webhook read from it, when it had one
    code: str | None = None

    def outcome(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _WRITTEN}


#: the columns processing changes, written back per batch
_WRITTEN = (
    "id",
    "attempts",
    "status",
    "reason",
    "detail",
    "payment_id",
    "processed_at",
    "next_attempt_at",
)
_CLAIMED = (
    InboxItem.id,
    InboxItem.provider,
    InboxItem.kind,
    InboxItem.body,
    InboxItem.attempts,
    InboxItem.status,
    InboxItem.reason,
    InboxItem.detail,
    InboxItem.payment_id,
    InboxItem.processed_at,
    InboxItem.next_attempt_at,
    InboxItem.received_at,
    InboxItem.code,
)
INBOX: Table = InboxItem.__table__  # type: ignore[assignment]

#: turns an inbox row into what the provider said (adapters live in ingest/)
Parser = Callable[[Claimed], Callback]


@dataclass
class BatchResult:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: (provider, seconds from the callback's arrival) of each payment this batch credited
    credited_after: list[tuple[str, float]] = field(default_factory=list)
    #: (inbox id, receipt code, what it came to) of each row this batch finished
    rows: list[tuple[int, str | None, str]] = field(default_factory=list)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return f"claimed={self.claimed}" + (f" ({parts})" if parts else "")


def due(now: datetime) -> ColumnElement[bool]:
    """Pending rows not waiting out a retry backoff."""
    return and_(
        InboxItem.status == INBOX_PENDING,
        or_(InboxItem.next_attempt_at.is_(None), InboxItem.next_attempt_at <= now),
    )


def claim_pending(session: Session, limit: int) -> list[Claimed]:
    """Lock up to ``limit`` due pending rows, oldest first, skipping rows others hold."""
    return [
        Claimed(*row)
        for row in session.execute(
            select(*_CLAIMED)
            .where(due(utcnow()))
            .order_by(InboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ]


def _record(
    session: Session, ledger: Ledger, item: Claimed, callback: Callback, region: str
) -> Recorded:
    if isinstance(callback, PaymentNotification):
        return record_payment(
            session, ledger, callback, region=region, inbox_id=item.id, actor=item.provider
        )
    if isinstance(callback, FailedAttempt):
        return record_attempt(session, callback, inbox_id=item.id)
    if isinstance(callback, RequestResult):
        return record_request_result(
            session, ledger, callback, region=region, inbox_id=item.id, actor=item.provider
        )
    if isinstance(callback, ValidationRequest):
        return Recorded(VALIDATION_SEEN)
    if isinstance(callback, Notice):
        return Recorded(NOTICE_SEEN)
    if isinstance(callback, LookupResult):
        return record_lookup_result(
            session, ledger, callback, region=region, inbox_id=item.id, actor=item.provider
        )
    if isinstance(callback, ReversalResult):
        return record_reversal_result(
            session, ledger, callback, inbox_id=item.id, actor=item.provider
        )
    raise TypeError(f"unknown callback type {type(callback).__name__}")


def process_items(
    session: Session, items: list[Claimed], parse: Parser, *, region: str
) -> BatchResult:
    """Record each claimed row; a bad row is marked, never allowed to sink the batch.

    Payments are recorded together in a few set-based statements; if that fails
    (a receipt stored by another worker at the same moment, or anything
    unexpected) the batch is recorded one row at a time, each row in a savepoint
    of its own. Transient database errors propagate so the caller rolls back and
    retries the whole batch later. Any other error would recur on every try, so
    its row is dead at once, with the error, for an operator to see and replay.
    Every row's outcome is written back in the same transaction, after its effects.
    """
    result = BatchResult(claimed=len(items))
    with Ledger(session) as ledger:
        _record_all(session, ledger, items, parse, region, result)
    update_rows(session, INBOX, "id", [item.outcome() for item in items])
    return result


def _record_all(
    session: Session,
    ledger: Ledger,
    items: list[Claimed],
    parse: Parser,
    region: str,
    result: BatchResult,
) -> None:
    parsed: list[tuple[Claimed, Callback]] = []
    for item in items:
        item.attempts += 1
        try:
            parsed.append((item, parse(item)))
        except InvalidCallback as exc:
            item.status, item.reason = INBOX_REJECTED, exc.reason
            item.detail = storable(exc.message)
            result.outcomes[INBOX_REJECTED] += 1
        except Exception as exc:
            if is_transient(exc):
                raise
            _dead(item, exc, result)
    payments: list[tuple[Claimed, PaymentNotification]] = [
        (i, c) for i, c in parsed if isinstance(c, PaymentNotification)
    ]
    others: list[tuple[Claimed, Callback]] = [
        (i, c) for i, c in parsed if not isinstance(c, PaymentNotification)
    ]
    # the provider's own record, kept whatever recording it comes to
    note_payments(session, ((item.id, callback) for item, callback in payments))
    if payments:
        # taken for the whole batch, outside the savepoint, so recording row by row
        # below still holds them all, taken in one order
        hold_phones(session, (callback.msisdn.sha256 for _, callback in payments))
        try:
            with ledger.savepoint():
                recorded = record_payments(
                    session,
                    ledger,
                    [(item.id, callback) for item, callback in payments],
                    region=region,
                )
            for (item, _), outcome in zip(payments, recorded, strict=True):
                _finish(item, outcome, result)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("batch of %d recorded row by row (%s)", len(payments), describe_error(exc))
            others = [*payments, *others]
    for item, callback in others:
        try:
            with ledger.savepoint():
                outcome = _record(session, ledger, item, callback, region)
        except IntegrityError as exc:
            # Another transaction stored the same code first: a duplicate, or a conflict.
            existing = (
                find_payment(session, callback.provider, callback.code)
                if isinstance(callback, PaymentNotification)
                else None
            )
            outcome = Recorded(DUPLICATE, existing.id if existing else None)
            if isinstance(callback, PaymentNotification):
                if existing is None:
                    # not the receipt's unique key: nothing is stored, and calling it
                    # a duplicate would lose the payment without a trace
                    _dead(item, exc, result)
                    continue
                outcome = repeated(session, ledger, existing, callback)
        except Exception as exc:
            if is_transient(exc):
                raise
            _dead(item, exc, result)
            continue
        _finish(item, outcome, result)


def _finish(item: Claimed, recorded: Recorded, result: BatchResult) -> None:
    if recorded.outcome == CONFLICT:
        item.status, item.reason, item.detail = INBOX_CONFLICT, CONFLICT, recorded.detail
    else:
        item.status, item.reason = INBOX_PROCESSED, recorded.outcome
    item.next_attempt_at = None
    item.payment_id = recorded.payment_id
    item.processed_at = utcnow()
    result.outcomes[recorded.outcome] += 1
    result.rows.append((item.id, item.code, recorded.outcome))
    if recorded.outcome == CREDITED and item.received_at is not None:
        waited = (item.processed_at - item.received_at).total_seconds()
        result.credited_after.append((item.provider, waited))


def _dead(item: Claimed, exc: Exception, result: BatchResult) -> None:
    """An error that recurs on this row whenever it is tried: give it up now, with why."""
    refused = isinstance(exc, DataError | UnicodeError)
    item.status, item.next_attempt_at = INBOX_DEAD, None
    item.reason = UNSTORABLE if refused else FAILED
    item.detail = storable(describe_error(exc), 2000)
    log.error("inbox row %s is dead (%s): %s", item.id, item.reason, item.detail)
    result.outcomes[INBOX_DEAD] += 1
    result.rows.append((item.id, item.code, INBOX_DEAD))


def process_pending(session: Session, parse: Parser, *, region: str, limit: int) -> BatchResult:
    """Claim one batch and record it; the caller commits."""
    items = claim_pending(session, limit)
    if not items:
        return BatchResult()
    return process_items(session, items, parse, region=region)


def stranded(session: Session, *, older_than: timedelta, now: datetime | None = None) -> int:
    """How many rows are still pending after ``older_than``: the sweeper's work."""
    now = now or utcnow()
    return int(
        session.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(due(now), InboxItem.received_at < now - older_than)
        )
        or 0
    )


def replay(session: Session, inbox_id: int, *, actor: str) -> InboxItem:
    """Put a dead (or rejected) callback back in the queue; its effect still happens once.

    A row processed as a payment whose payment is not stored (``momo check`` finds them)
    is replayed too: its receipt is still credited at most once.
    """
    item = session.get(InboxItem, inbox_id, with_for_update=True)
    if item is None:
        raise NotFound(f"no inbox row has id {inbox_id}", "inbox_not_found")
    if item.status not in (INBOX_DEAD, INBOX_REJECTED) and not _payment_missing(session, item):
        raise Conflict(
            f"inbox row {inbox_id} is {item.status}; only dead or rejected rows are replayed "
            "(and processed ones whose payment is missing)",
            "not_replayable",
        )

    before = {"status": item.status, "reason": item.reason, "attempts": item.attempts}
    item.status, item.reason, item.next_attempt_at, item.attempts = (
        INBOX_PENDING,
        "replayed",
        None,
        0,
    )
    audit(
        session,
        actor=actor,
        action="inbox.replay",
        subject_type="inbox",
        subject_id=str(item.id),
        before=before,
        after={"status": item.status, "reason": item.reason, "attempts": 0},
    )
    return item


def requeue_naming(session: Session, provider: str, since: datetime, ids: list[str]) -> int:
    """Put back in the queue the processed callbacks of ``provider`` received since
    ``since`` whose body names one of ``ids``; how many.

    A provider may post the result of a question before momo has stored the ids its
    reply gave the question (the reply and the result race); such a result found no
    question to settle. Once the ids are stored, it is worked again, and settles it: any
    money it moved was recorded the first time, and is not moved twice.
    """
    wanted = [i.encode() for i in ids if i]
    if not wanted:
        return 0
    rows = session.scalars(
        select(InboxItem)
        .where(
            InboxItem.provider == provider,
            InboxItem.status == INBOX_PROCESSED,
            InboxItem.received_at >= since,
        )
        .with_for_update()
    ).all()
    again = [row for row in rows if any(i in row.body for i in wanted)]
    for row in again:
        row.status, row.reason, row.next_attempt_at = INBOX_PENDING, "requeued", None
    return len(again)


def payment_lost() -> ColumnElement[bool]:
    """Inbox rows processed as a payment (credited, unassociated, duplicate) for which no
    payment is stored, neither the one the row names nor one under its receipt: the
    callback was acknowledged and its money never booked."""
    by_id = select(Payment.id).where(Payment.id == InboxItem.payment_id).exists()
    by_receipt = (
        select(Payment.id)
        .where(Payment.provider == InboxItem.provider, Payment.code == InboxItem.code)
        .exists()
    )
    return and_(
        InboxItem.status == INBOX_PROCESSED,
        InboxItem.reason.in_(PAYMENT_OUTCOMES),
        ~by_id,
        ~by_receipt,
    )


def _payment_missing(session: Session, item: InboxItem) -> bool:
    return bool(
        session.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.id == item.id, payment_lost())
        )
    )


def settle(session: Session, inbox_id: int, *, note: str, actor: str) -> InboxItem:
    """Record that an operator settled a conflict: compared the repeated receipt with the
    provider's record and corrected the books where it was the true one. The row stays a
    ``conflict`` (reason ``settled``); who settled it and the note are in the audit log."""
    item = session.get(InboxItem, inbox_id, with_for_update=True)
    if item is None:
        raise NotFound(f"no inbox row has id {inbox_id}", "inbox_not_found")
    if item.status != INBOX_CONFLICT or item.reason != CONFLICT:
        raise Conflict(
            f"inbox row {inbox_id} is {item.status} ({item.reason}); only unsettled "
            "conflict rows are settled",
            "not_settleable",
        )
    note = (note or "").strip()
    if not note:
        raise InvalidInput(
            "say what you found and did in the note, e.g. --note 'statement shows 1500.00; "
            "the repeat was wrong'",
            "note_required",
        )
    before = {"status": item.status, "reason": item.reason}
    item.reason = SETTLED
    audit(
        session,
        actor=actor,
        action="inbox.settle",
        subject_type="inbox",
        subject_id=str(item.id),
        before=before,
        after={"status": item.status, "reason": item.reason, "note": note},
    )
    return item
