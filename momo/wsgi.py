"""WSGI entry points (see Procfile): ``momo.wsgi:web()``, ``api()``, ``app()`` for gunicorn;
granian calls the same functions with ``--factory``: ``granian --interface wsgi --factory
momo.wsgi:web``.

A setting that stops momo from starting (ConfigError) stops the server with the one-line
message, without a traceback, instead of booting workers again and again: gunicorn is told
the application cannot load; under granian the worker asks granian's main process to stop
and exits with the message. granian's own crash-loop guard cannot be relied on for that: with
``--respawn-failed-workers`` and more than one worker it forgets one worker's respawn when it
respawns another, and a worker slower than 5.5 s to fail counts as no loop at all, so workers
failing in turn were respawned for ever.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from flask import Flask

from core.config import ConfigError


def _start(create_app: Callable[[], Flask]) -> Flask:
    from core.logs import configure_logging

    try:
        configure_logging()
        return create_app()
    except ConfigError as exc:
        message = f"momo cannot start: {exc}"
    if "granian" in sys.modules:
        _stop_granian()
        # SystemExit with a text is printed as that one line and ends the worker with status 1
        raise SystemExit(message)
    try:
        from gunicorn.errors import AppImportError
    except ImportError:  # another WSGI server: its own error report
        raise SystemExit(message) from None
    raise AppImportError(message)


def _stop_granian() -> None:
    """Ask granian's main process to stop: it loads the factory in a multiprocessing worker,
    whose parent is that main process (a worker run as a thread has none, and is left alone).
    granian then exits 0 or 1, depending on whether it saw the worker exit before the signal."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        os.kill(parent.pid, signal.SIGTERM)


def web() -> Flask:
    """Webhook receiver only."""
    from momo.app import create_web_app

    return _start(create_web_app)


def api() -> Flask:
    """Operator API only."""
    from momo.app import create_api_app

    return _start(create_api_app)


def app() -> Flask:
    """Both, as ``momo serve`` runs them."""
    from momo.app import create_app

    return _start(create_app)
