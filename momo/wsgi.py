"""WSGI entry points (see Procfile): ``momo.wsgi:web()``, ``api()``, ``app()`` for gunicorn;
granian calls the same functions with ``--factory``: ``granian --interface wsgi --factory
momo.wsgi:web``.

A setting that stops momo from starting (ConfigError) stops the server with the one-line
message, without a traceback, instead of booting workers again and again: gunicorn is told
the application cannot load; under granian the worker exits with the message, and granian
stops (a worker that dies while starting ends granian, respawn or not).
"""

from __future__ import annotations

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
        # granian loads the factory in a multiprocessing worker: SystemExit with a text is
        # printed as that one line and ends the worker with status 1
        raise SystemExit(message)
    try:
        from gunicorn.errors import AppImportError
    except ImportError:  # another WSGI server: its own error report
        raise SystemExit(message) from None
    raise AppImportError(message)


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
