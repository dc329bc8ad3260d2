"""What every fake provider shares: a loopback HTTP server, a log, tokens, faults, callbacks.

A fake is a real HTTP server on 127.0.0.1 (a free port) served from daemon threads. It
records every request it gets, keeps its transactions in memory, answers its queries
from them, and posts callbacks from background threads. Tests steer it through the
controls below; nothing here is a mock of momo's code.

Endpoint names are the same for every fake: ``TOKEN``, ``PAY`` (the request that asks
a customer to pay) and ``QUERY`` (its status).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Final, Self
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

TOKEN: Final = "token"
PAY: Final = "pay"
QUERY: Final = "query"

# When an outcome's callback is posted: at once (after ``delay`` seconds) from a
# background thread, twice in a row, never, or only when the test calls post_callback().
AT_ONCE: Final = "at_once"
TWICE: Final = "twice"
NEVER: Final = "never"
HELD: Final = "held"


@dataclass(frozen=True)
class Outcome:
    """How a money request ends. Each fake subclasses it with its own result fields."""

    callback: str = AT_ONCE
    delay: float = 0.0


@dataclass
class Reply:
    """An answer: ``body`` a dict or list (sent as JSON), bytes (sent as they are) or None."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: run once the answer is written (a hanging answer runs them before it hangs)
    after: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    endpoint: str  # TOKEN, PAY, QUERY, or "" for a path the fake does not serve
    method: str
    path: str
    query: dict[str, str]
    headers: CaseInsensitiveDict[str]
    body: bytes
    json: Any  # the body parsed (fractions as Decimal), or None if it is not JSON


@dataclass
class Delivery:
    """One callback the fake posted, and what momo answered."""

    method: str
    url: str
    body: bytes
    status: int | None = None  # None: momo could not be reached (see ``error``)
    answer: bytes = b""
    error: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal)


@dataclass
class Transaction:
    """A money request the provider took; ``outcome`` None means still pending."""

    id: str
    request: Recorded
    callback_url: str | None
    outcome: Outcome | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fault:
    kind: str  # "fail" | "refuse" (before the work) | "taken" | "hang" | "malformed" (after)
    reply: Reply | None = None
    seconds: float = 0.0
    shape: str = ""


_BEFORE: Final = frozenset({"fail", "refuse"})
_NOT_JSON: Final = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
_DEC = re.compile(r'"\\u0000dec:([0-9.eE+-]+)\\u0000"')


def to_json(obj: Any) -> bytes:
    """JSON bytes in which a Decimal is written as a JSON number, digit for digit."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"\x00dec:{value}\x00"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(obj), separators=(",", ":"))
    return _DEC.sub(r"\1", text).encode()


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except ValueError:
        return None


def _drop(doc: Any, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(doc, dict):
        doc.pop(last, None)


class FakeProvider:
    """A provider's outbound API on loopback. Use as a context manager or start()/close()."""

    #: (method, path pattern, endpoint name, handler method name); set by each fake
    ROUTES: ClassVar[tuple[tuple[str, str, str, str], ...]] = ()
    #: canned refusals for refuse_next(), by name
    REFUSALS: ClassVar[dict[str, tuple[int, Any]]] = {}
    #: what malformed_next(shape="missing_fields") strips from a good answer, per endpoint
    ESSENTIAL: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, token_lifetime: float) -> None:
        #: seconds a new token lives; set it small, or call expire_tokens(), to expire one
        self.token_lifetime = token_lifetime
        #: issuing a token revokes every earlier one
        self.revoke_previous_tokens = False
        #: used when no outcome was queued with will(); None leaves requests pending
        self.default_outcome: Outcome | None = None
        #: seconds the fake waits for momo to answer a callback
        self.callback_timeout = 10.0
        self.requests: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        #: exceptions raised inside the fake itself (answered 500); a test may assert none
        self.errors: list[BaseException] = []
        self.transactions: dict[str, Transaction] = {}
        self._tokens: dict[str, float] = {}
        self._outcomes: deque[Outcome] = deque()
        self._faults: dict[str, deque[_Fault]] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._routes = [(m, re.compile(p), e, getattr(self, h)) for m, p, e, h in self.ROUTES]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- life ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; hanging answers and waiting callbacks are released at once."""
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- controls -----------------------------------------------------------------

    def will(self, *outcomes: Outcome) -> None:
        """The next money requests end with these outcomes, in order."""
        with self._lock:
            self._outcomes.extend(outcomes)

    def decide(self, transaction_id: str, outcome: Outcome) -> None:
        """End a pending transaction now; its callback follows the outcome's timing."""
        with self._lock:
            txn = self.transactions[transaction_id]
            if txn.outcome is not None:
                raise ValueError(f"transaction {transaction_id} is already decided")
            txn.outcome = outcome
            self._changed.notify_all()
        self._schedule_callback(txn)

    def post_callback(self, transaction_id: str) -> Delivery:
        """Post the decided transaction's callback now, in this thread (again if need be)."""
        txn = self.transactions[transaction_id]
        if txn.outcome is None:
            raise ValueError(f"transaction {transaction_id} is still pending")
        method, url, body = self._callback_for(txn)
        return self._deliver(method, url, body)

    def fail_next(
        self, endpoint: str, times: int = 1, status: int = 500, *, taken: bool = False
    ) -> None:
        """Answer the next ``times`` calls of ``endpoint`` with the provider's 5xx body.

        With ``taken`` the provider did the work first (a money request exists and will
        end as queued) and only the answer is an error.
        """
        for _ in range(times):
            self._add_fault(endpoint, _Fault("taken" if taken else "fail", self._error(status)))

    def hang_next(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """Take the next calls, then hold each answer ``seconds`` (or until close())."""
        for _ in range(times):
            self._add_fault(endpoint, _Fault("hang", seconds=seconds))

    def malformed_next(self, endpoint: str, shape: str = "not_json", times: int = 1) -> None:
        """Take the next calls, then answer 200 with a broken body.

        ``shape``: "not_json" (an HTML page), "empty" (no body) or "missing_fields"
        (the good answer without the fields ``ESSENTIAL`` names).
        """
        if shape not in {"not_json", "empty", "missing_fields"}:
            raise ValueError(f"unknown malformed shape {shape!r}")
        for _ in range(times):
            self._add_fault(endpoint, _Fault("malformed", shape=shape))

    def refuse_next(self, endpoint: str, refusal: str | Reply, times: int = 1) -> None:
        """Refuse the next calls with a canned refusal (see ``REFUSALS``) or a given Reply."""
        if isinstance(refusal, str):
            if refusal not in self.REFUSALS:
                known = ", ".join(sorted(self.REFUSALS))
                raise ValueError(f"unknown refusal {refusal!r}; known: {known}")
            status, body = self.REFUSALS[refusal]
            refusal = Reply(status, self._refusal_body(body))
        for _ in range(times):
            self._add_fault(endpoint, _Fault("refuse", refusal))

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    # --- what happened ------------------------------------------------------------

    def calls(self, endpoint: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def wait_for_requests(self, endpoint: str, count: int, timeout: float = 10.0) -> list[Recorded]:
        return self._wait(lambda: self.calls(endpoint), count, timeout, f"{endpoint} requests")

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Block until ``count`` callbacks were posted (and answered, or failed)."""
        return self._wait(lambda: list(self.deliveries), count, timeout, "callback deliveries")

    def _wait(self, get: Callable[[], list[Any]], count: int, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(got := get()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{type(self).__name__}: expected {count} {what}, got {len(got)} "
                        f"within {timeout}s"
                    )
                self._changed.wait(left)
            return got

    # --- for the fakes ------------------------------------------------------------

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(21)
        with self._lock:
            if self.revoke_previous_tokens:
                self._tokens.clear()
            self._tokens[token] = time.monotonic() + self.token_lifetime
        return token

    def token_valid(self, request: Recorded) -> bool:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        with self._lock:
            expiry = self._tokens.get(token.strip())
        return scheme.lower() == "bearer" and expiry is not None and time.monotonic() < expiry

    def take(
        self, txn_id: str, request: Recorded, callback_url: str | None, **data: Any
    ) -> Transaction:
        """Keep a new money request; it ends with the next queued outcome, if any.

        Answer with ``after=[self.callback_later(txn)]`` so its callback, if the outcome
        has one, goes out once the answer is written.
        """
        txn = Transaction(txn_id, request, callback_url, data=data)
        with self._lock:
            self.transactions[txn_id] = txn
            txn.outcome = self._outcomes.popleft() if self._outcomes else self.default_outcome
            self._changed.notify_all()
        return txn

    def callback_later(self, txn: Transaction) -> Callable[[], None]:
        return lambda: self._schedule_callback(txn)

    def _error(self, status: int) -> Reply:  # the provider's 5xx answer; each fake overrides
        return Reply(status, {"error": "server error"})

    def _refusal_body(self, body: Any) -> Any:  # fills in per-call fields such as request ids
        return body

    def _callback_for(self, txn: Transaction) -> tuple[str, str, bytes]:
        raise NotImplementedError

    # --- machinery ----------------------------------------------------------------

    def _add_fault(self, endpoint: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(endpoint, deque()).append(fault)

    def _schedule_callback(self, txn: Transaction) -> None:
        outcome = txn.outcome
        if outcome is None or txn.callback_url is None or outcome.callback in {NEVER, HELD}:
            return
        times = 2 if outcome.callback == TWICE else 1

        def send() -> None:
            if outcome.delay and self._closed.wait(outcome.delay):
                return
            for _ in range(times):
                if not self._closed.is_set():
                    self._deliver(*self._callback_for(txn))

        threading.Thread(target=send, name="fake-callback", daemon=True).start()

    def _deliver(self, method: str, url: str, body: bytes) -> Delivery:
        delivery = Delivery(method, url, body)
        try:
            answer = requests.request(
                method,
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self.callback_timeout,
            )
            delivery.status, delivery.answer = answer.status_code, answer.content
        except requests.RequestException as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        return delivery

    def _serve(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        route = next(
            (
                (endpoint, fn, match)
                for method, pattern, endpoint, fn in self._routes
                if method == handler.command and (match := pattern.fullmatch(parts.path))
            ),
            None,
        )
        request = Recorded(
            endpoint=route[0] if route else "",
            method=handler.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers=CaseInsensitiveDict(dict(handler.headers.items())),
            body=body,
            json=parse_json(body),
        )
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
        if route is None:
            self._write(handler, Reply(404, {"error": f"no such path {parts.path}"}))
            return
        endpoint, fn, match = route
        with self._lock:
            queue = self._faults.get(endpoint)
            fault = queue.popleft() if queue else None
        if fault is not None and fault.kind in _BEFORE:
            self._write(handler, fault.reply or self._error(500))
            return
        try:
            reply: Reply = fn(request, *match.groups())
        except Exception as exc:  # a bug of the fake: answer, keep it for the test to see
            self.errors.append(exc)
            self._write(handler, Reply(500, {"fake_error": repr(exc)}))
            return
        if fault is not None and not 200 <= reply.status < 300:
            with self._lock:  # the call was refused anyway: the fault waits for the next
                self._faults[endpoint].appendleft(fault)
            fault = None
        if fault is None:
            self._write(handler, reply)
        elif fault.kind == "hang":
            for action in reply.after:
                action()
            self._closed.wait(fault.seconds)
            reply.after = []
            self._write(handler, reply)
        elif fault.kind == "taken":
            assert fault.reply is not None
            fault.reply.after = reply.after
            self._write(handler, fault.reply)
        else:
            self._write(handler, self._malformed(endpoint, reply, fault.shape))

    def _malformed(self, endpoint: str, reply: Reply, shape: str) -> Reply:
        if shape == "not_json":
            return Reply(200, _NOT_JSON, {"Content-Type": "text/html"}, reply.after)
        if shape == "empty":
            return Reply(200, b"", {"Content-Type": "application/json"}, reply.after)
        body = json.loads(to_json(reply.body), parse_float=Decimal) if reply.body else {}
        for dotted in self.ESSENTIAL.get(endpoint, ()):
            _drop(body, dotted)
        return Reply(200, body, reply.headers, reply.after)

    def _write(self, handler: _Handler, reply: Reply) -> None:
        headers = dict(reply.headers)
        if reply.body is None:
            payload = b""
        else:
            payload = reply.body if isinstance(reply.body, bytes) else to_json(reply.body)
            headers.setdefault("Content-Type", "application/json")
        try:
            handler.send_response(reply.status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:
            pass  # the client gave up waiting (a hang); the provider still did the work
        for action in reply.after:
            action()


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        self.server.fake._serve(self)  # type: ignore[attr-defined]

    do_POST = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def new_id(chars: str, length: int) -> str:
    return "".join(secrets.choice(chars) for _ in range(length))


def basic_auth(request: Recorded) -> tuple[str, str] | None:
    """The (user, password) of a request's HTTP Basic Authorization header, if it has one."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, secret) if sep else None
