"""Webhooks and operator API in one app: what ``momo serve`` runs."""

from __future__ import annotations

from flask import Flask

from api.views import bp as api_bp
from core.config import Settings
from core.runtime import Runtime
from ingest.app import create_webhook_app


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    return create_webhook_app(api_bp, settings=settings, runtime=runtime)
