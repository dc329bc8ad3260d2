"""The Flask apps of momo's processes, wired: webhooks, operator API, or both in one.

``momo serve`` and ``momo.wsgi:app()`` run both; Procfile's ``web`` and ``api`` one each.
Here an app's runtime gets its way of reaching the workers (the broker, or the embedded
worker) and its spool: ``ingest`` and ``api`` build apps on a runtime and know nothing of
``tasks``.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from api.app import api_app
from api.console import console
from api.views import bp as api_bp
from core.config import Settings
from core.logs import AccessLog
from core.metrics import instrument, observe_request
from core.runtime import Runtime
from core.runtime import build_runtime as build_core_runtime
from ingest.app import check_local_paths, require_path_tokens, webhook_app
from ingest.providers import ADAPTERS, build_runtime, load_settings
from ingest.spool import attach_spool
from tasks.embedded import attach_queue, broker_nudger


def logged(app: Flask) -> Flask:
    """``app`` with the access log outermost, so the fast webhook path is logged too (and
    measured by its clock, and answering ``/metrics``: ``core.metrics``)."""
    instrument(app)
    app.wsgi_app = AccessLog(app.wsgi_app, measure=observe_request)  # type: ignore[method-assign]
    return app


def create_webhook_app(
    *blueprints: Blueprint, settings: Settings | None = None, runtime: Runtime | None = None
) -> Flask:
    """An app serving the webhooks (and any other ``blueprints``), with queue and spool.

    Fails at start-up (ConfigError), naming the variable, when a provider's path token is
    missing or the spool directory cannot be created, written and fsynced.
    """
    settings = runtime.settings if runtime else (settings or load_settings())
    require_path_tokens(settings, runtime.providers if runtime else ADAPTERS)
    if runtime is None:
        check_local_paths(settings)
        runtime = build_runtime(settings)
        attach_queue(runtime)
        attach_spool(runtime)
    return logged(webhook_app(runtime, *blueprints))


def create_web_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """The webhook receiver alone (Procfile ``web``)."""
    return create_webhook_app(settings=settings, runtime=runtime)


def create_api_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """The operator API alone (Procfile ``api``).

    Its engine does not ping a pooled connection before each use: a request finds one the
    database dropped at its first statement, the token check, and takes a new connection
    (``api.auth``), so no request pays a round trip for the ping.
    """
    if runtime is None:
        runtime = build_core_runtime(
            settings or load_settings(), providers=ADAPTERS, pool_pre_ping=False
        )
        if runtime.settings.broker_url:
            # a replayed inbox row is worked at once instead of at the next sweep
            nudger = broker_nudger(runtime)
            runtime.nudge, runtime.queue = nudger.nudge, nudger
    return logged(api_app(runtime))


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Webhooks, operator API and console in one app: what ``momo serve`` runs."""
    return create_webhook_app(api_bp, console, settings=settings, runtime=runtime)
