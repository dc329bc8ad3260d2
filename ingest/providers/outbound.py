"""Talking to a provider's API: one ``requests`` session per provider, with deadlines,
careful retries and a shared OAuth token.

What is retried, with backoff: a connection that could not be made (nothing was sent)
and a 5xx answer (the provider says it did not do it). What is never retried: a
request that was sent and not answered (a read timeout, a connection cut after
sending, an answer that is not the provider's shape). The provider may have acted on
it, so asking again could make a customer pay twice: the caller asks the provider
what became of it instead (``NoAnswer``).

Secrets (keys, passwords, tokens) travel only in headers and bodies and are never
put in a message, a log line or an exception.
"""

from __future__ import annotations

import decimal
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.retry import Retry

from ingest.providers.json_body import STRICT

log = logging.getLogger(__name__)

#: 5xx answers that say the provider did not act: retried with backoff
RETRIED_STATUSES = (500, 502, 503, 504)
#: a token is fetched again this long before the provider said it expires
TOKEN_MARGIN_SECONDS = 60.0


class ProviderError(Exception):
    """The provider could not be asked, or said no; ``message`` says so for a human."""

    #: machine-readable, for API answers and request results
    code = "provider_error"

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderUnavailable(ProviderError):
    """Nothing reached the provider, or it answered 5xx however often it was asked: it
    did not act on the request, which may be made again later."""

    code = "provider_unavailable"

    def __init__(
        self, provider: str, message: str, *, status: int | None = None, answer: str = ""
    ) -> None:
        super().__init__(provider, message)
        #: the provider's last 5xx status and body (None and "": it never answered); some
        #: providers put a refusal in a 5xx, which its adapter may read from these
        self.status = status
        self.answer = answer


class ProviderRefused(ProviderError):
    """The provider answered and refused (a 4xx, or its own error code): it will not act
    on this request as it is. ``status`` is its HTTP status, ``reason`` its code."""

    code = "provider_refused"

    def __init__(self, provider: str, message: str, *, status: int, reason: str) -> None:
        super().__init__(provider, message)
        self.status = status
        self.reason = reason


class NoAnswer(ProviderError):
    """The request was sent and no usable answer came: the provider may have acted on
    it. Never send it again; ask the provider what became of it."""

    code = "provider_no_answer"


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0

    def pair(self) -> tuple[float, float]:
        return (self.connect, self.read)


class TokenCache:
    """An OAuth access token, fetched once and shared by every thread until shortly
    before it expires (or until the provider refuses it)."""

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        *,
        margin: float = TOKEN_MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._good_until = 0.0
        #: how many tokens were fetched (for tests and benches)
        self.fetched = 0

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._good_until:
                token, lifetime = self._fetch()
                self.fetched += 1
                self._token = token
                # a lifetime shorter than the margin is used for half of itself
                self._good_until = self._clock() + max(lifetime - self._margin, lifetime / 2)
            return self._token

    def refused(self, token: str) -> None:
        """The provider refused ``token`` (expired early, revoked): fetch a new one next."""
        with self._lock:
            if self._token == token:
                self._token = None


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Whether a connection error happened before the request left (so resending it is
    safe): the connection was refused or could not be made in time."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class ProviderClient:
    """A provider's HTTP API at ``base_url``: one pooled session, deadlines on every call,
    retries only where nothing can have happened twice, a bearer token when given one."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        retries: int = 3,
        status_retries: int | None = None,
        backoff: float = 0.5,
        token: TokenCache | None = None,
        token_refused: Callable[[requests.Response], bool] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.provider = provider
        #: whether an answer says the bearer token was not let in (401 unless the
        #: provider says otherwise: Daraja answers 404 with its own code)
        self.token_refused = token_refused or (lambda response: response.status_code == 401)
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.token = token
        self.session = session or requests.Session()
        retry = Retry(
            total=None,
            connect=retries,
            read=False,  # sent and unanswered: re-raised, never resent
            redirect=0,
            status=retries if status_retries is None else status_retries,
            other=0,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=None,  # every method: a 5xx says nothing was done
            backoff_factor=backoff,
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        #: calls made, by path (for tests and benches: "queries per settled request")
        self.calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        bearer: bool = True,
    ) -> requests.Response:
        """One call; a refused shared token is fetched again and the call tried once more
        (the provider did not act on a request it did not let in)."""
        for attempt in (1, 2):
            sent_headers = dict(headers or {})
            token = None
            if bearer and self.token is not None:
                token = self.token.get()
                sent_headers["Authorization"] = f"Bearer {token}"
            response = self._send_once(method, path, json, data, sent_headers, auth)
            if token is not None and attempt == 1 and self.token_refused(response):
                assert self.token is not None
                self.token.refused(token)
                continue
            return response
        raise AssertionError("unreachable")

    def _send_once(
        self,
        method: str,
        path: str,
        json: Any,
        data: Any,
        headers: dict[str, str],
        auth: tuple[str, str] | None,
    ) -> requests.Response:
        with self._calls_lock:
            self.calls[path] = self.calls.get(path, 0) + 1
        url = self.base_url + path
        try:
            response = self.session.request(
                method,
                url,
                json=json,
                data=data,
                headers=headers,
                auth=auth,
                timeout=self.timeouts.pair(),
                allow_redirects=False,
            )
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise ProviderUnavailable(
                    self.provider,
                    f"could not connect to {self.base_url} ({type(exc).__name__}); nothing "
                    "was sent. Check the API base URL setting and the network, then try again",
                ) from None
            raise NoAnswer(
                self.provider,
                f"{method} {path} was sent and the connection ended without an answer",
            ) from None
        except requests.Timeout:
            raise NoAnswer(
                self.provider,
                f"{method} {path} was sent and not answered within {self.timeouts.read:g} s",
            ) from None
        except requests.RequestException as exc:
            raise NoAnswer(
                self.provider, f"{method} {path} failed after sending ({type(exc).__name__})"
            ) from None
        if response.status_code in RETRIED_STATUSES:
            raise ProviderUnavailable(
                self.provider,
                f"{method} {path} answered {response.status_code} however often it was "
                f"asked: {_words(response)}. Nothing was done; try again later",
                status=response.status_code,
                answer=response.text,
            )
        log.debug("%s %s %s -> %s", self.provider, method, path, response.status_code)
        return response


def json_object(provider: str, response: requests.Response, what: str) -> dict[str, Any]:
    """The answer's JSON object, read as strictly as a callback (an amount in it is never
    a float); ``NoAnswer`` when it is something else (the provider may still have acted:
    ask it again later)."""
    try:
        body = STRICT.decode(response.content.decode("utf-8"))
    except (ValueError, RecursionError, decimal.DecimalException):
        body = None
    if not isinstance(body, dict):
        raise NoAnswer(
            provider,
            f"{what} answered {response.status_code} with a body that is not a JSON object: "
            f"{_words(response)}",
        )
    return body


def _words(response: requests.Response, limit: int = 300) -> str:
    """The start of an answer's body, for a message (answers carry no secrets of ours)."""
    text = response.text.strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")


# --- asking customers to pay ----------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """A payment request as a provider's client needs it."""

    request_id: int
    phone: str  # E.164
    amount: int  # minor units
    currency: str
    account_number: str
    #: the provider's id of the request, when known (for providers that take ours, from
    #: the start; for the others, once they answered)
    reference: str | None = None
    #: where the provider posts the result
    callback_url: str | None = None


@dataclass(frozen=True)
class Asked:
    """The provider took the request: it prompts the customer and will say how it went."""

    reference: str
    merchant_reference: str | None = None
    #: what the provider says it told the customer, when it says
    message: str | None = None


@dataclass(frozen=True)
class Accepted:
    """The provider took a question or an order whose result it posts later; the result
    names these ids (either may be missing when the provider gives only one)."""

    originator_id: str | None
    conversation_id: str | None
