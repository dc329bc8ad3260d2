"""The Celery app. Configured lazily from momo's settings, so importing it does nothing."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from core.config import Settings
from ingest.providers.mpesa import pull_every
from tasks.runtime import process_runtime, set_process_runtime

PROCESS_INBOX = "momo.process_inbox"
SWEEP_INBOX = "momo.sweep_inbox"
SETTLE_REQUESTS = "momo.settle_requests"
PULL_PAYMENTS = "momo.pull_payments"
QUEUE = "momo"


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
