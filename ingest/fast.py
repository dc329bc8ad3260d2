"""The webhook's common case answered below the framework.

Nearly every request to the webhook is a provider posting a well-formed
notification to the right path with the right token. For those, building
Flask's request context, routing and response objects costs about as much
CPU as the rest of the work together (the insert included). ``FastAccept``
sits in front of the Flask app and answers exactly that case, using the same
checks, the same row, the same store (inbox, else spool) and the same
acknowledgement bytes as the Flask view in ``ingest.views``.

Everything else goes to Flask untouched: any other path or method, a wrong
token or kind (404 and the brake on failures), a refused address (403), a
missing or oversized Content-Length (413), a body framed both by
Content-Length and Transfer-Encoding (400), a body that is not the provider's
shape (400, kept as rejected), validation requests and unexpected errors. A
body already read is handed on intact, and nothing is stored before the
hand-over, so no request is ever stored twice or by neither path.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Response
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import EnvironHeaders

from core.metrics import FAST_ROUTE, ROUTE_KEY
from core.providers import INTERNAL_ERROR, NOT_ACCEPTED, ProviderAdapter
from core.runtime import Runtime
from core.web import NOSNIFF, framing_problem
from ingest.refusal import UNSTORABLE
from ingest.store import inbox_row
from ingest.views import (
    KEPT_HEADERS,
    CannotStore,
    acknowledgement,
    callback_code,
    client_allowed,
    rejection,
    store_callback,
    webhook_target,
)
from matcher.notifications import FailedAttempt, InvalidCallback, PaymentNotification

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PREFIX = "/webhooks/"


def _environ_key(header: str) -> str:
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


#: the kept request headers as WSGI names them
ENVIRON_HEADERS = tuple((header, _environ_key(header)) for header in KEPT_HEADERS)


class FastAccept:
    def __init__(self, app: Flask, inner: WSGIApplication) -> None:
        self.app = app
        self.inner = inner
        self.runtime: Runtime = app.extensions["momo"]
        self.max_bytes: int = app.config["MAX_CONTENT_LENGTH"]
        #: (provider, status) -> the provider's refusal body, made once
        self.refusals: dict[tuple[str, int], bytes] = {}

    def _refusal(self, adapter: ProviderAdapter, status: int, message: str) -> bytes:
        key = (adapter.name, status)
        body = self.refusals.get(key)
        if body is None:
            body = self.refusals[key] = self._json(adapter.refusal(status, message))
        return body

    def _json(self, doc: dict[str, Any]) -> bytes:
        response = cast(Response, self.app.json.response(doc))
        return response.get_data()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path.startswith(PREFIX):
            answer = self._accept(environ, path)
            if answer is not None:
                environ[ROUTE_KEY] = FAST_ROUTE  # answered here, below Flask's routing
                status, body = answer
                headers = [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    NOSNIFF,
                ]
                if status.startswith("503"):
                    headers.append(("Retry-After", "5"))
                start_response(status, headers)
                return [body]
        return self.inner(environ, start_response)

    def _accept(self, environ: WSGIEnvironment, path: str) -> tuple[str, bytes] | None:
        """The answer for the common case, or None (with the body restored) for Flask."""
        try:
            found = self._recognise(environ, path)
        except Exception:
            # Nothing is stored yet: Flask answers the request (its body handed back) as
            # it would have without this path, error handling and all.
            log.exception("webhook fast path failed before storing; Flask takes the request")
            return None
        if found is None:
            return None
        adapter, row = found
        try:
            unstorable_why = store_callback(self.app, row)
        except (SQLAlchemyError, CannotStore):
            log.exception(
                "could not store a %s %s callback; answering 503", row["provider"], row["kind"]
            )
            return "503 SERVICE UNAVAILABLE", self._refusal(adapter, 503, NOT_ACCEPTED)
        except Exception:
            # stored or not is unknown: never acknowledge, as Flask's error handler would not
            log.exception("unhandled error storing a %s callback", row["provider"])
            return "500 INTERNAL SERVER ERROR", self._refusal(adapter, 500, INTERNAL_ERROR)
        if unstorable_why is not None:
            # kept as rejected, not processed: answered as a malformed body is
            return "400 BAD REQUEST", self._json(rejection(adapter, unstorable_why, UNSTORABLE))
        self.runtime.nudge()
        return "200 OK", acknowledgement(self.app, adapter, row["kind"])

    def _recognise(
        self, environ: WSGIEnvironment, path: str
    ) -> tuple[ProviderAdapter, dict[str, Any]] | None:
        """The adapter and inbox row of a well-formed, authenticated notification, or None."""
        parts = path[len(PREFIX) :].split("/", 2)
        if len(parts) not in (2, 3) or not path.isascii():
            return None
        provider, token = parts[:2]
        settings = self.runtime.settings
        target = webhook_target(settings, provider, token, parts[2] if len(parts) == 3 else None)
        if target is None:
            return None
        adapter, kind = target
        provider = adapter.name  # the path may carry its URL name
        remote_addr: str | None = environ.get("REMOTE_ADDR")
        if not client_allowed(settings, provider, remote_addr):
            return None
        if framing_problem(environ) is not None:
            return None  # Flask refuses it (400) before anything reads the body
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 <= length <= self.max_bytes:
            return None
        body: bytes = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # whoever reads next reads the same bytes
        if len(body) != length:
            return None
        headers = cast(Mapping[str, str], EnvironHeaders(environ))
        if adapter.signature_problem(settings, headers, body) is not None:
            return None  # Flask refuses it (401), through the brake on failures
        try:
            parsed = adapter.parse(kind, body, self.runtime.shape_context)
        except InvalidCallback:
            return None
        if not isinstance(parsed, PaymentNotification | FailedAttempt):
            return None
        row = inbox_row(
            provider=provider,
            kind=kind,
            body=body,
            headers={name: environ[key] for name, key in ENVIRON_HEADERS if key in environ},
            client_addr=remote_addr,
            code=callback_code(parsed),
        )
        return adapter, row


def install(app: Flask) -> FastAccept:
    """Put the fast path in front of ``app``'s own WSGI callable (inside any ProxyFix)."""
    target: Any = app
    attribute = "wsgi_app"
    inner = app.wsgi_app
    # ProxyFix must still run first: it decides REMOTE_ADDR, which the allow-list reads
    while hasattr(inner, "app") and not isinstance(inner, FastAccept):
        target, attribute, inner = inner, "app", inner.app
    fast = FastAccept(app, inner)
    setattr(target, attribute, fast)
    app.extensions["momo_fast_accept"] = fast
    return fast
