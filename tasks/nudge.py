"""Telling the workers there is inbox work, cheaply.

One Celery message per callback costs about as much as storing the callback.
A Nudger coalesces: every ``nudge()`` (called after the commit that made a row
visible) guarantees at least one dispatch starts after it, but a burst of
nudges costs one dispatch per ``min_interval``. The dispatch runs on a
background thread, so a slow or unreachable broker never holds up a request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)


class Nudger:
    def __init__(
        self,
        dispatch: Callable[[bool], None],
        *,
        min_interval: float = 0.02,
        idle_interval: float | None = None,
        name: str = "momo-nudge",
    ) -> None:
        """``dispatch(nudged)`` runs after nudges, and every ``idle_interval`` seconds
        with ``nudged=False`` when an interval is given (the embedded sweeper)."""
        self._dispatch = dispatch
        self._min_interval = min_interval
        self._idle_interval = idle_interval
        self._name = name
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def nudge(self) -> None:
        self._ensure_thread()
        self._event.set()

    def start(self) -> None:
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        # Started lazily and per process: a thread does not survive a fork
        # (gunicorn forks its workers after importing the app).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._pid = os.getpid()
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            nudged = self._event.wait(self._idle_interval)
            if self._stop.is_set():
                return
            self._event.clear()
            try:
                self._dispatch(nudged)
            except Exception:
                log.exception("%s: dispatch failed; the sweeper will pick the work up", self._name)
            if nudged and self._min_interval:
                self._stop.wait(self._min_interval)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._event.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)
        self._thread = None


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
        """The flag on a Redis broker; None for other brokers (every burst sends a message)."""
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
