"""Recovering payments from a provider's own record (a statement, a pull): one path.

``recover`` stores each record in the inbox as its callback would have been stored,
records them with the worker's own code, waits for rows a worker elsewhere claimed
first, and counts what they came to. A record whose receipt momo already has is a
duplicate and changes nothing; a missed one is stored, matched and credited; the same
records recovered again recover nothing twice. A span of the record read in full is
noted as coverage in the same transaction as its last records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import select

from core.runtime import Runtime
from ingest.providers import ADAPTERS
from ingest.store import inbox_row
from matcher.models import INBOX_CONFLICT, INBOX_PENDING, InboxItem
from matcher.notifications import InvalidCallback, ReversalResult
from matcher.payments import CREDITED, DUPLICATE, UNMATCHED
from matcher.provider_records import note_coverage
from matcher.reversals import ALREADY_REVERSED, REVERSED_OUTCOME, UNKNOWN_REVERSAL
from tasks.work import drain_inbox

#: how long recovering waits for inbox rows another worker claimed to be recorded
WAIT_SECONDS: Final = 60.0
#: what a reversal the record lists can come to (none is a failure)
REVERSAL_OUTCOMES: Final = (REVERSED_OUTCOME, ALREADY_REVERSED, UNKNOWN_REVERSAL)
#: records stored per transaction
STORE_BATCH: Final = 500

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Coverage:
    """A span of the provider's record that was read in full, and by whom."""

    source: str
    starts_at: datetime
    ends_at: datetime
    actor: str


@dataclass
class Recovery:
    """What recovering came to. ``unreadable`` and the inbox ids are for telling an
    operator where to look; the rest are counts."""

    #: records that are payments, readable or not
    seen: int = 0
    already_known: int = 0
    credited: int = 0
    unassociated: int = 0
    #: (where, what is wrong): records that could not be read, never stored
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: inbox ids: receipts that disagree with the payment momo has
    conflicts: list[int] = field(default_factory=list)
    #: inbox ids no worker has recorded yet
    pending: list[int] = field(default_factory=list)
    #: inbox ids that were not recorded (dead, or rejected by the worker)
    failed: list[int] = field(default_factory=list)
    #: records that are no payment, by why
    skipped: Counter[str] = field(default_factory=Counter)
    #: reversals the record lists (a statement's reversal rows), by what they came to
    reversals: Counter[str] = field(default_factory=Counter)

    @property
    def recovered(self) -> int:
        return self.credited + self.unassociated

    @property
    def clean(self) -> bool:
        """Nothing for an operator to look at."""
        return not (self.unreadable or self.conflicts or self.pending or self.failed)

    def add(self, other: Recovery) -> None:
        self.seen += other.seen
        self.already_known += other.already_known
        self.credited += other.credited
        self.unassociated += other.unassociated
        self.unreadable.extend(other.unreadable)
        self.conflicts.extend(other.conflicts)
        self.pending.extend(other.pending)
        self.failed.extend(other.failed)
        self.skipped.update(other.skipped)
        self.reversals.update(other.reversals)

    def __str__(self) -> str:
        return (
            f"seen {self.seen} payments: already known {self.already_known}, recovered "
            f"{self.recovered} (credited {self.credited}, unassociated {self.unassociated}), "
            f"conflicts {len(self.conflicts)}, unreadable {len(self.unreadable)}"
        )


def recover(
    runtime: Runtime,
    provider: str,
    kind: str,
    records: Sequence[tuple[str, bytes]],
    *,
    unreadable: Sequence[tuple[str, str]] = (),
    coverage: Coverage | None = None,
    progress: Progress | None = None,
    wait_seconds: float = WAIT_SECONDS,
) -> Recovery:
    """Record ``records`` ((where, body) of kind ``kind``) as their callbacks would have
    been; ``unreadable`` (where, why) are records the caller could not read. A record the
    adapter cannot read is counted unreadable, named by its ``where``, and not stored."""
    adapter = ADAPTERS[provider]
    summary = Recovery(seen=len(records) + len(unreadable), unreadable=list(unreadable))
    bodies: list[bytes] = []
    for where, body in records:
        try:  # the worker's own reading, so a bad record is named here, not stored
            read = adapter.parse(kind, body, runtime.parse_context)
        except InvalidCallback as exc:
            summary.unreadable.append((where, exc.message))
        else:
            bodies.append(body)
            if isinstance(read, ReversalResult):  # counted apart from the payments
                summary.seen -= 1
    ids: list[int] = []
    starts = range(0, len(bodies), STORE_BATCH) if bodies else range(1)
    for start in starts:
        with runtime.sessions.begin() as session:
            items = [
                InboxItem(**inbox_row(provider=provider, kind=kind, body=body))
                for body in bodies[start : start + STORE_BATCH]
            ]
            session.add_all(items)
            session.flush()
            ids.extend(item.id for item in items)
            if coverage is not None and start + STORE_BATCH >= len(bodies):
                note_coverage(
                    session,
                    provider=provider,
                    source=coverage.source,
                    starts_at=coverage.starts_at,
                    ends_at=coverage.ends_at,
                    records=len(bodies),
                    actor=coverage.actor,
                )
        if progress is not None and bodies:
            progress(f"stored {len(ids)}/{len(bodies)} payments")
    if not ids:
        return summary
    # recorded here, by the worker's own code; rows a worker elsewhere claimed first
    # are waited for
    deadline = time.monotonic() + wait_seconds
    while True:
        drain_inbox(runtime)
        with runtime.sessions.begin() as session:
            found = session.execute(
                select(InboxItem.id, InboxItem.status, InboxItem.reason).where(
                    InboxItem.id.in_(ids)
                )
            ).all()
        if all(status != INBOX_PENDING for _, status, _ in found):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for inbox_id, status, reason in found:
        if status == INBOX_PENDING:
            summary.pending.append(inbox_id)
        elif status == INBOX_CONFLICT:
            summary.conflicts.append(inbox_id)
        elif reason == DUPLICATE:
            summary.already_known += 1
        elif reason == CREDITED:
            summary.credited += 1
        elif reason == UNMATCHED:
            summary.unassociated += 1
        elif reason in REVERSAL_OUTCOMES:
            summary.reversals[reason] += 1
        else:
            summary.failed.append(inbox_id)
    if progress is not None:
        progress(f"recorded {len(ids) - len(summary.pending)}/{len(ids)} payments")
    return summary
