"""The webhook receiver as its own WSGI app (Procfile ``web``)."""

from __future__ import annotations

from flask import Blueprint, Flask

from ingest.fast import install as install_fast_path
from ingest.spool import Spool, attach_spool
from ingest.views import bp
from momo.config import Settings, load_settings
from momo.runtime import Runtime, build_runtime
from momo.web import build_app
from tasks.embedded import attach_queue


def create_webhook_app(
    *blueprints: Blueprint, settings: Settings | None = None, runtime: Runtime | None = None
) -> Flask:
    """An app serving the webhooks (and any other ``blueprints``), with queue and spool.

    Fails at start-up (ConfigError), naming the variable, when MOMO_MPESA_PATH_TOKEN is
    missing or the spool directory cannot be created, written and fsynced.
    """
    settings = runtime.settings if runtime else (settings or load_settings())
    settings.require_mpesa_path_token()
    if runtime is None:
        Spool.for_settings(settings).check_writable()
        runtime = build_runtime(settings)
        attach_queue(runtime)
        attach_spool(runtime)
    app = build_app(runtime, bp, *blueprints)
    install_fast_path(app)
    return app


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    return create_webhook_app(settings=settings, runtime=runtime)
