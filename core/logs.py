"""One logging setup for every momo process: web, api, worker, beat and the CLI.

Lines are human-readable by default and JSON, one object a line, with
``MOMO_LOG_FORMAT=json``: time (UTC), level, logger, message, and the ids that tie a
payment's story together when they are known where the line is written (``request_id``,
``inbox_id``, ``task_id``, ``code``: the receipt). ``MOMO_LOG_LEVEL`` (default INFO) sets
the level. Every line, from every library, passes the webhook path mask on its way out.

Ids are bound with ``bound(...)`` for a stretch of work (a request, a task, an inbox row)
or given to one line as ``extra={"inbox_id": ...}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from core.config import ConfigError
from core.redact import MaskWebhookPaths, mask_webhook_paths

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: the ids a line may carry, in the order they are shown
IDS = ("request_id", "inbox_id", "task_id", "code")

_bound: ContextVar[Mapping[str, Any]] = ContextVar("momo_log_ids", default=MappingProxyType({}))


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Every line logged in this stretch (this thread or task) carries ``ids``; None
    values are left out."""
    token = bind_ids(**ids)
    try:
        yield
    finally:
        unbind_ids(token)


def bind_ids(**ids: Any) -> Token[Mapping[str, Any]]:
    """``bound`` for code that begins and ends a stretch in two places (signals): give the
    token back to ``unbind_ids``."""
    return _bound.set({**_bound.get(), **{k: v for k, v in ids.items() if v is not None}})


def add_ids(**ids: Any) -> None:
    """Add ``ids`` to the stretch in progress, until it ends: the enclosing ``bound`` (a
    request's, a task's) undoes them with its own. A request that learns its callback's
    receipt code so tells it on its later lines, its access line included."""
    bind_ids(**ids)  # no token kept: the enclosing stretch's reset goes back past this


def unbind_ids(token: Token[Mapping[str, Any]]) -> None:
    # bound in another context (ValueError): nothing of it is here to undo
    with suppress(ValueError):
        _bound.reset(token)


def current_ids() -> Mapping[str, Any]:
    return _bound.get()


class _AddIds(logging.Filter):
    """Copies the bound ids onto each record (a line's own ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in IDS if getattr(record, name, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the ids, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_ids(record),
        }
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        # the handler's MaskWebhookPaths filter has formatted and masked both already
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2026-12-02 06:10:01,123 INFO tasks.work: message [inbox_id=7 task_id=...]``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _ids(record)
        if not ids:
            return text
        first, newline, rest = text.partition("\n")
        shown = " ".join(f"{name}={value}" for name, value in ids.items())
        return f"{first} [{shown}]{newline}{rest}"


class _MomoHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler momo puts on the root logger (found again, and replaced, by type)."""


def log_settings(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(format, level)`` from MOMO_LOG_FORMAT and MOMO_LOG_LEVEL; ConfigError naming a
    bad one. Read before anything else, so that the settings' own warnings are logged in
    the chosen form."""
    env = os.environ if env is None else env
    fmt = env.get("MOMO_LOG_FORMAT", "").strip().lower() or "text"
    if fmt not in FORMATS:
        raise ConfigError(f"MOMO_LOG_FORMAT={fmt!r} is not one of: {', '.join(FORMATS)}")
    level = env.get("MOMO_LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in LEVELS:
        raise ConfigError(f"MOMO_LOG_LEVEL={level!r} is not one of: {', '.join(LEVELS)}")
    return fmt, level


def configure_logging(
    *,
    level: str | None = None,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Send every logger's lines to ``stream`` (stderr) in the configured form; ``level``
    overrides MOMO_LOG_LEVEL (``momo -v``). Safe to call again: it replaces its own
    handler and leaves others' alone."""
    fmt, configured = log_settings(env)
    handler = _MomoHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # on the handler, so lines from every logger (and library) pass through them
    handler.addFilter(_AddIds())
    handler.addFilter(MaskWebhookPaths())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _MomoHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or configured)
    if (level or configured) != "DEBUG":
        # their INFO lines are each migration step and each pooled connection
        for noisy in ("alembic", "sqlalchemy"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# --- the access log -----------------------------------------------------------------------

#: what an access line adds to the ids, as JSON fields
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client")
access_log = logging.getLogger("momo.access")
#: a caller's own X-Request-ID is kept when it is this short and plain
_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def request_id_from(environ: Mapping[str, Any]) -> str:
    """The caller's X-Request-ID (a proxy's, say) when it is plain, else a new one."""
    given = environ.get("HTTP_X_REQUEST_ID", "")
    if 0 < len(given) <= 64 and set(given) <= _REQUEST_ID_CHARS:
        return str(given)
    return uuid.uuid4().hex


class AccessLog:
    """WSGI middleware: one ``momo.access`` line per request (method, path with any
    webhook token masked and without its query string, which can hold a searched phone,
    status, milliseconds, client address), the request id bound while it is served and
    sent back as X-Request-ID. ``measure``, when given, is told each request's environ,
    status and seconds too (``core.metrics.observe_request``), timed by the same clock."""

    def __init__(
        self, app: Any, measure: Callable[[Mapping[str, Any], int, float], None] | None = None
    ) -> None:
        self.app = app
        self.measure = measure

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        request_id = request_id_from(environ)
        environ["momo.request_id"] = request_id
        status: list[str] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[:] = [code]
            headers.append(("X-Request-ID", request_id))
            return start_response(code, headers, exc_info)

        with bound(request_id=request_id):
            try:
                return self.app(environ, start)
            finally:
                if self.measure is not None:
                    code = int(status[0].split(" ", 1)[0]) if status else 500
                    self.measure(environ, code, time.perf_counter() - started)
                if access_log.isEnabledFor(logging.INFO):
                    path = mask_webhook_paths(environ.get("PATH_INFO", ""))
                    code = int(status[0].split(" ", 1)[0]) if status else 500
                    took = round((time.perf_counter() - started) * 1000, 2)
                    access_log.info(
                        "%s %s %s %.2fms",
                        environ.get("REQUEST_METHOD", ""),
                        path,
                        code,
                        took,
                        extra={
                            "method": environ.get("REQUEST_METHOD", ""),
                            "path": path,
                            "status": code,
                            "duration_ms": took,
                            "client": environ.get("REMOTE_ADDR"),
                            "request_id": request_id,
                        },
                    )
