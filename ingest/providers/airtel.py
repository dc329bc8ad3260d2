"""Airtel Money collections (Open API): USSD push, transaction enquiry, and its callback.

momo names each request itself (``transaction.id``, "momo-<request id>-<random>"),
before Airtel is asked, so a push whose answer was lost can still be asked about.
Airtel prompts the payer (USSD push, ``POST /merchant/v1/payments/`` with the msisdn
without its country code), then posts ``{"transaction": {id, message, status_code,
airtel_money_id}, "hash"?}`` to the callback URL registered in its portal; a request
still pending is asked about with ``GET /standard/v1/payments/{id}``. Neither the
callback nor the enquiry carries the amount or the payer: the stored request holds them.

The callback hash (callback authentication in Airtel's portal) is
base64(HMAC-SHA256(private key as UTF-8, ``{"transaction":<the transaction object>}``)),
checked on the bytes of the transaction object as received: a body changed in any byte
is refused. With MOMO_AIRTEL_CALLBACK_KEY unset no hash is asked for; the secret path
token guards the URL alone.

Airtel is optional: without MOMO_AIRTEL_PATH_TOKEN momo starts as without it, and its
URLs answer 404.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import phonenumbers

from core.config import ConfigError, IPNetwork, Settings, check_path_token
from core.providers import NOT_ACCEPTED, ParseContext, Registration, require_path_token
from core.redact import WEBHOOK_PREFIX
from ingest.providers.json_body import STRICT
from ingest.providers.outbound import (
    Ask,
    Asked,
    NoAnswer,
    ProviderClient,
    ProviderRefused,
    ProviderUnavailable,
    Timeouts,
    TokenCache,
    json_object,
)
from matcher.models import Payment, PaymentRequest
from matcher.notifications import Callback, InvalidCallback, RequestResult, RequestState
from matcher.text import column_length, storable

PROVIDER: Final = "airtel"
#: the one callback kind: the result of a USSD push
CALLBACK: Final = "callback"
CHANNEL: Final = "ussd_push"
SANDBOX: Final = "https://openapiuat.airtel.africa"
TOKEN_PATH: Final = "/auth/oauth2/token"  # noqa: S105 - a path, not a secret
PUSH_PATH: Final = "/merchant/v1/payments/"
QUERY_PATH: Final = "/standard/v1/payments/"

#: transaction statuses (callback ``status_code``, enquiry ``status``)
SUCCESS: Final = "TS"
FAILED: Final = "TF"
AMBIGUOUS: Final = "TA"
IN_PROGRESS: Final = "TIP"
EXPIRED: Final = "TE"
STATES: Final[Mapping[str, RequestState]] = {
    SUCCESS: "paid",
    FAILED: "failed",
    EXPIRED: "failed",  # the payer never answered the prompt
    IN_PROGRESS: "pending",
    AMBIGUOUS: "pending",  # Airtel does not know yet: asked again at the next sweep
}
#: status.response_code of a push Airtel took (in progress, success, ambiguous)
TAKEN_CODES: Final = frozenset({"DP00800001006", "DP00800001001", "DP00800001000"})
#: status.response_code of an enquiry about an id Airtel does not know (yet)
NOT_FOUND: Final = "DP00800001025"

#: the countries Airtel Money collects in (ISO 3166 codes, as X-Country takes them)
COUNTRIES: Final = frozenset(
    {"CD", "CG", "GA", "KE", "MG", "MW", "NE", "NG", "RW", "SC", "TD", "TZ", "UG", "ZM"}
)
#: longest account number sent as the push's ``reference``
REFERENCE_LENGTH: Final = 64

_REFERENCE_MAX: Final = column_length(PaymentRequest.provider_reference)
_MONEY_ID_MAX: Final = column_length(Payment.code)
_ID_TEXT: Final = re.compile(r"[\x21-\x7e]+")
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_SHOWN_MAX: Final = 60
DEFAULT_TIMEOUTS: Final = Timeouts()

# --- settings -----------------------------------------------------------------------------

PATH_TOKEN_VARIABLE: Final = "MOMO_AIRTEL_PATH_TOKEN"  # noqa: S105 - a variable name
CALLBACK_KEY_VARIABLE: Final = "MOMO_AIRTEL_CALLBACK_KEY"
CLIENT_ID_VARIABLE: Final = "MOMO_AIRTEL_CLIENT_ID"
CLIENT_SECRET_VARIABLE: Final = "MOMO_AIRTEL_CLIENT_SECRET"  # noqa: S105 - a variable name
API_BASE_VARIABLE: Final = "MOMO_AIRTEL_API_BASE"
COUNTRY_VARIABLE: Final = "MOMO_AIRTEL_COUNTRY"
CURRENCY_VARIABLE: Final = "MOMO_AIRTEL_CURRENCY"
#: where Airtel's callback URL is registered
REGISTRAR: Final = "Airtel's developer portal (the application's callback URL)"


@dataclass(frozen=True)
class AirtelSettings:
    """Airtel's block of the settings; the defaults are what unset variables mean."""

    #: MOMO_AIRTEL_PATH_TOKEN: the secret path segment of the callback URL; None: Airtel
    #: is not listened to (its URLs answer 404) and nobody is asked to pay through it
    path_token: str | None = None
    #: MOMO_AIRTEL_CALLBACK_KEY: the private key of callback authentication; None: no
    #: hash is asked for
    callback_key: str | None = None
    #: MOMO_AIRTEL_CLIENT_ID / _SECRET: the application's credentials; unset: no requests
    client_id: str | None = None
    client_secret: str | None = None
    #: MOMO_AIRTEL_API_BASE
    api_base: str = SANDBOX
    #: MOMO_AIRTEL_COUNTRY (default MOMO_DEFAULT_REGION when Airtel serves it): where its
    #: subscribers are, and how a number written without its country code is read
    country: str | None = None
    #: MOMO_AIRTEL_CURRENCY (default MOMO_CURRENCY)
    currency: str = "KES"
    #: how long Airtel may take to answer one call
    timeouts: Timeouts = DEFAULT_TIMEOUTS

    def __repr__(self) -> str:  # the secrets never reach a log line or a message
        shown = {
            "path_token": "***" if self.path_token else None,
            "callback_key": "***" if self.callback_key else None,
            "client_id": self.client_id,
            "client_secret": "***" if self.client_secret else None,
            "api_base": self.api_base,
            "country": self.country,
            "currency": self.currency,
        }
        return f"AirtelSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def read_settings(env: Mapping[str, str], settings: Settings) -> AirtelSettings:
    """Airtel's block from the environment; ConfigError naming a variable that is wrong.
    Nothing set is no error: Airtel is then simply not spoken."""

    def given(name: str) -> str | None:
        return env.get(name, "").strip() or None

    path_token = given(PATH_TOKEN_VARIABLE)
    if path_token is not None:
        check_path_token(path_token, PATH_TOKEN_VARIABLE, REGISTRAR)
    client_id, client_secret = given(CLIENT_ID_VARIABLE), given(CLIENT_SECRET_VARIABLE)
    if (client_id is None) != (client_secret is None):
        missing, present = (
            (CLIENT_SECRET_VARIABLE, CLIENT_ID_VARIABLE)
            if client_secret is None
            else (CLIENT_ID_VARIABLE, CLIENT_SECRET_VARIABLE)
        )
        raise ConfigError(
            f"{missing} is not set, but {present} is: Airtel Money needs both the client id "
            "and the client secret of the application (Airtel's developer portal, Key "
            "Management)"
        )
    api_base = (given(API_BASE_VARIABLE) or SANDBOX).rstrip("/")
    if not api_base.startswith(("https://", "http://")):
        raise ConfigError(
            f"{API_BASE_VARIABLE}={api_base!r} is not a URL; give {SANDBOX} (the sandbox, the "
            "default) or https://openapi.airtel.africa (live)"
        )
    return AirtelSettings(
        path_token=path_token,
        callback_key=given(CALLBACK_KEY_VARIABLE),
        client_id=client_id,
        client_secret=client_secret,
        api_base=api_base,
        country=_country(given(COUNTRY_VARIABLE), settings),
        currency=_currency(given(CURRENCY_VARIABLE), settings),
    )


def _country(raw: str | None, settings: Settings) -> str | None:
    if raw is None:
        # the default region is Airtel's country only where Airtel collects
        region = settings.default_region.upper()
        return region if region in COUNTRIES else None
    country = raw.upper()
    if country not in COUNTRIES:
        raise ConfigError(
            f"{COUNTRY_VARIABLE}={raw!r} is not a country Airtel Money collects in; give its "
            f"two-letter code, one of: {', '.join(sorted(COUNTRIES))}"
        )
    return country


def _currency(raw: str | None, settings: Settings) -> str:
    if raw is None:
        return settings.currency
    currency = raw.upper()
    if not re.fullmatch("[A-Z]{3}", currency):
        raise ConfigError(
            f"{CURRENCY_VARIABLE}={raw!r} is not a three-letter currency code such as KES or UGX"
        )
    if currency != settings.currency:
        raise ConfigError(
            f"{CURRENCY_VARIABLE}={currency} differs from MOMO_CURRENCY={settings.currency}: "
            "balances are kept in MOMO_CURRENCY, so Airtel must collect in it. Set "
            f"MOMO_CURRENCY={currency}, or leave {CURRENCY_VARIABLE} unset"
        )
    return currency


def settings_of(settings: Settings) -> AirtelSettings:
    """Airtel's block of ``settings``; the defaults when the settings carry none."""
    block: AirtelSettings | None = settings.providers.get(PROVIDER)
    return AirtelSettings(currency=settings.currency) if block is None else block


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with Airtel's block changed (e.g. ``path_token=...``)."""
    return settings.with_provider(PROVIDER, replace(settings_of(settings), **changes))


# --- the outbound client ------------------------------------------------------------------


class Collections:
    """One Airtel application's collection client; its token is shared by every thread."""

    def __init__(self, settings: AirtelSettings) -> None:
        if settings.client_id is None or settings.client_secret is None:
            raise ConfigError(f"set {CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE}")
        if settings.country is None:
            raise ConfigError(f"set {COUNTRY_VARIABLE}")
        self.settings = settings
        self.client_id, self.client_secret = settings.client_id, settings.client_secret
        self.country = settings.country
        self.client = ProviderClient(
            PROVIDER, settings.api_base, timeouts=settings.timeouts, token=TokenCache(self._token)
        )

    def close(self) -> None:
        self.client.close()

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "X-Country": self.country,
            "X-Currency": self.settings.currency,
        }

    def _token(self) -> tuple[str, float]:
        body = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "client_credentials",
        }
        response = self.client.send("POST", TOKEN_PATH, json=body, bearer=False)
        if response.status_code != 200:
            raise ProviderRefused(
                PROVIDER,
                f"Airtel refused the client id and secret ({response.status_code}): check "
                f"{CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE}, and that "
                f"{API_BASE_VARIABLE} is the environment they belong to",
                status=response.status_code,
                reason="credentials_refused",
            )
        answer = json_object(PROVIDER, response, "the OAuth token request")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise NoAnswer(PROVIDER, "the OAuth answer holds no access_token")
        try:
            lifetime = float(answer.get("expires_in", 180))  # Airtel sends a string, "180"
        except (TypeError, ValueError):
            lifetime = 180.0
        return token, lifetime if lifetime > 0 else 180.0

    def push(self, ask: Ask, reference: str) -> Asked:
        """Prompt the payer. ProviderRefused: Airtel (or momo, before asking) said no;
        ProviderUnavailable: it never took it; NoAnswer: it may have (then it is asked
        about ``reference``, never prompted again)."""
        s = self.settings
        if ask.currency != s.currency:
            raise ProviderRefused(
                PROVIDER,
                f"the request is in {ask.currency} and Airtel collects in {s.currency}: set "
                f"{CURRENCY_VARIABLE} to the request's currency",
                status=422,
                reason="currency_differs",
            )
        body = {
            "reference": ask.account_number[:REFERENCE_LENGTH],
            "subscriber": {
                "country": self.country,
                "currency": s.currency,
                "msisdn": local_msisdn(ask.phone, self.country),
            },
            "transaction": {
                "amount": _AMOUNT,
                "country": self.country,
                "currency": s.currency,
                "id": reference,
            },
        }
        response = self.client.send(
            "POST", PUSH_PATH, data=_json_with_amount(body, ask.amount), headers=self._headers()
        )
        if response.status_code >= 400:
            raise _refusal(response)
        answer = json_object(PROVIDER, response, "the USSD push")
        data = answer.get("data")
        status = answer.get("status")
        status = status if isinstance(status, dict) else {}
        code = _text(status.get("response_code"))
        if status.get("success") is False and code not in TAKEN_CODES:
            raise ProviderRefused(
                PROVIDER,
                _text(status.get("message")) or f"the USSD push was refused: {_show(answer)}",
                status=response.status_code,
                reason=code or _text(status.get("result_code")) or "refused",
            )
        if not isinstance(data, dict) or not isinstance(data.get("transaction"), dict):
            raise NoAnswer(PROVIDER, f"the USSD push answered without data.transaction: {answer}")
        return Asked(reference=reference, message=_text(status.get("message")) or None)

    def query(self, reference: str) -> RequestResult:
        """How the push went, by Airtel's transaction enquiry ("pending" while undecided)."""
        response = self.client.send(
            "GET", QUERY_PATH + quote(reference, safe=""), headers=self._headers()
        )
        if response.status_code == 404:
            return _not_found(reference)
        if response.status_code >= 400:
            raise _refusal(response)
        answer = json_object(PROVIDER, response, "the transaction enquiry")
        data = answer.get("data")
        status = answer.get("status")
        status = status if isinstance(status, dict) else {}
        code = _text(status.get("response_code"))
        transaction = data.get("transaction") if isinstance(data, dict) else None
        if not isinstance(transaction, dict):
            if code == NOT_FOUND:
                return _not_found(reference)
            raise NoAnswer(
                PROVIDER, f"the transaction enquiry answered without data.transaction: {answer}"
            )
        word = _text(transaction.get("status")).upper()
        state = STATES.get(word)
        if state is None:
            raise NoAnswer(
                PROVIDER,
                f"the transaction enquiry answered status {_show(transaction.get('status'))}, "
                f"not one of {', '.join(STATES)}",
            )
        money_id = _text(transaction.get("airtel_money_id")) or None
        if state == "paid" and money_id is None:
            raise NoAnswer(PROVIDER, "the transaction enquiry says TS without an airtel_money_id")
        message = _text(transaction.get("message"))
        description = f"{message} ({code})" if message and code else message or code
        return RequestResult(
            provider=PROVIDER,
            reference=reference,
            state=state,
            result_code=word,
            result_description=storable(description),
            channel=CHANNEL,
            code=money_id if state == "paid" else None,
        )


def _not_found(reference: str) -> RequestResult:
    # Not (yet) known to Airtel: the push may not have reached it, or not be indexed yet.
    # Never a failure: the request waits, and expires if nothing ever comes.
    return RequestResult(
        provider=PROVIDER,
        reference=reference,
        state="pending",
        result_code=NOT_FOUND,
        result_description="Transaction Not Found",
        channel=CHANNEL,
    )


def local_msisdn(e164: str, country: str) -> str:
    """The number as Airtel takes it: without its country code ("712345678"). A number of
    another country is refused: Airtel here prompts its own country's subscribers only."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or number.country_code != phonenumbers.country_code_for_region(country):
        raise ProviderRefused(
            PROVIDER,
            f"{e164} is not a number of {country}, where Airtel Money is set up "
            f"({COUNTRY_VARIABLE}); ask another provider, or write the payer's {country} number",
            status=422,
            reason="phone_outside_country",
        )
    return phonenumbers.national_significant_number(number)


#: stands for the amount in the push body until it is written as an exact JSON number
_AMOUNT: Final = object()


def _json_with_amount(body: dict[str, Any], amount: int) -> bytes:
    """``body`` as JSON, the amount (minor units) written as its exact decimal number:
    "1500" for whole units, "10.50" with cents; never through a float."""
    major, cents = divmod(amount, 100)
    number = f"{major}.{cents:02d}" if cents else str(major)
    marker = f"amount-{secrets.token_hex(8)}"

    def mark(value: object) -> object:
        if value is _AMOUNT:
            return marker
        raise TypeError(f"{type(value).__name__} is not JSON")

    text = json.dumps(body, default=mark, separators=(",", ":"))
    return text.replace(json.dumps(marker), number).encode()


def _refusal(response: Any) -> ProviderRefused:
    """Airtel's error bodies as a refusal: ``{"status": {message, response_code, ...}}``
    or OAuth's ``{"error", "error_description"}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict) and _text(status.get("message")):
            return ProviderRefused(
                PROVIDER,
                _text(status.get("message")),
                status=response.status_code,
                reason=_text(status.get("response_code"))
                or _text(status.get("code"))
                or str(response.status_code),
            )
        if _text(body.get("error")):
            return ProviderRefused(
                PROVIDER,
                _text(body.get("error_description")) or _text(body.get("error")),
                status=response.status_code,
                reason=_text(body.get("error")),
            )
    text = response.text.strip()[:300] or "(empty body)"
    return ProviderRefused(
        PROVIDER, text, status=response.status_code, reason=str(response.status_code)
    )


def _text(value: object) -> str:
    """A string or number field as text; anything else as ""."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, str | int | Decimal):
        return str(value).strip()
    return ""


_clients: dict[AirtelSettings, Collections] = {}
_clients_lock = threading.Lock()


def collections(settings: Settings) -> Collections:
    """The process's one client per Airtel application: its token is shared.
    ProviderUnavailable (nothing is sent) while the application is not set up."""
    block = settings_of(settings)
    if block.client_id is None or block.client_secret is None or block.country is None:
        raise ProviderUnavailable(
            PROVIDER,
            f"not set up: set {CLIENT_ID_VARIABLE}, {CLIENT_SECRET_VARIABLE} and "
            f"{COUNTRY_VARIABLE}",
        )
    with _clients_lock:
        client = _clients.get(block)
        if client is None:
            client = _clients[block] = Collections(block)
        return client


# --- the callback -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    value: Any
    #: the member's value exactly as sent (what the hash is computed over)
    raw: str


def _members(body: bytes) -> dict[str, _Member]:
    """The top-level JSON object's members, each with its value's text as sent.

    InvalidCallback when the body is not one JSON object (or repeats a key)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidCallback(f"body is not UTF-8 ({exc})", "invalid_json") from None
    try:
        return _scan_object(text)
    except (ValueError, RecursionError, decimal.DecimalException) as exc:
        raise InvalidCallback(f"body is not a JSON object ({exc})", "invalid_json") from None


def _scan_object(text: str) -> dict[str, _Member]:
    def skip(at: int) -> int:
        match = _WHITESPACE.match(text, at)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def expect(char: str, at: int) -> int:
        if text[at : at + 1] != char:
            raise ValueError(f"expected {char!r} at character {at}")
        return at + 1

    members: dict[str, _Member] = {}
    at = expect("{", skip(0))
    at = skip(at)
    if text[at : at + 1] == "}":
        at += 1
    else:
        while True:
            if text[at : at + 1] != '"':
                raise ValueError(f"expected a key at character {at}")
            key, at = STRICT.raw_decode(text, at)
            at = skip(expect(":", skip(at)))
            start = at
            value, at = STRICT.raw_decode(text, at)
            if key in members:
                raise ValueError(f"key {key!r} appears more than once")
            members[key] = _Member(value, text[start:at])
            at = skip(at)
            if text[at : at + 1] == "}":
                at += 1
                break
            at = skip(expect(",", at))
    if skip(at) != len(text):
        raise ValueError(f"extra data after the object at character {at}")
    return members


def callback_hash(transaction: str, key: str) -> str:
    """The hash Airtel sends with a callback whose transaction object is ``transaction``
    (its JSON text as sent), under the private ``key``."""
    message = b'{"transaction":' + transaction.encode() + b"}"
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def hash_problem(body: bytes, key: str) -> str | None:
    """Why the callback's hash does not prove the body is Airtel's, or None when it does."""
    try:
        members = _members(body)
    except InvalidCallback as exc:
        return f"the hash cannot be checked: {exc.message}"
    transaction, given = members.get("transaction"), members.get("hash")
    if transaction is None or not isinstance(transaction.value, dict):
        return "the hash cannot be checked: the body has no transaction object"
    if given is None or not isinstance(given.value, str) or not given.value.strip():
        return (
            f"hash is missing: {CALLBACK_KEY_VARIABLE} is set, so Airtel's callbacks must "
            "carry one (turn on callback authentication in Airtel's portal, or unset the key)"
        )
    expected = callback_hash(transaction.raw, key)
    if not hmac.compare_digest(given.value.strip().encode(), expected.encode()):
        return (
            f"hash does not match the body: it was changed on the way, or signed with "
            f"another key than {CALLBACK_KEY_VARIABLE}"
        )
    return None


def parse_callback(body: bytes) -> RequestResult:
    """The result a callback body reports; InvalidCallback when it is not Airtel's shape."""
    members = _members(body)
    found = members.get("transaction")
    if found is None or found.value is None:
        raise InvalidCallback("required field transaction is missing or null", "missing_field")
    transaction = found.value
    if not isinstance(transaction, dict):
        raise InvalidCallback(f"transaction {_show(transaction)} is not an object", "invalid_field")
    reference = _identifier(transaction, "id", _REFERENCE_MAX, required=True)
    assert reference is not None
    word = transaction.get("status_code")
    state = STATES.get(word) if isinstance(word, str) else None
    if state is None:
        raise InvalidCallback(
            f"transaction.status_code {_show(word)} is not one of {', '.join(STATES)}",
            "invalid_status",
        )
    assert isinstance(word, str)
    money_id = _identifier(transaction, "airtel_money_id", _MONEY_ID_MAX, required=state == "paid")
    message = transaction.get("message")
    if message is not None and not isinstance(message, str):
        raise InvalidCallback(
            f"transaction.message {_show(message)} is not a string", "invalid_field"
        )
    return RequestResult(
        provider=PROVIDER,
        reference=reference,
        state=state,
        result_code=word,
        result_description=storable(message or ""),
        channel=CHANNEL,
        code=money_id if state == "paid" else None,
    )


def _identifier(
    transaction: dict[str, Any], key: str, longest: int, *, required: bool
) -> str | None:
    """An id field: printable ASCII without spaces, kept whole (never cut or altered)."""
    value = transaction.get(key)
    if value is None or value == "":
        if required:
            raise InvalidCallback(
                f"required field transaction.{key} is missing or empty", "missing_field"
            )
        return None
    if not isinstance(value, str) or not _ID_TEXT.fullmatch(value) or len(value) > longest:
        raise InvalidCallback(
            f"transaction.{key} {_show(value)} is not an id (expected 1-{longest} printable "
            "ASCII characters without spaces)",
            "invalid_field",
        )
    return value


def _show(value: object) -> str:
    """``value`` as JSON, shortened to one storable line for a message."""
    try:
        shown = json.dumps(value, default=str, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        shown = f"<{type(value).__name__}>"
    if len(shown) > _SHOWN_MAX:
        shown = shown[: _SHOWN_MAX - 3] + "..."
    return storable(shown)


# --- the adapter --------------------------------------------------------------------------


def _refusal_body(status: int, message: str, **extra: str) -> dict[str, Any]:
    return {"status": {"code": str(status), "message": message, "success": False}, **extra}


#: the answer while neither the inbox nor the spool can keep a callback
UNAVAILABLE: Final = _refusal_body(503, NOT_ACCEPTED)


class AirtelAdapter:
    """Airtel Money: USSD push out, its callback in; optional (a path token turns it on)."""

    name: str = PROVIDER
    kinds: frozenset[str] = frozenset({CALLBACK})
    #: Airtel's callback says TF for every failure, a dismissed prompt included
    cancelled_codes: frozenset[int] = frozenset()
    variables: tuple[str, ...] = (
        PATH_TOKEN_VARIABLE,
        CALLBACK_KEY_VARIABLE,
        CLIENT_ID_VARIABLE,
        CLIENT_SECRET_VARIABLE,
        API_BASE_VARIABLE,
        COUNTRY_VARIABLE,
        CURRENCY_VARIABLE,
    )
    methods: frozenset[str] = frozenset({"POST"})
    #: the networks whose subscribers Airtel Money prompts (phonenumbers' carrier names)
    networks: frozenset[str] = frozenset({"Airtel"})
    registration: Registration = Registration(
        title="Airtel Money",
        a_title="an Airtel Money",
        registrar=REGISTRAR,
        token_variable=PATH_TOKEN_VARIABLE,
        token_file="airtel_path_token",  # noqa: S106 - a file name, not a secret
        optional=True,
    )

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> AirtelSettings:
        return read_settings(env, settings)

    def path_token(self, settings: Settings) -> str | None:
        return settings_of(settings).path_token

    def require_path_token(self, settings: Settings) -> str:
        return require_path_token(settings_of(settings).path_token, self.registration)

    def with_path_token(self, settings: Settings, token: str) -> Settings:
        return with_settings(settings, path_token=token)

    def callback_paths(self, token: str) -> tuple[str, ...]:
        return (f"{WEBHOOK_PREFIX}{PROVIDER}/{token}/{CALLBACK}",)

    def allowed_networks(self, settings: Settings) -> tuple[IPNetwork, ...]:
        return ()

    def signature_problem(
        self, settings: Settings, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        key = settings_of(settings).callback_key
        return None if key is None else hash_problem(body, key)

    # --- asking customers to pay ---------------------------------------------------------

    def requests_missing(self, settings: Settings) -> list[str]:
        block = settings_of(settings)
        missing = []
        if block.client_id is None or block.client_secret is None:
            missing += [CLIENT_ID_VARIABLE, CLIENT_SECRET_VARIABLE]
        if block.country is None:
            missing.append(COUNTRY_VARIABLE)
        if block.path_token is None:
            missing.append(PATH_TOKEN_VARIABLE)
        return missing

    def phone_region(self, settings: Settings) -> str:
        """Where a number written without its country code is read: Airtel's country."""
        return settings_of(settings).country or settings.default_region

    def our_reference(self, request_id: int) -> str | None:
        # Airtel takes the id from us, unique per merchant: the random part keeps it so
        # across databases that start counting again.
        return f"momo-{request_id}-{secrets.token_hex(4)}"

    def callback_path(self, settings: Settings) -> str:
        return f"{WEBHOOK_PREFIX}{PROVIDER}/{self.require_path_token(settings)}/{CALLBACK}"

    def ask(self, settings: Settings, ask: Ask) -> Asked:
        if ask.reference is None:
            raise ProviderRefused(
                PROVIDER,
                "the request has no transaction id to send",
                status=422,
                reason="no_reference",
            )
        return collections(settings).push(ask, ask.reference)

    def query(self, settings: Settings, ask: Ask) -> RequestResult:
        if ask.reference is None:
            raise NoAnswer(PROVIDER, "the request has no transaction id to ask about")
        return collections(settings).query(ask.reference)

    # --- callbacks -----------------------------------------------------------------------

    def rejects_unknown_accounts(self, settings: Settings) -> bool:
        return False  # Airtel asks nothing before a payment

    def refusal(self, status: int, message: str, **extra: str) -> dict[str, Any]:
        """Airtel's own status envelope, ``success: false`` and the reason."""
        return _refusal_body(status, message, **extra)

    def receipt_code(self, reference: str) -> str | None:
        # Airtel Money ids have no documented shape to tell them from other references.
        return None

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        """The request result the callback reports, or InvalidCallback."""
        if kind not in self.kinds:
            raise InvalidCallback(
                f"unknown Airtel Money callback kind {kind!r}; expected {CALLBACK}",
                "unknown_kind",
            )
        return parse_callback(body)

    def acknowledge(self, kind: str) -> dict[str, Any]:
        return {"status": {"code": "200", "message": "Callback received", "success": True}}

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        return self.acknowledge(CALLBACK)
