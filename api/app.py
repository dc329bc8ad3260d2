"""The operator API as a Flask app on a runtime (Procfile ``api``, wired in ``momo.app``)."""

from __future__ import annotations

from flask import Flask

from api.console import console
from api.views import bp
from core.runtime import Runtime
from core.web import build_app


def api_app(runtime: Runtime) -> Flask:
    """An app serving the operator API, and the console built on it, on ``runtime``."""
    return build_app(runtime, bp, console)
