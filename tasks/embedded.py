"""The embedded default's worker: no broker, the queue is worked on a thread of ``momo serve``."""

from __future__ import annotations

import contextlib
import logging
import time

import redis

from core.nudge import Nudger
from core.runtime import Runtime
from ingest.asking import settle_due
from ingest.providers import requesters
from ingest.providers.mpesa import pull_every
from tasks.celery_app import PROCESS_INBOX, make_producer
from tasks.nudge import QueuedFlag
from tasks.pulling import pull_due
from tasks.work import drain_inbox

log = logging.getLogger(__name__)


def embedded_worker(runtime: Runtime) -> Nudger:
    """A Nudger that drains the inbox in-process after each nudge and every sweep interval,
    and on the interval also settles payment requests no callback settled in time and,
    when MOMO_MPESA_PULL_EVERY_MINUTES is set, pulls M-PESA's payments that often."""
    every = pull_every(runtime.settings)
    last_pull: list[float] = []

    def dispatch(nudged: bool) -> None:
        while drain_inbox(runtime).more:
            pass
        if not nudged:
            try:
                settle_due(runtime, requesters())
            except Exception:
                log.exception("settling payment requests failed; trying again next interval")
            if every is not None and (
                not last_pull or time.monotonic() - last_pull[0] >= every * 60
            ):
                last_pull[:] = [time.monotonic()]
                try:
                    pull_due(runtime)
                except Exception:
                    log.exception("pulling M-PESA payments failed; trying again next time")

    return Nudger(
        dispatch,
        min_interval=0,
        idle_interval=float(runtime.settings.sweep_interval_seconds),
        name="momo-embedded-worker",
    )


def broker_nudger(runtime: Runtime) -> Nudger:
    """A Nudger that queues one ``momo.process_inbox`` per burst of new inbox rows."""
    producer = make_producer(runtime.settings)
    flag = QueuedFlag.for_broker(runtime.settings.broker_url)

    def dispatch(nudged: bool) -> None:
        if not nudged:
            return
        if flag is not None:
            try:
                if not flag.take():
                    return  # a queued or running task will claim the new rows
            except redis.RedisError:
                log.warning("cannot reach the queued-task flag; sending a task anyway")
        try:
            producer.send_task(PROCESS_INBOX)
        except Exception:
            if flag is not None:
                with contextlib.suppress(redis.RedisError):
                    flag.drop()  # the next nudge must try again
            raise

    nudger = Nudger(dispatch, min_interval=0.02, name="momo-nudge")
    if flag is not None:
        runtime.helpers.append(flag)
    return nudger


def attach_queue(runtime: Runtime) -> Nudger:
    """Give the runtime its way of reaching the workers: the broker, or an in-process thread."""
    nudger = broker_nudger(runtime) if runtime.settings.broker_url else embedded_worker(runtime)
    if not runtime.settings.broker_url:
        nudger.start()  # the embedded worker also sweeps on a timer
    runtime.nudge = nudger.nudge
    runtime.queue = nudger
    return nudger
