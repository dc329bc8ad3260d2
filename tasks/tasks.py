"""Celery tasks: thin, named, idempotent wrappers over the inbox work."""

from __future__ import annotations

import logging
import math
import os
from datetime import timedelta

import redis
from celery import Task

from ingest.asking import settle_due
from ingest.providers import requesters
from ingest.providers.mpesa import pull_every
from ingest.providers.outbound import ProviderError
from matcher.inbox import TRANSIENT_ERRORS, stranded
from tasks.celery_app import PROCESS_INBOX, PULL_PAYMENTS, SETTLE_REQUESTS, SWEEP_INBOX, app
from tasks.nudge import QueuedFlag
from tasks.pulling import pull_due
from tasks.runtime import process_runtime
from tasks.work import drain_inbox

log = logging.getLogger(__name__)

#: at most this many process_inbox tasks are queued by one sweep
MAX_SWEEP_FANOUT = 8


@app.task(
    name=PROCESS_INBOX,
    bind=True,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
)
def process_inbox(self: Task) -> dict[str, object]:
    """Record pending inbox rows. Running it twice, or on two workers at once, credits once."""
    runtime = process_runtime()
    flag = queued_flag(runtime.settings.broker_url)
    if flag is not None:
        # Started: the next nudge must queue another task (for a second worker, or for
        # rows committed after this drain's last claim). Dropped before the first claim,
        # so a row whose nudge saw the flag set is claimed below.
        try:
            flag.drop()
        except redis.RedisError:
            log.warning("cannot reach the queued-task flag; it expires by itself")
    result = drain_inbox(runtime)
    if result.more:
        # Hand the rest to a fresh task rather than hold this worker slot forever.
        self.app.send_task(PROCESS_INBOX)
    return result.as_dict()


_flags: dict[tuple[int, str | None], QueuedFlag | None] = {}


def queued_flag(broker_url: str | None) -> QueuedFlag | None:
    """This worker process's handle on the queued-task flag (None off Redis)."""
    key = (os.getpid(), broker_url)
    if key not in _flags:
        _flags[key] = QueuedFlag.for_broker(broker_url)
    return _flags[key]


@app.task(name=SWEEP_INBOX, acks_late=True)
def sweep_inbox() -> int:
    """Queue processing for rows left pending too long (lost nudge, broker outage, crash)."""
    runtime = process_runtime()
    settings = runtime.settings
    with runtime.sessions.begin() as session:
        count = stranded(session, older_than=timedelta(seconds=settings.sweep_after_seconds))
    if count:
        tasks = min(MAX_SWEEP_FANOUT, math.ceil(count / settings.batch_size))
        log.warning("sweeper: %d inbox rows stranded; queueing %d process_inbox", count, tasks)
        for _ in range(tasks):
            app.send_task(PROCESS_INBOX)
    return count


@app.task(name=SETTLE_REQUESTS, acks_late=True)
def settle_requests() -> str:
    """Ask providers about payment requests no callback settled in time; expire those
    past their expiry. Two running at once never ask about the same request."""
    summary = settle_due(process_runtime(), requesters())
    if summary.asked or summary.outcomes:
        log.info("payment requests: %s", summary)
    return str(summary)


@app.task(name=PULL_PAYMENTS, acks_late=True)
def pull_payments() -> str:
    """Pull the shortcode's payments since the last pull and record the missed ones. Run
    twice, or two at once, it credits each payment once (a known receipt is a duplicate)."""
    runtime = process_runtime()
    if pull_every(runtime.settings) is None:
        return "off"
    try:
        summary = pull_due(runtime)
    except ProviderError as exc:
        # the next run starts where the last pull that finished ended: nothing is skipped
        log.warning("M-PESA pull failed, tried again next time: %s", exc.message)
        return f"failed: {exc.message}"
    return str(summary)
