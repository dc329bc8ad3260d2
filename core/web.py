"""What every momo Flask surface shares: size limit, proxy handling, health, readiness,
error bodies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kombu
import redis
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from core.providers import INTERNAL_ERROR, UNAVAILABLE, ProviderAdapter, adapter_for_path
from core.redact import mask_logged_paths, mask_webhook_paths
from core.runtime import Runtime
from matcher.db import NoAnswer, answer_within, describe_error, refuses_writes, utcnow
from matcher.heartbeats import last_heartbeat

log = logging.getLogger(__name__)

#: no provider callback or operator request is anywhere near this
MAX_BODY_BYTES = 64 * 1024

common = Blueprint("common", __name__)

#: on every answer, webhooks included: a browser never reads a body as another type
NOSNIFF = ("X-Content-Type-Options", "nosniff")


def dropped_connection(exc: BaseException) -> bool:
    """``exc`` says a pooled connection was found closed (the database restarted, or a
    failover ended it); SQLAlchemy has then discarded the pool's older connections, so
    asking again, on a new one, is the answer. A database that did not answer in time
    is not dropped: asking it again would only wait as long again."""
    return (
        isinstance(exc, DBAPIError)
        and exc.connection_invalidated
        and not isinstance(exc.orig, NoAnswer)
    )


@common.get("/healthz")
def healthz() -> tuple[Any, int]:
    """200 when the database answers and takes writes, 503 otherwise (load balancers take
    the node out). With a spool, what waits in it to drain is reported too.

    Answering means within the webhook's write deadline: a node whose database is that
    slow spools its callbacks, and a load balancer waits no longer than that either.
    """
    runtime: Runtime = current_app.extensions["momo"]
    extra = {"spool": runtime.spool.backlog()} if runtime.spool is not None else {}
    database = _ask_database(runtime)
    if database.problem == "read_only":
        body: dict[str, Any] = {"status": "unavailable", "database": "read_only"}
        return jsonify({**body, "detail": database.detail, **extra}), 503
    if database.problem is not None:
        return jsonify({"status": "unavailable", "database": database.problem, **extra}), 503
    return jsonify({"status": "ok", "database": "ok", **extra}), 200


@common.get("/readyz")
def readyz() -> tuple[Any, int]:
    """200 when payments would be worked end to end now, 503 naming each part that fails:

    - ``database``: answers and takes writes within MOMO_DB_WRITE_TIMEOUT_SECONDS, as
      ``/healthz`` asks (else the error's class, or ``read_only``);
    - ``broker``: a Redis broker answers PING, an AMQP one takes a connection, within the
      same deadline (else the error's class); ``embedded`` without a broker, where
      ``momo serve`` works the queue itself;
    - ``worker``: some worker finished a task within MOMO_WORKER_SEEN_WITHIN_SECONDS.
      Each worker notes when it does (``worker_heartbeats``, at most every half sweep
      interval), and beat sends the sweeper every MOMO_SWEEP_INTERVAL_SECONDS, so an
      idle stack is heard of too: a recent note says that beat, the broker, a worker and
      the database all work. Else ``not seen since <UTC time>``, or ``not seen yet``.

    ``/healthz`` stays the load balancer's question: a web node whose workers are down
    still stores and acknowledges callbacks (the workers catch up), so it must stay in.
    Ask this one when a deploy is done, and from monitoring.
    """
    runtime: Runtime = current_app.extensions["momo"]
    settings = runtime.settings
    database = _ask_database(runtime, also=last_heartbeat)
    body: dict[str, Any] = {"status": "ready", "database": database.problem or "ok"}
    if database.detail:
        body["detail"] = database.detail
    body["broker"] = broker_state(settings.broker_url, float(settings.db_write_timeout_seconds))
    if database.problem is not None and database.problem != "read_only":
        body["worker"] = "unknown: the database did not answer"
    elif database.also_problem is not None:
        body["worker"] = f"unknown: {database.also_problem}"
    else:
        body["worker"] = worker_state(database.also, settings.worker_seen_within_seconds)
    ready = all(body[part] in ("ok", "embedded") for part in ("database", "broker", "worker"))
    body["status"] = "ready" if ready else "not_ready"
    return jsonify(body), 200 if ready else 503


@dataclass
class DatabaseAnswer:
    #: None when the database answers and takes writes; else the error's class or
    #: ``read_only`` (with ``detail``)
    problem: str | None = None
    detail: str | None = None
    #: what ``also`` found, asked on the same connection; or its error's class
    also: Any = None
    also_problem: str | None = None


def _ask_database(
    runtime: Runtime, also: Callable[[Connection], Any] | None = None
) -> DatabaseAnswer:
    """Whether the database answers and takes writes within the write deadline (a pooled
    connection found dropped is replaced once), and then what ``also`` finds on it."""
    answer = DatabaseAnswer()
    for attempt in (1, 2):
        try:
            with (
                answer_within(runtime.settings.db_write_timeout_seconds),
                runtime.engine.connect() as connection,
            ):
                connection.execute(text("SELECT 1"))
                read_only = refuses_writes(connection)
                if also is not None:
                    try:
                        answer.also = also(connection)
                    except SQLAlchemyError as exc:
                        answer.also_problem = type(exc).__name__
            break
        except SQLAlchemyError as exc:
            if attempt == 1 and dropped_connection(exc):
                continue
            answer.problem = type(exc).__name__
            return answer
    if read_only is not None:
        answer.problem, answer.detail = "read_only", read_only
    return answer


def broker_state(url: str | None, timeout: float) -> str:
    """``ok`` when the broker at ``url`` answers within ``timeout`` seconds, else the
    error's class; ``embedded`` without one."""
    if not url:
        return "embedded"
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            with kombu.Connection(url, connect_timeout=timeout) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as exc:  # whatever it is, the broker is not usable
        return type(exc).__name__
    return "ok"


def worker_state(seen: datetime | None, within_seconds: int) -> str:
    """``ok`` when a worker was last seen (``seen``) within ``within_seconds``."""
    if seen is None:
        return "not seen yet"
    if (utcnow() - seen).total_seconds() > within_seconds:
        return f"not seen since {seen.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return "ok"


def framing_problem(environ: Mapping[str, Any]) -> str | None:
    """Why the request's body length is ambiguous, or None.

    A body is framed by Content-Length or by chunked Transfer-Encoding, never both: a proxy
    in front may read the one while momo reads the other and store a part of the body, or
    take what follows it for another request. Any other transfer coding is refused too.
    """
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    if coding is None:
        return None
    if environ.get("CONTENT_LENGTH") is not None:
        return (
            "The request has both Content-Length and Transfer-Encoding, so its length is "
            "ambiguous; send the body with only one of them."
        )
    if coding.strip().lower() != "chunked":
        return (
            f"Transfer-Encoding {coding.strip()[:40]!r} is not supported; send the body "
            "plainly with Content-Length, or chunked."
        )
    return None


@common.before_app_request
def _refuse_ambiguous_framing() -> None:
    # before anything reads the body; the server closes the connection after the answer
    detail = framing_problem(request.environ)
    if detail is not None:
        abort(400, description=detail)


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem+json response with momo's stable ``code``."""
    body = {"type": "about:blank", "title": title, "status": status, "code": code, "detail": detail}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def _answering_adapter() -> ProviderAdapter:
    """The provider whose error shape answers this (non-API) request."""
    runtime: Runtime = current_app.extensions["momo"]
    return adapter_for_path(runtime.providers, request.path)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_")
    detail = exc.description or exc.name
    if status == 413:
        detail = f"The body is larger than {MAX_BODY_BYTES // 1024} KiB."
    if request.path.startswith("/api/"):
        return problem(status, code, exc.name, detail)
    response = jsonify(_answering_adapter().refusal(status, exc.name, detail=detail))
    response.status_code = status
    return response


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, SQLAlchemyError):
        # One line, no traceback: the driver's message below the first line quotes the
        # row's values (PostgreSQL's DETAIL), and those are payers' phones and names.
        log.error(
            "database error on %s %s: %s",
            request.method,
            mask_webhook_paths(request.path),
            describe_error(exc),
        )
        if request.path.startswith("/api/"):
            return problem(
                503,
                "database_unavailable",
                "Service Unavailable",
                "The database did not answer; nothing was changed. Try again shortly.",
            )
        response = jsonify(_answering_adapter().refusal(503, UNAVAILABLE))
        response.status_code = 503
        return response
    log.exception("unhandled error on %s %s", request.method, mask_webhook_paths(request.path))
    if request.path.startswith("/api/"):
        return problem(
            500, "internal_error", "Internal Server Error", "An unexpected error occurred."
        )
    response = jsonify(_answering_adapter().refusal(500, INTERNAL_ERROR))
    response.status_code = 500
    return response


def _security_headers(response: Response) -> Response:
    """nosniff everywhere; no-store on every operator answer (tokens, names, phones and
    balances, errors too), so no browser or proxy keeps a copy."""
    response.headers[NOSNIFF[0]] = NOSNIFF[1]
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def build_app(runtime: Runtime, *blueprints: Blueprint) -> Flask:
    mask_logged_paths()
    app = Flask("momo")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["momo"] = runtime
    hops = runtime.settings.trusted_proxy_hops
    if hops:
        # Read the client address from X-Forwarded-For, trusting exactly `hops` proxies.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.register_blueprint(common)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_security_headers)
    return app
