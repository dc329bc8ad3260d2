"""WSGI entry points for gunicorn (see Procfile): ``momo.wsgi:web()``, ``api()``, ``app()``.

A setting that stops momo from starting (ConfigError) is reported to gunicorn as an
application that cannot load: it prints the one-line message, without a traceback,
and stops instead of booting workers again and again.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from core.config import ConfigError


def _start(create_app: Callable[[], Flask]) -> Flask:
    try:
        return create_app()
    except ConfigError as exc:
        try:
            from gunicorn.errors import AppImportError
        except ImportError:  # another WSGI server: its own error report
            raise
        raise AppImportError(f"momo cannot start: {exc}") from None


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
