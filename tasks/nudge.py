"""Sparing the broker a message per burst: the flag that says a task is already queued.

The flag lives in Redis, so only a Redis broker has it. With RabbitMQ every burst of
callbacks sends its ``momo.process_inbox``: each web process's nudge sends at most one
message per 20 ms (the Nudger's ``min_interval``), and a task that finds the inbox
already drained costs a worker one claim query that claims nothing. Sending more
tasks than needed is safe: rows are claimed by the batch that locks them and
processing is idempotent, so two tasks never credit one payment twice. A flag kept
in the database instead would cost a write per burst, as much as the message it
spares.
"""

from __future__ import annotations

import redis

#: set while a ``momo.process_inbox`` is queued and not yet started; see QueuedFlag
QUEUED_KEY = "momo:process_inbox:queued"


class QueuedFlag:
    """A Redis key that says "a process_inbox task is queued and has not started yet".

    It spares the web processes a Celery message per burst of callbacks while a
    task that will see their rows is already waiting. The rule that keeps it safe:
    a web process that finds the key set may skip sending, because the task that
    set it deletes the key when it starts and only then claims inbox rows, so it
    claims every row committed before the key was seen. A task that starts lets
    the next nudge queue another, so every worker process is kept busy under load
    while at most one task waits in the queue. The key expires after ``ttl``
    seconds, so a task lost with the broker costs at most that long before nudges
    send again (and the sweeper runs regardless).
    """

    def __init__(self, client: redis.Redis, *, ttl: float = 30.0) -> None:
        self.client = client
        self.ttl_ms = int(ttl * 1000)

    @classmethod
    def for_broker(cls, broker_url: str | None) -> QueuedFlag | None:
        """The flag on a Redis broker; None for RabbitMQ (every burst sends a message)."""
        if not broker_url or not broker_url.startswith(("redis://", "rediss://", "unix://")):
            return None
        return cls(redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2))

    def take(self) -> bool:
        """True when this caller set the key (and must send the task)."""
        return bool(self.client.set(QUEUED_KEY, b"1", nx=True, px=self.ttl_ms))

    def drop(self) -> None:
        self.client.delete(QUEUED_KEY)

    def close(self) -> None:
        self.client.close()
