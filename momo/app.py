"""Webhooks and operator API in one app: what ``momo serve`` runs."""

from __future__ import annotations

from flask import Flask

from api.views import bp as api_bp
from ingest.app import create_webhook_app
from momo.config import Settings
from momo.runtime import Runtime


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    return create_webhook_app(api_bp, settings=settings, runtime=runtime)
