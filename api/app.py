"""The operator API as its own WSGI app (Procfile ``api``)."""

from __future__ import annotations

from flask import Flask

from api.views import bp
from momo.config import Settings, load_settings
from momo.runtime import Runtime, build_runtime
from momo.web import build_app


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    runtime = runtime or build_runtime(settings or load_settings())
    return build_app(runtime, bp)
