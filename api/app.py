"""The operator API as its own WSGI app (Procfile ``api``)."""

from __future__ import annotations

from flask import Flask

from api.views import bp
from core.config import Settings
from core.runtime import Runtime
from core.web import build_app
from ingest.providers import build_runtime
from tasks.embedded import broker_nudger


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    if runtime is None:
        runtime = build_runtime(settings)
        if runtime.settings.broker_url:
            # a replayed inbox row is worked at once instead of at the next sweep
            nudger = broker_nudger(runtime)
            runtime.nudge, runtime.queue = nudger.nudge, nudger
    return build_app(runtime, bp)
