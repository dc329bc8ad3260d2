"""The webhook edge: authenticate, size-limit, persist, acknowledge, nudge.

A callback is committed to the inbox before the provider is told it was
taken; if the database cannot take it, the provider gets 503, never a false
acknowledgement. Parsing here only decides whether the body is the
provider's shape; recording the payment is the worker's job.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any, cast

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import Headers

from core import metrics
from core.config import Settings
from core.logs import add_ids
from core.providers import (
    FORBIDDEN,
    NOT_ACCEPTED,
    TOO_MANY,
    ProviderAdapter,
    RoutesItsPaths,
    adapter_at,
    rejected,
)
from core.runtime import Runtime
from ingest.limits import Limiter, failure_limiter
from ingest.providers import ADAPTERS, adapter_for
from ingest.refusal import UNSTORABLE, RowRefused, refused_row, unstorable
from ingest.spool import SpoolError
from ingest.store import InboxWriter, inbox_row
from matcher.matching import match_payment
from matcher.models import INBOX_PROCESSED, INBOX_REJECTED, InboxItem
from matcher.notifications import (
    Callback,
    FailedAttempt,
    InvalidCallback,
    LookupResult,
    Notice,
    PaymentNotification,
    ReversalResult,
    ValidationRequest,
)

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)


@bp.record_once
def _limiter(state: Any) -> None:
    if "momo_limiter" not in state.app.extensions:
        rt: Runtime = state.app.extensions["momo"]
        limiter = failure_limiter(rt.settings)
        rt.helpers.append(limiter)  # closed with the runtime
        state.app.extensions["momo_limiter"] = limiter


#: request headers worth keeping beside the raw body, for tracing a callback later
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Real-IP")


def runtime() -> Runtime:
    return current_app.extensions["momo"]


def webhook_target(
    settings: Settings, provider: str, token: str, kind: str | None
) -> tuple[ProviderAdapter, str] | None:
    """The adapter that takes a callback posted to ``/webhooks/<provider>/<token>/<kind>``
    (``kind`` None: ``/webhooks/<provider>/<token>``) and the kind it is stored as; None
    when the path is no callback URL momo listens on. The Flask view and the fast path
    both ask this, so they agree on every path. ``provider`` is the path's segment: the
    provider's name or its URL name."""
    adapter = adapter_at(ADAPTERS, provider)
    if adapter is None or not token:
        return None
    if isinstance(adapter, RoutesItsPaths):
        return adapter.route(settings, token, kind)
    expected = adapter.path_token(settings)
    if (
        kind is None
        or expected is None
        or not hmac.compare_digest(token.encode(), expected.encode())
        or kind not in adapter.kinds
    ):
        return None
    return adapter, kind


def client_allowed(settings: Settings, provider: str, remote_addr: str | None) -> bool:
    adapter = adapter_at(ADAPTERS, provider)
    allowed = adapter.allowed_networks(settings) if adapter is not None else ()
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    # A dual-stack socket reports IPv4 callers as ::ffff:a.b.c.d
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)


def _unavailable(adapter: ProviderAdapter) -> Response:
    response = jsonify(adapter.refusal(503, NOT_ACCEPTED))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


def _too_many(provider: str) -> tuple[Response, int]:
    response = jsonify(adapter_for(provider).refusal(429, TOO_MANY))
    response.headers["Retry-After"] = "60"
    return response, 429


def writer_for(app: Flask) -> InboxWriter:
    writer: InboxWriter | None = app.extensions.get("momo_inbox_writer")
    if writer is None:
        rt: Runtime = app.extensions["momo"]
        writer = InboxWriter.for_database(
            rt.engine,
            timeout=rt.settings.db_write_timeout_seconds,
            connections=rt.settings.db_write_connections,
            batch=rt.settings.db_write_batch,
        )
        rt.helpers.append(writer)
        app.extensions["momo_inbox_writer"] = writer
    return writer


def store_callback(app: Flask, row: dict[str, Any]) -> str | None:
    """Commit the callback to the inbox or, while the database is unreachable, to the spool.

    A row the database refuses for its content is stored in its safe form instead, as
    rejected; then the answer is why, and the caller answers as for a malformed body
    (the callback is kept, but it is not processed). None: stored as sent.
    Raises only when neither the inbox nor the spool can take it: then the provider
    must not be acknowledged.

    Both the Flask view and the fast path store here, so each callback is counted here
    once, by its outcome (``momo_callbacks_total``), and the request's later lines (its
    access line) carry its receipt code, which the worker's line for it carries too.
    """
    add_ids(code=row.get("code"))
    try:
        why, spooled = _store_callback(app, row)
    except Exception:
        metrics.count_callback(row["provider"], row["kind"], metrics.FAILED)
        raise
    if why is not None or row.get("status") == INBOX_REJECTED:
        outcome = metrics.REJECTED
    elif row.get("status") == INBOX_PROCESSED:
        outcome = metrics.VALIDATION
    else:
        outcome = metrics.SPOOLED if spooled else metrics.ACCEPTED
    metrics.count_callback(row["provider"], row["kind"], outcome)
    return why


def _store_callback(app: Flask, row: dict[str, Any]) -> tuple[str | None, bool]:
    """``store_callback``'s work: why the row was kept as rejected (or None), and whether
    it went to the spool."""
    rt: Runtime = app.extensions["momo"]
    why = unstorable(row)  # the usual case: known before the INSERT
    if why is not None:
        row = refused_row(row, why)
    try:
        try:
            writer_for(app).store(row)
        except RowRefused as exc:
            if why is not None:
                raise
            why = exc.detail
            row = refused_row(row, why)
            writer_for(app).store(row)
    except RowRefused as exc:
        if rt.spool is None:
            raise CannotStore(str(exc)) from exc
        # kept in the spool all the same: its drainer quarantines what no database takes
        log.error("the database refused even the safe form of a callback (%s); spooling it", exc)
    except SQLAlchemyError as exc:
        if rt.spool is None:
            raise
        log.error("inbox write failed (%s); spooling the callback", type(exc).__name__)
    else:
        _log_refused(row, why)
        return why, False
    try:
        rt.spool.append(InboxItem(**row))
    except (OSError, SpoolError) as exc:
        log.exception("neither the database nor the spool could take a callback")
        raise CannotStore(str(exc)) from exc
    _log_refused(row, why)
    return why, True


def _log_refused(row: dict[str, Any], why: str | None) -> None:
    if why is not None:
        provider, kind = row["provider"], row["kind"]
        log.warning("%s %s callback kept as rejected (%s): %s", provider, kind, UNSTORABLE, why)


def rejection(adapter: ProviderAdapter, message: str, reason: str) -> dict[str, Any]:
    """The answer to a callback momo keeps but will not process (malformed, unstorable)."""
    return adapter.refusal(400, rejected(message), reason=reason)


def _store(row: dict[str, Any]) -> str | None:
    return store_callback(current_app._get_current_object(), row)  # type: ignore[attr-defined]


def kept_headers(headers: Mapping[str, str] | Headers) -> dict[str, str]:
    return {h: headers[h] for h in KEPT_HEADERS if h in headers}


def _read_body() -> bytes:
    """The whole body, or 413 when it is over the limit (never a truncated body)."""
    if request.content_length is not None:
        return request.get_data(cache=False)  # over MAX_CONTENT_LENGTH raises 413 unread
    # No length (chunked): Werkzeug's limited stream would stop quietly at the limit, so
    # read one byte past it from the server's own (de-chunked) stream to know.
    limit: int = current_app.config["MAX_CONTENT_LENGTH"]
    stream = request.environ["wsgi.input"]
    parts, size = [], 0
    while size <= limit:
        part = stream.read(limit + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        abort(413)
    return b"".join(parts)


class CannotStore(Exception):
    """Neither the inbox nor the spool took the callback."""


# merge_slashes off: an empty segment is no callback URL (404), not a redirect to another
@bp.route("/webhooks/<provider>/<token>/<path:kind>", methods=["POST", "PUT"], merge_slashes=False)
@bp.route("/webhooks/<provider>/<token>", methods=["POST", "PUT"], merge_slashes=False)
def receive(provider: str, token: str, kind: str | None = None) -> Response | tuple[Any, int]:
    settings = runtime().settings
    limiter: Limiter = current_app.extensions["momo_limiter"]
    address = request.remote_addr or "-"
    # Unknown provider, unknown kind and wrong token all look the same: 404, nothing stored.
    target = webhook_target(settings, provider, token, kind)
    if target is None:
        if limiter.fail(address):
            return _too_many(provider)
        abort(404)
    adapter, kind = target
    provider = adapter.name  # the path may carry its URL name
    if request.method not in adapter.methods:
        abort(405)
    if not client_allowed(settings, provider, request.remote_addr):
        if limiter.fail(address):
            return _too_many(provider)
        log.warning("%s callback from %s refused: not in the allow-list", provider, address)
        return jsonify(adapter.refusal(403, FORBIDDEN)), 403

    body = _read_body()
    unsigned = adapter.signature_problem(settings, cast(Mapping[str, str], request.headers), body)
    if unsigned is not None:
        if limiter.fail(address):
            return _too_many(provider)
        log.warning("%s callback from %s refused: %s", provider, address, unsigned)
        return jsonify(adapter.refusal(401, unsigned)), 401
    item = inbox_row(
        provider=provider,
        kind=kind,
        body=body,
        headers=kept_headers(request.headers),
        client_addr=request.remote_addr,
    )
    rt = runtime()
    try:
        parsed = adapter.parse(kind, body, rt.shape_context)
    except InvalidCallback as exc:
        item.update(status=INBOX_REJECTED, reason=exc.reason, detail=exc.message)
        try:
            _store(item)
        except (SQLAlchemyError, CannotStore):
            log.exception("could not keep a rejected %s callback", provider)
            return _unavailable(adapter)
        log.warning("%s %s callback rejected: %s", provider, kind, exc.message)
        return jsonify(rejection(adapter, exc.message, exc.reason)), 400

    if isinstance(parsed, ValidationRequest):
        return _validate(adapter, item, parsed)
    if isinstance(parsed, Notice):
        # nothing to record: answered as every callback is, kept nowhere
        log.info("%s %s notice acknowledged, not kept: %s", provider, kind, parsed.detail)
        return Response(acknowledgement(current_app, adapter, kind), mimetype="application/json")

    item["code"] = callback_code(parsed)
    try:
        unstorable_why = _store(item)
    except (SQLAlchemyError, CannotStore):
        log.exception("could not store a %s %s callback; answering 503", provider, kind)
        return _unavailable(adapter)
    if unstorable_why is not None:
        return jsonify(rejection(adapter, unstorable_why, UNSTORABLE)), 400
    rt.nudge()
    return Response(acknowledgement(current_app, adapter, kind), mimetype="application/json")


def callback_code(parsed: Callback) -> str | None:
    """What the inbox row is looked up by: the receipt code, or the attempt's reference."""
    if isinstance(parsed, PaymentNotification):
        return parsed.code
    if isinstance(parsed, FailedAttempt):
        return parsed.reference[:64]
    if isinstance(parsed, LookupResult) and parsed.payment is not None:
        return parsed.payment.code
    if isinstance(parsed, ReversalResult) and parsed.original_code:
        return parsed.original_code
    return None


def acknowledgement(app: Flask, adapter: ProviderAdapter, kind: str) -> bytes:
    """The provider's ack for ``kind`` as the app's JSON, made once per process."""
    cache: dict[tuple[str, str], bytes] = app.extensions.setdefault("momo_acks", {})
    key = (adapter.name, kind)
    body = cache.get(key)
    if body is None:
        response = cast(Response, app.json.response(adapter.acknowledge(kind)))
        body = cache[key] = response.get_data()
    return body


def _validate(adapter: ProviderAdapter, item: dict[str, Any], req: ValidationRequest) -> Response:
    """Accept, or (when so configured) refuse a payment to an account nobody has."""
    rt = runtime()
    accepted = True
    if adapter.rejects_unknown_accounts(rt.settings):
        # the shape check left the payer's number unclassified; matching needs it
        full = adapter.parse(item["kind"], item["body"], rt.parse_context)
        assert isinstance(full, ValidationRequest)
        req = full
        try:
            with rt.sessions.begin() as session:
                match = match_payment(
                    session,
                    account_reference=req.account_reference,
                    msisdn=req.msisdn,
                    region=rt.settings.default_region,
                )
        except SQLAlchemyError:
            log.exception("cannot look up the account of a validation request; answering 503")
            return _unavailable(adapter)
        accepted = match.matched or bool(match.candidates)
    item.update(
        status=INBOX_PROCESSED,
        code=req.code or None,
        reason="validation_accepted" if accepted else "validation_rejected",
    )
    try:
        _store(item)
    except (SQLAlchemyError, CannotStore):
        log.exception("could not store a validation request; answering 503")
        return _unavailable(adapter)
    return jsonify(adapter.validation_reply(accepted))
