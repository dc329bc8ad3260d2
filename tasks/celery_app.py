"""The Celery app. Configured lazily from momo's settings, so importing it does nothing."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init

from core.config import Settings
from core.logs import bind_ids, unbind_ids
from ingest.providers.mpesa import pull_every
from tasks.runtime import process_runtime, set_process_runtime

PROCESS_INBOX = "momo.process_inbox"
SWEEP_INBOX = "momo.sweep_inbox"
SETTLE_REQUESTS = "momo.settle_requests"
PULL_PAYMENTS = "momo.pull_payments"
QUEUE = "momo"


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
        "broker_transport_options": {"socket_timeout": 5, "socket_connect_timeout": 5},
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
