"""Telling a background thread there is work, cheaply: the workers' nudge, the
embedded worker and the spool drainer each run on one.

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
