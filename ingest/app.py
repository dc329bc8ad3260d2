"""The webhook receiver as its own WSGI app (Procfile ``web``)."""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Flask

from core.config import Settings
from core.runtime import Runtime
from core.web import build_app
from ingest.fast import install as install_fast_path
from ingest.providers import ADAPTERS, build_runtime, load_settings
from ingest.spool import Spool, attach_spool
from ingest.views import bp
from tasks.embedded import attach_queue

log = logging.getLogger(__name__)


def create_webhook_app(
    *blueprints: Blueprint, settings: Settings | None = None, runtime: Runtime | None = None
) -> Flask:
    """An app serving the webhooks (and any other ``blueprints``), with queue and spool.

    Fails at start-up (ConfigError), naming the variable, when a provider's path token is
    missing or the spool directory cannot be created, written and fsynced.
    """
    settings = runtime.settings if runtime else (settings or load_settings())
    for adapter in (runtime.providers if runtime else ADAPTERS).values():
        adapter.require_path_token(settings)
    if runtime is None:
        Spool.for_settings(settings).check_writable()
        log_local_paths(settings)
        runtime = build_runtime(settings)
        attach_queue(runtime)
        attach_spool(runtime)
    app = build_app(runtime, bp, *blueprints)
    install_fast_path(app)
    return app


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    return create_webhook_app(settings=settings, runtime=runtime)


def log_local_paths(settings: Settings) -> None:
    """Say which directories this web process uses, absolute.

    A relative MOMO_SPOOL_DIR or MOMO_INSTANCE_PATH depends on the working directory, which
    gunicorn, systemd and a shell each choose: the web could spool where `momo spool drain`
    and `momo check` never look. With a broker (production) a relative one is a warning.
    """
    used = [("MOMO_SPOOL_DIR", settings.spool_path), ("MOMO_INSTANCE_PATH", settings.instance_path)]
    for variable, path in used:
        if path.is_absolute():
            log.info("%s: %s", variable, path)
        elif settings.is_embedded:
            log.info("%s: %s (relative to %s)", variable, path.absolute(), os.getcwd())
        else:
            log.warning(
                "%s is the relative path %r: this process uses %s, as it started in %s. Every "
                "process sharing it (web, `momo spool drain`, `momo check`) must start there "
                "too; give an absolute path instead",
                variable,
                str(path),
                path.absolute(),
                os.getcwd(),
            )
