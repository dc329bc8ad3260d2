"""Pulling the shortcode's C2B transactions from Daraja and recording the missed ones.

``pull`` reads a span window by window (Daraja answers at most 48 hours, page by page),
feeds every payment through ``recover`` (the inbox path of a callback: a known receipt
is a duplicate, a missed one is stored, matched and credited) and notes each window it
read in full as coverage. ``pull_due`` is beat's pull: from where the last one ended
(a little before, ``OVERLAP``, for records Daraja lists late) to now, never earlier than
Daraja keeps; a gap older than that is logged with the way to fill it.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Final

from core.runtime import Runtime
from ingest.providers.mpesa import PROVIDER, puller
from ingest.providers.mpesa_pull import (
    MAX_WINDOW,
    PULL,
    SOURCE,
    Entry,
    Malformed,
    Skipped,
    sort_record,
    windows,
)
from matcher.provider_records import last_covered
from tasks.recovery import Coverage, Progress, Recovery, recover

log = logging.getLogger(__name__)

#: each pull reads again this much before where the last one ended: a payment Daraja
#: lists a little after it was made is still found
OVERLAP: Final = timedelta(minutes=15)
#: a scheduled pull starts this much inside Daraja's 48 hours, so clocks a little apart
#: never make Daraja refuse it
EDGE: Final = timedelta(minutes=2)
#: who a scheduled pull is recorded as
BEAT_ACTOR: Final = "beat"


def pull(
    runtime: Runtime,
    starts_at: datetime,
    ends_at: datetime,
    *,
    actor: str,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> Recovery:
    """Pull ``starts_at``..``ends_at`` and record every payment in it; TooOld when it
    starts before Daraja's 48 hours, ProviderError when Daraja cannot be asked (windows
    read before it are recorded and covered)."""
    client = puller(runtime.settings)
    total = Recovery()
    for start, end in windows(starts_at, ends_at, now=now):
        records: list[tuple[str, bytes]] = []
        unreadable: list[tuple[str, str]] = []
        skipped: Counter[str] = Counter()
        for page in client.window(start, end):
            for number, doc in enumerate(page.records, start=page.offset + 1):
                found = sort_record(doc)
                where = f"record {number} ({found.receipt or 'no transactionId'})"
                if isinstance(found, Entry):
                    records.append((where, found.body))
                elif isinstance(found, Skipped):
                    skipped[found.why] += 1
                elif isinstance(found, Malformed):
                    unreadable.append((where, found.message))
            if progress is not None:
                progress(f"read {len(records) + len(unreadable) + sum(skipped.values())} records")
        summary = recover(
            runtime,
            PROVIDER,
            PULL,
            records,
            unreadable=unreadable,
            coverage=Coverage(SOURCE, start, end, actor),
            progress=progress,
        )
        summary.skipped.update(skipped)
        total.add(summary)
    return total


def due_span(runtime: Runtime, now: datetime | None = None) -> tuple[datetime, datetime]:
    """What a scheduled pull reads: from a little before the last pull's end (or as far
    back as Daraja keeps, for the first) to now."""
    now = now or datetime.now(UTC)
    earliest = now - MAX_WINDOW + EDGE
    with runtime.sessions.begin() as session:
        last = last_covered(session, PROVIDER, SOURCE)
    if last is None:
        return earliest, now
    if last < earliest:
        log.warning(
            "M-PESA pull: the last pull ended at %s, more than 48 hours ago; Daraja no longer "
            "lists %s to %s. Export the statement for that time from the M-PESA organisation "
            "portal and run `momo mpesa import-statement FILE`",
            last.isoformat(),
            last.isoformat(),
            earliest.isoformat(),
        )
    return max(last - OVERLAP, earliest), now


def pull_due(runtime: Runtime, now: datetime | None = None) -> Recovery:
    """Beat's pull: since the last one, recorded as the scheduler's."""
    starts_at, ends_at = due_span(runtime, now)
    summary = pull(runtime, starts_at, ends_at, actor=BEAT_ACTOR, now=now)
    if summary.recovered or not summary.clean:
        log.warning("M-PESA pull %s..%s: %s", starts_at.isoformat(), ends_at.isoformat(), summary)
    else:
        log.info("M-PESA pull %s..%s: %s", starts_at.isoformat(), ends_at.isoformat(), summary)
    return summary
