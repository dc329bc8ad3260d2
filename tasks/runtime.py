"""The runtime of this process (a worker, beat), built on first use and again after a fork."""

from __future__ import annotations

import os
import threading

from core.runtime import Runtime
from ingest.providers import build_runtime

_process_runtime: Runtime | None = None
_process_pid: int | None = None
_lock = threading.Lock()


def process_runtime() -> Runtime:
    """The runtime of this process (worker, beat, CLI), built on first use after any fork."""
    global _process_runtime, _process_pid
    with _lock:
        if _process_runtime is None or _process_pid != os.getpid():
            _process_runtime = build_runtime()
            _process_pid = os.getpid()
        return _process_runtime


def set_process_runtime(runtime: Runtime | None) -> None:
    """Install a runtime for this process (tests, ``momo serve``)."""
    global _process_runtime, _process_pid
    with _lock:
        _process_runtime = runtime
        _process_pid = os.getpid() if runtime is not None else None
