"""The work behind the tasks: drain the inbox in batches, one transaction each."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from core.metrics import observe_credits
from core.runtime import Runtime
from ingest.providers import ADAPTERS
from matcher.inbox import TRANSIENT_ERRORS, BatchResult, Claimed, Parser, process_pending
from matcher.notifications import Callback, InvalidCallback
from tasks import heartbeat

log = logging.getLogger(__name__)

#: a batch is tried this often on transient database errors before the task's own retry
BATCH_TRIES = 3
#: how long one drain goes on claiming batches before it hands the rest to a fresh task
DRAIN_BUDGET_SECONDS = 20.0

#: set when this process is asked to stop (a worker's SIGTERM): a drain ends after the
#: batch in hand, committed, and leaves the rest to the next worker
stopping = threading.Event()


@dataclass
class DrainResult:
    batches: int = 0
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: True when the time budget ran out with work possibly left
    more: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "claimed": self.claimed,
            "outcomes": dict(self.outcomes),
            "more": self.more,
        }


def parser_for(runtime: Runtime) -> Parser:
    ctx = runtime.parse_context

    def parse(item: Claimed) -> Callback:
        adapter = ADAPTERS.get(item.provider)
        if adapter is None:
            raise InvalidCallback(f"no adapter for provider {item.provider!r}", "unknown_provider")
        return adapter.parse(item.kind, item.body, ctx)

    return parse


def _one_batch(runtime: Runtime, parse: Parser) -> BatchResult:
    """One batch in one transaction; a deadlock or dropped connection is tried again.

    Two batches holding rows with the same receipt code can deadlock on the
    unique index; PostgreSQL aborts one, which rolls back whole and retries.
    """
    settings = runtime.settings
    for attempt in range(1, BATCH_TRIES + 1):
        try:
            with runtime.sessions.begin() as session:
                return process_pending(
                    session,
                    parse,
                    region=settings.default_region,
                    limit=settings.batch_size,
                )
        except TRANSIENT_ERRORS as exc:
            if attempt == BATCH_TRIES:
                raise
            log.warning("inbox batch rolled back (%s); trying again", type(exc).__name__)
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def drain_inbox(runtime: Runtime, *, time_budget: float = DRAIN_BUDGET_SECONDS) -> DrainResult:
    """Process pending inbox rows batch by batch until none are left, the budget is spent
    or this process is ``stopping``; then note the worker's heartbeat (a drain that
    failed notes none).

    Each batch commits on its own: a crash loses at most the batch in hand,
    whose rows stay pending and are claimed again.
    """
    result = _drain(runtime, time_budget)
    heartbeat.beat(runtime)
    return result


def _drain(runtime: Runtime, time_budget: float) -> DrainResult:
    parse = parser_for(runtime)
    settings = runtime.settings
    result = DrainResult()
    started = time.monotonic()
    while True:
        batch = _one_batch(runtime, parse)
        # committed: the customers are credited now
        observe_credits(batch.credited_after)
        if batch.claimed:
            result.batches += 1
            result.claimed += batch.claimed
            result.outcomes.update(batch.outcomes)
            # a line for each row, tied to the webhook's by the receipt code
            for inbox_id, code, outcome in batch.rows:
                log.info(
                    "inbox row %s: %s",
                    inbox_id,
                    outcome,
                    extra={"inbox_id": inbox_id, "code": code},
                )
            log.info("inbox batch done: %s", batch)
        if batch.claimed < settings.batch_size:
            return result
        if stopping.is_set():
            log.info("stopping: the batch in hand is done; the rest is left to the next worker")
            result.more = True
            return result
        if time.monotonic() - started > time_budget:
            result.more = True
            return result
