"""The work behind the tasks: drain the inbox in batches, one transaction each."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from ingest.providers import ADAPTERS
from matcher.inbox import process_pending
from matcher.models import InboxItem
from matcher.notifications import Callback, InvalidCallback
from momo.runtime import Runtime

log = logging.getLogger(__name__)


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


def parser_for(runtime: Runtime):  # type: ignore[no-untyped-def]
    ctx = runtime.parse_context

    def parse(item: InboxItem) -> Callback:
        adapter = ADAPTERS.get(item.provider)
        if adapter is None:
            raise InvalidCallback(f"no adapter for provider {item.provider!r}", "unknown_provider")
        return adapter.parse(item.kind, item.body, ctx)

    return parse


def drain_inbox(runtime: Runtime, *, time_budget: float = 20.0) -> DrainResult:
    """Process pending inbox rows batch by batch until none are left or the budget is spent.

    Each batch commits on its own: a crash loses at most the batch in hand,
    whose rows stay pending and are claimed again.
    """
    parse = parser_for(runtime)
    settings = runtime.settings
    result = DrainResult()
    started = time.monotonic()
    while True:
        with runtime.sessions.begin() as session:
            batch = process_pending(
                session, parse, region=settings.default_region, limit=settings.batch_size
            )
        if batch.claimed:
            result.batches += 1
            result.claimed += batch.claimed
            result.outcomes.update(batch.outcomes)
            log.info("inbox batch done: %s", batch)
        if batch.claimed < settings.batch_size:
            return result
        if time.monotonic() - started > time_budget:
            result.more = True
            return result
