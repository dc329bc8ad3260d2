"""The webhook receiver as a Flask app on a runtime (Procfile ``web``, wired in ``momo.app``).

What reaches the workers (the queue) is attached by the composition root; this module
builds the app, and holds the checks a web process makes before it takes a callback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Blueprint, Flask

from core.config import Settings
from core.providers import ProviderAdapter, listening
from core.runtime import Runtime
from core.web import build_app
from ingest.fast import install as install_fast_path
from ingest.spool import Spool
from ingest.views import bp

log = logging.getLogger(__name__)


def webhook_app(runtime: Runtime, *blueprints: Blueprint) -> Flask:
    """An app serving the webhooks (and any other ``blueprints``) on ``runtime``."""
    app = build_app(runtime, bp, *blueprints)
    install_fast_path(app)
    return app


def require_path_tokens(settings: Settings, providers: Mapping[str, ProviderAdapter]) -> None:
    """ConfigError, naming the variable, when a provider's path token is missing or weak
    (an optional provider without one is not listened to, and needs none)."""
    for adapter in providers.values():
        if listening(adapter, settings):
            adapter.require_path_token(settings)


def check_local_paths(settings: Settings) -> None:
    """ConfigError when the spool directory cannot be created, written and fsynced; then
    say which directories this web process uses."""
    Spool.for_settings(settings).check_writable()
    log_local_paths(settings)


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
