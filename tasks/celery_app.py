"""The Celery app. Configured lazily from momo's settings, so importing it does nothing."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
from typing import Any

from celery import Celery
from celery.signals import (
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_shutting_down,
)

from core.config import Settings
from core.logs import bind_ids, unbind_ids
from ingest.providers.mpesa import pull_every
from ingest.providers.outbound import Timeouts
from matcher.db import Deadlines
from tasks import heartbeat, work
from tasks.runtime import process_runtime, set_process_runtime

PROCESS_INBOX = "momo.process_inbox"
SWEEP_INBOX = "momo.sweep_inbox"
SETTLE_REQUESTS = "momo.settle_requests"
PULL_PAYMENTS = "momo.pull_payments"
QUEUE = "momo"
#: a worker pool process is replaced after this many tasks, or once it holds this much
#: memory (KiB, checked after each task; one holds about 110 MiB): a slow leak never
#: takes the host
MAX_TASKS_PER_CHILD = 1000
MAX_MEMORY_PER_CHILD_KIB = 256 * 1024
#: how long settle_due goes on asking providers (its budget_seconds) before it stops
SETTLE_BUDGET_SECONDS = 10.0


def time_limits(settings: Settings) -> dict[str, dict[str, float]]:
    """Each task's time limits, from the deadlines every wait already has.

    A task past its soft limit gets SoftTimeLimitExceeded where it is (its transaction is
    rolled back; the next sweep, settle or pull takes up the rest); past its hard limit
    its pool process is killed, so a task hung past every deadline frees its slot.
    ``momo.process_inbox`` has no soft limit: the exception could land while a row is
    recorded, where any error other than the database's marks the row dead. It stops
    itself after DRAIN_BUDGET_SECONDS and a batch; killed past its hard limit, the batch
    in hand is rolled back whole and its rows stay pending for the sweeper.
    """
    answer = Deadlines.for_statements(settings.db_statement_timeout_seconds).answer_seconds
    provider = Timeouts().connect + Timeouts().read
    #: time to unwind after a soft limit: a rollback, a log line
    unwind = answer + 5
    soft = {
        SWEEP_INBOX: 2 * answer,
        # the last question asked, then its request settled in a transaction of its own
        SETTLE_REQUESTS: SETTLE_BUDGET_SECONDS + provider + 2 * answer,
        # each window read and recorded is kept: a pull cut short is resumed by the next
        PULL_PAYMENTS: max(300.0, 60.0 * (pull_every(settings) or 0)),
    }
    limits: dict[str, dict[str, float]] = {
        name: {"soft_time_limit": math.ceil(limit), "time_limit": math.ceil(limit + unwind)}
        for name, limit in soft.items()
    }
    # the drain's budget, then the batch in hand: each of its tries may wait out a lock
    # and a statement deadline before it fails
    limits[PROCESS_INBOX] = {
        "time_limit": math.ceil(work.DRAIN_BUDGET_SECONDS + work.BATCH_TRIES * 2 * answer)
    }
    return limits


def visibility_timeout(settings: Settings) -> int:
    """How long Redis waits for a delivered task's acknowledgement before it gives the
    task to another worker: twice the longest hard time limit, so a task still running
    (or its one prefetched successor) is never handed out twice. A worker killed with
    tasks in hand has them redelivered after this long; their inbox rows are re-queued
    by the sweeper much sooner."""
    longest = max(limit["time_limit"] for limit in time_limits(settings).values())
    return int(2 * longest)


def rabbitmq_options(broker_url: str | None) -> dict[str, Any]:
    """The Celery settings RabbitMQ (an amqp:// or amqps:// broker) takes beyond Redis's.

    The queue is a quorum queue: durable and replicated, so a task survives a broker
    node's restart. Celery then turns off global QoS on its own
    (``worker_detect_quorum_queues``), and a retry's countdown goes through RabbitMQ's
    native delayed delivery, which needs a topic exchange (with a direct one the
    waiting task would sit in a worker slot until its time comes). An existing classic
    ``momo`` queue or direct ``momo`` exchange must be deleted once before momo
    declares them anew.

    With ``task_acks_late`` a task holds its message unacknowledged while it runs, and
    RabbitMQ closes a channel whose delivery stays unacknowledged past its
    ``consumer_timeout`` (30 minutes by default): the message goes back to the queue and
    runs again. momo's tasks are short (a drain hands over to a fresh task after 20
    seconds), so only a task time limit set above that timeout could meet it. From
    RabbitMQ 4.0 a quorum queue drops a message delivered 20 times (its default
    ``delivery-limit``): momo's messages carry no payment, whose row stays pending in
    the inbox until the sweeper queues it again.
    """
    if not broker_url or not broker_url.startswith(("amqp://", "amqps://")):
        return {}
    return {
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        "worker_detect_quorum_queues": True,
        "broker_native_delayed_delivery_queue_type": "quorum",
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "sweep-inbox": {
            "task": SWEEP_INBOX,
            "schedule": float(settings.sweep_interval_seconds),
        },
        # payment requests no callback settled: ask their providers, expire the lost
        "settle-requests": {
            "task": SETTLE_REQUESTS,
            "schedule": float(settings.sweep_interval_seconds),
        },
    }
    every = pull_every(settings)
    if every is not None:
        # the provider's own list of payments since the last pull: confirmations lost on
        # the way are recovered
        schedule["pull-payments"] = {"task": PULL_PAYMENTS, "schedule": every * 60.0}
    return {
        "broker_url": settings.broker_url or "memory://",
        "broker_connection_retry_on_startup": True,
        **rabbitmq_options(settings.broker_url),
        "task_default_queue": QUEUE,
        # A task is acknowledged after it ran; a worker killed mid-task gets its
        # message redelivered. Safe because processing is idempotent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        # Flower shows tasks from these events
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # A broker outage must not hang a web request: fail fast, the sweeper catches up.
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "broker_transport_options": {
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            "visibility_timeout": visibility_timeout(settings),
        },
        "task_annotations": time_limits(settings),
        "worker_max_tasks_per_child": MAX_TASKS_PER_CHILD,
        "worker_max_memory_per_child": MAX_MEMORY_PER_CHILD_KIB,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_schedule": schedule,
    }


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends (the web process), configured from given settings."""
    producer = Celery("momo", set_as_current=False)
    producer.config_from_object(celery_config(settings))
    return producer


#: the worker's and beat's app (``celery -A tasks``), configured from the environment
app = Celery("momo", include=["tasks.tasks"])
app.add_defaults(lambda: celery_config(process_runtime().settings))


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # Connections opened in the parent must never be used by a child.
    set_process_runtime(None)


# --- stopping: SIGTERM finishes the task in hand -------------------------------------------

#: tasks this process has in hand (between prerun and postrun)
_in_hand = 0
#: what a pool process did on SIGTERM before momo's handler (billiard's: exit at once)
_idle_sigterm: Any = signal.SIG_DFL


def _finish_the_task_in_hand(signum: int, frame: Any) -> None:
    """A pool process's SIGTERM: with a task in hand, finish it (an inbox drain ends after
    the batch in hand) and leave the rest to the next worker; idle, stop at once."""
    work.stopping.set()
    if _in_hand:
        return
    if callable(_idle_sigterm):
        _idle_sigterm(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _sigterm_finishes_the_task_in_hand() -> None:
    # In a pool process SIGTERM otherwise ends the task mid-batch when the whole group is
    # signalled (systemd's default KillMode, a terminal, honcho). Installed at the first
    # task: billiard sets its own handler after the process's start-up signals run.
    global _idle_sigterm
    current = signal.getsignal(signal.SIGTERM)
    if current is not _finish_the_task_in_hand:
        _idle_sigterm = current
        signal.signal(signal.SIGTERM, _finish_the_task_in_hand)


@worker_shutting_down.connect
def _stop_after_the_batch_in_hand(**_: Any) -> None:
    # The worker itself was asked to stop (warm shutdown waits for the tasks in hand): a
    # drain on this process (the solo pool) ends after its batch, and pool processes with
    # a task in hand are told so too, when only the worker was signalled (a container).
    work.stopping.set()
    try:
        from celery.worker import state

        pids = {request.worker_pid for request in state.active_requests}
    except Exception:  # stopping must never fail on this
        return
    for pid in pids - {None, os.getpid()}:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


@task_prerun.connect
def _take_in_hand(**_: Any) -> None:
    global _in_hand
    _in_hand += 1
    if _main_pid is not None and os.getpid() != _main_pid:
        _sigterm_finishes_the_task_in_hand()


@task_postrun.connect
def _done_with_it(**_: Any) -> None:
    global _in_hand
    _in_hand = max(0, _in_hand - 1)
    if not _in_hand and os.getpid() != _main_pid:
        # asked to stop this task only (a revoke with terminate): the process works on
        work.stopping.clear()
    heartbeat.beat(process_runtime())


@celeryd_init.connect
def _worker_name(sender: str | None = None, **_: Any) -> None:
    global _main_pid
    _main_pid = os.getpid()
    if sender:
        heartbeat.name_this_worker(sender)


#: the worker's own process (not a pool process), once it is known
_main_pid: int | None = None


@setup_logging.connect
def _momo_logging(loglevel: Any = None, **_: Any) -> None:
    # connected, Celery leaves logging to momo: the worker's and beat's lines take
    # MOMO_LOG_FORMAT like every other process's
    from core.logs import configure_logging

    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure_logging(level=str(level).upper() if level else None)


_task_ids: dict[str, Any] = {}


@task_prerun.connect
def _bind_task_id(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_ids[task_id] = bind_ids(task_id=task_id)


@task_postrun.connect
def _unbind_task_id(task_id: str | None = None, **_: Any) -> None:
    token = _task_ids.pop(task_id, None) if task_id else None
    if token is not None:
        unbind_ids(token)


# --- the worker's metrics (core.metrics) ---------------------------------------------------


def _serve_metrics(**_: Any) -> Any:
    """In the worker's main process, before the pool starts: with MOMO_METRICS_PORT set,
    answer Prometheus there, with every pool process's counts when PROMETHEUS_MULTIPROC_DIR
    is set (a prefork pool needs it: each child counts apart)."""
    from prometheus_client import start_http_server

    from core.metrics import metrics_listen, multiprocess_dir, worker_registry

    shared = multiprocess_dir()  # a wrong one stops the worker here, not each task
    listen = metrics_listen()
    if listen is None:
        return None
    host, port = listen
    log = logging.getLogger(__name__)
    if shared is None:
        log.warning(
            "MOMO_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: only this process's "
            "counts are shown, not the pool processes' that do the work (set it to an empty "
            "directory of the worker's own)"
        )
    served = start_http_server(port, addr=host, registry=worker_registry())
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return served


def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    import os

    from core.metrics import process_gone

    process_gone(pid or os.getpid())


def _connect_metrics() -> None:
    from celery.signals import worker_init, worker_process_shutdown

    worker_init.connect(_serve_metrics, weak=False)
    worker_process_shutdown.connect(_pool_process_gone, weak=False)


_connect_metrics()
