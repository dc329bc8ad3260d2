"""A worker's heartbeat: the note, in the database, that it finished a task just now.

``/readyz`` says the worker part is ready when some worker's note is more recent than
``MOMO_WORKER_SEEN_WITHIN_SECONDS``. A Celery worker writes one when a task ends, and
beat sends the sweeper every ``MOMO_SWEEP_INTERVAL_SECONDS``, so an idle stack still
beats: a fresh note says that beat sends, the broker delivers, a worker runs tasks and
the database takes its writes. ``momo serve``'s embedded worker writes one after each
drain of the inbox, which it does at least as often. Each process writes at most once
per half sweep interval, so a busy worker costs one small write every few seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from core.runtime import Runtime
from matcher.db import describe_error
from matcher.heartbeats import record_heartbeat

log = logging.getLogger(__name__)

#: whose note this process writes: the Celery worker's node name once it is known
_name = f"serve@{socket.gethostname()}"
#: (pid, monotonic time) of this process's last note
_last: tuple[int, float] | None = None
_lock = threading.Lock()


def name_this_worker(hostname: str) -> None:
    """Write this process's notes as worker ``hostname`` (Celery's ``name@host``)."""
    global _name
    _name = hostname


def beat(runtime: Runtime) -> bool:
    """Note that this worker finished a task, unless it did so less than half a sweep
    interval ago; True when a note was written. A database that cannot take it is
    logged, never raised: the task's own outcome stands."""
    global _last
    every = runtime.settings.sweep_interval_seconds / 2
    now = time.monotonic()
    with _lock:
        if _last is not None and _last[0] == os.getpid() and now - _last[1] < every:
            return False
        _last = (os.getpid(), now)
    try:
        with runtime.sessions.begin() as session:
            record_heartbeat(session, _name)
    except Exception as exc:
        with _lock:
            _last = None  # the next task tries again
        log.warning("cannot note this worker's heartbeat: %s", describe_error(exc))
        return False
    return True
