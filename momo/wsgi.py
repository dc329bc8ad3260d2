"""WSGI entry points for gunicorn (see Procfile): ``momo.wsgi:web()``, ``api()``, ``app()``."""

from __future__ import annotations

from flask import Flask


def web() -> Flask:
    """Webhook receiver only."""
    from ingest.app import create_app

    return create_app()


def api() -> Flask:
    """Operator API only."""
    from api.app import create_app

    return create_app()


def app() -> Flask:
    """Both, as ``momo serve`` runs them."""
    from momo.app import create_app

    return create_app()
