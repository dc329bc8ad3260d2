"""MTN MoMo (Open API, collection product): request-to-pay, its status, its callback.

momo asks with ``POST /collection/v1_0/requesttopay``, naming the request itself: a UUID
in ``X-Reference-Id``, chosen and stored before MTN is asked (so a request whose answer
was lost can still be asked about), sent again as ``externalId``. MTN answers 202 with
no body, prompts the payer, and reports the end by callback to ``X-Callback-Url``
(PUT, sometimes POST; the body is the status GET's) and by
``GET /collection/v1_0/requesttopay/{X-Reference-Id}``. Every call carries the
subscription key (``Ocp-Apim-Subscription-Key``) and ``X-Target-Environment``; the
bearer token comes from ``POST /collection/token/`` with HTTP Basic api user:api key.

The callback is not signed and does not name ``X-Reference-Id``: it is found by its
``externalId`` (momo's UUID, the same as the reference), and its word is not taken,
either way: a success or a failure it reports (``verified=False``) has MTN asked at the
next query sweep, and the GET's answer settles the request. So a callback whose URL
leaked can neither credit nor fail a request.

MTN's settings (``MOMO_MTN_*``) are its own block, ``MtnSettings``. MTN is optional:
without ``MOMO_MTN_PATH_TOKEN`` its callback URLs answer 404, ``momo serve`` does not
show them, and momo starts as without MTN (its registration is optional).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from core.config import ConfigError, IPNetwork, Settings, check_path_token
from core.providers import ParseContext, Registration, require_path_token
from core.redact import WEBHOOK_PREFIX
from ingest.providers.json_body import decode_object
from ingest.providers.mpesa import parse_amount
from ingest.providers.outbound import (
    Ask,
    Asked,
    NoAnswer,
    ProviderClient,
    ProviderRefused,
    Timeouts,
    TokenCache,
    json_object,
)
from matcher.models import PaymentRequest
from matcher.money import format_minor
from matcher.notifications import Callback, InvalidCallback, Msisdn, RequestResult, RequestState
from matcher.phones import classify_msisdn
from matcher.text import column_length

PROVIDER: Final = "mtn"
#: the one kind of callback: a request-to-pay's result
CALLBACK: Final = "callback"
CHANNEL: Final = "requesttopay"
SANDBOX: Final = "https://sandbox.momodeveloper.mtn.com"
SANDBOX_ENVIRONMENT: Final = "sandbox"
#: the sandbox takes no other currency
SANDBOX_CURRENCY: Final = "EUR"
TOKEN_PATH: Final = "/collection/token/"  # noqa: S105 - a path, not a secret
PAY_PATH: Final = "/collection/v1_0/requesttopay"
#: the request-to-pay's status words
PENDING: Final = "PENDING"
SUCCESSFUL: Final = "SUCCESSFUL"
FAILED: Final = "FAILED"
STATUSES: Final = (PENDING, SUCCESSFUL, FAILED)
#: the failure reason of a prompt the payer declined
APPROVAL_REJECTED: Final = "APPROVAL_REJECTED"
#: MTN's answer to an X-Reference-Id it already has
ALREADY_EXISTS: Final = "RESOURCE_ALREADY_EXIST"
#: MTN's answer to a reference it does not know
NOT_FOUND: Final = "RESOURCE_NOT_FOUND"
#: the networks whose subscribers MTN MoMo prompts: phonenumbers' carrier names of MTN's
#: operating companies ("Areeba" is MTN Guinea, "Lonestar Cell" MTN Liberia)
DEFAULT_TIMEOUTS: Final = Timeouts()
NETWORKS: Final = frozenset({"MTN", "MTN Cameroon", "Swazi MTN", "Lonestar Cell", "Areeba"})

# --- settings -----------------------------------------------------------------------------

API_BASE_VARIABLE: Final = "MOMO_MTN_API_BASE"
SUBSCRIPTION_KEY_VARIABLE: Final = "MOMO_MTN_SUBSCRIPTION_KEY"
API_USER_VARIABLE: Final = "MOMO_MTN_API_USER"
API_KEY_VARIABLE: Final = "MOMO_MTN_API_KEY"
TARGET_ENVIRONMENT_VARIABLE: Final = "MOMO_MTN_TARGET_ENVIRONMENT"
CURRENCY_VARIABLE: Final = "MOMO_MTN_CURRENCY"
PATH_TOKEN_VARIABLE: Final = "MOMO_MTN_PATH_TOKEN"  # noqa: S105 - a variable name, not a secret
#: every one is needed before momo asks anyone to pay through MTN
CREDENTIAL_VARIABLES: Final = (
    SUBSCRIPTION_KEY_VARIABLE,
    API_USER_VARIABLE,
    API_KEY_VARIABLE,
)
#: with whom the callback URL's host is registered (the URL itself goes with each request)
REGISTRAR: Final = "MTN (its host: the API user's providerCallbackHost, or the Partner Portal)"

_ENVIRONMENT_TEXT: Final = re.compile(r"[a-z0-9]{2,40}")
_CURRENCY_TEXT: Final = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class MtnSettings:
    """MTN's block of the settings; the defaults are what an unset variable means."""

    #: MOMO_MTN_PATH_TOKEN: the secret path segment of the callback URL; None: MTN is not
    #: set up, its URL answers 404 and nothing about it is required or shown
    path_token: str | None = None
    #: MOMO_MTN_SUBSCRIPTION_KEY, _API_USER, _API_KEY: the collection product's
    #: subscription key and the API user and key; unset: no payment requests
    subscription_key: str | None = None
    api_user: str | None = None
    api_key: str | None = None
    #: MOMO_MTN_API_BASE
    api_base: str = SANDBOX
    #: MOMO_MTN_TARGET_ENVIRONMENT: "sandbox", or the live one MTN names ("mtnuganda")
    target_environment: str = SANDBOX_ENVIRONMENT
    #: MOMO_MTN_CURRENCY: what MTN collects in; must be MOMO_CURRENCY, the balances'
    currency: str = SANDBOX_CURRENCY
    #: how long MTN may take to answer one call
    timeouts: Timeouts = DEFAULT_TIMEOUTS

    @property
    def can_ask(self) -> bool:
        return bool(self.subscription_key and self.api_user and self.api_key)


def read_settings(env: Mapping[str, str]) -> MtnSettings:
    """MTN's block from the environment; ConfigError naming a variable that is wrong."""
    path_token = env.get(PATH_TOKEN_VARIABLE, "").strip() or None
    if path_token is not None:
        check_path_token(path_token, PATH_TOKEN_VARIABLE, REGISTRAR)
    given = {name: env.get(name, "").strip() for name in CREDENTIAL_VARIABLES}
    if any(given.values()):
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set, but "
                f"{', '.join(n for n in given if given[n])} is: MTN MoMo needs the collection "
                "product's subscription key (momodeveloper.mtn.com, Profile) and an API user "
                "and its key (the sandbox's provisioning API, or the Partner Portal when live)"
            )
        try:
            uuid.UUID(given[API_USER_VARIABLE])
        except ValueError:
            raise ConfigError(
                f"{API_USER_VARIABLE} is not an API user id: give the UUID the API user was "
                "created with, e.g. 0f4b6c5e-8a0d-4c1b-9a7e-3d2f1e0c9b8a"
            ) from None
    api_base = env.get(API_BASE_VARIABLE, "").strip().rstrip("/") or SANDBOX
    if not api_base.startswith(("https://", "http://")):
        raise ConfigError(
            f"{API_BASE_VARIABLE}={api_base!r} is not a URL; give {SANDBOX} (the sandbox, the "
            "default) or the live base MTN gave you (e.g. https://proxy.momoapi.mtn.com)"
        )
    environment = env.get(TARGET_ENVIRONMENT_VARIABLE, "").strip() or SANDBOX_ENVIRONMENT
    if not _ENVIRONMENT_TEXT.fullmatch(environment):
        raise ConfigError(
            f"{TARGET_ENVIRONMENT_VARIABLE}={environment!r} is not a target environment; give "
            f'"{SANDBOX_ENVIRONMENT}" (the default) or the live one MTN names, e.g. mtnuganda'
        )
    currency = env.get(CURRENCY_VARIABLE, "").strip().upper() or SANDBOX_CURRENCY
    if not _CURRENCY_TEXT.fullmatch(currency):
        raise ConfigError(
            f"{CURRENCY_VARIABLE}={currency!r} is not a currency code; give three letters, e.g. "
            f"UGX ({SANDBOX_CURRENCY} in the sandbox, the default)"
        )
    return MtnSettings(
        path_token=path_token,
        subscription_key=given[SUBSCRIPTION_KEY_VARIABLE] or None,
        api_user=given[API_USER_VARIABLE] or None,
        api_key=given[API_KEY_VARIABLE] or None,
        api_base=api_base,
        target_environment=environment,
        currency=currency,
    )


def settings_of(settings: Settings) -> MtnSettings:
    """MTN's block of ``settings``; the defaults when the settings carry none."""
    block: MtnSettings | None = settings.providers.get(PROVIDER)
    return MtnSettings() if block is None else block


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with MTN's block changed (e.g. ``path_token=...``)."""
    return settings.with_provider(PROVIDER, replace(settings_of(settings), **changes))


# --- the collection client ----------------------------------------------------------------


class Collection:
    """One API user's request-to-pay client; its token is shared by every thread."""

    def __init__(self, settings: MtnSettings, *, timeouts: Timeouts | None = None) -> None:
        if not settings.can_ask:
            raise ConfigError(f"MTN MoMo is not set up: set {', '.join(CREDENTIAL_VARIABLES)}")
        self.settings = settings
        timeouts = timeouts or settings.timeouts
        self.client = ProviderClient(
            PROVIDER, settings.api_base, timeouts=timeouts, token=TokenCache(self._token)
        )

    def close(self) -> None:
        self.client.close()

    def _headers(self, **extra: str) -> dict[str, str]:
        s = self.settings
        assert s.subscription_key is not None
        return {
            "Ocp-Apim-Subscription-Key": s.subscription_key,
            "X-Target-Environment": s.target_environment,
            **extra,
        }

    def _token(self) -> tuple[str, float]:
        s = self.settings
        assert s.api_user is not None and s.api_key is not None and s.subscription_key
        response = self.client.send(
            "POST",
            TOKEN_PATH,
            headers={"Ocp-Apim-Subscription-Key": s.subscription_key},
            auth=(s.api_user, s.api_key),
            bearer=False,
        )
        if response.status_code != 200:
            raise ProviderRefused(
                PROVIDER,
                f"MTN refused the credentials ({response.status_code}: {_error_words(response)}):"
                f" check {SUBSCRIPTION_KEY_VARIABLE}, {API_USER_VARIABLE} and {API_KEY_VARIABLE},"
                f" and that {API_BASE_VARIABLE} is the environment they belong to",
                status=response.status_code,
                reason="credentials_refused",
            )
        body = json_object(PROVIDER, response, "the token request")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise NoAnswer(PROVIDER, "the token answer holds no access_token")
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, lifetime

    def request_to_pay(self, ask: Ask, callback_url: str | None) -> Asked:
        """Prompt the payer, under the request's own reference. ProviderRefused: MTN said
        no; ProviderUnavailable: it never took it; NoAnswer: it may have (the request is
        then asked about, never sent again)."""
        reference = ask.reference
        if reference is None:  # our_reference gives every request one before it is sent
            raise ProviderRefused(
                PROVIDER,
                "the request has no X-Reference-Id; it was opened without one",
                status=422,
                reason="no_reference",
            )
        currency = self.settings.currency
        if ask.currency != currency:
            raise ProviderRefused(
                PROVIDER,
                f"MTN MoMo collects {currency} ({CURRENCY_VARIABLE}) but the request is in "
                f"{ask.currency} (MOMO_CURRENCY); set both to your MTN account's currency",
                status=422,
                reason="currency_mismatch",
            )
        body = {
            "amount": amount_text(ask.amount),
            "currency": currency,
            "externalId": reference,
            "payer": {"partyIdType": "MSISDN", "partyId": ask.phone.removeprefix("+")},
            "payerMessage": _note(f"Pay {ask.account_number}"),
            "payeeNote": _note(f"momo request {ask.request_id} {ask.account_number}"),
        }
        headers = self._headers(**{"X-Reference-Id": reference})
        if callback_url is not None:
            headers["X-Callback-Url"] = callback_url
        response = self.client.send("POST", PAY_PATH, json=body, headers=headers)
        if response.status_code == 409 and _error_code(response) == ALREADY_EXISTS:
            # MTN has this reference: an earlier attempt of ours that it took (a 5xx it
            # answered after taking it, retried). Never send again: ask what became of it.
            raise NoAnswer(
                PROVIDER,
                f"MTN already has a request-to-pay with X-Reference-Id {reference}; it is "
                "asked about instead of sent again",
            )
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code != 202:
            raise NoAnswer(
                PROVIDER,
                f"the request-to-pay answered {response.status_code}, not 202 Accepted: "
                f"{_error_words(response)}",
            )
        return Asked(reference=reference)

    def status(self, reference: str) -> RequestResult:
        """What MTN says of the request ("pending" while the payer has not answered).
        ProviderRefused for a reference MTN does not know; NoAnswer for an answer that
        is not MTN's shape."""
        response = self.client.send("GET", f"{PAY_PATH}/{reference}", headers=self._headers())
        if response.status_code >= 400:
            raise _refusal(response)
        body = json_object(PROVIDER, response, "the request-to-pay status")
        try:
            return parse_result(body, reference, verified=True)
        except InvalidCallback as exc:
            raise NoAnswer(
                PROVIDER, f"the request-to-pay status is not MTN's shape: {exc}"
            ) from None


def amount_text(amount: int) -> str:
    """MTN's amount: a decimal string, without a fraction when there is none."""
    whole, cents = divmod(amount, 100)
    return str(whole) if not cents else format_minor(amount)


def _note(text: str) -> str:
    # Reported: MTN refuses some punctuation in these texts. Keep what cannot offend.
    kept = "".join(c for c in text if c.isascii() and (c.isalnum() or c in " -_."))
    return kept[:30].strip() or "momo"


def _error_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _error_words(response: Any, limit: int = 200) -> str:
    text: str = response.text.strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")


def _refusal(response: Any) -> ProviderRefused:
    """MTN's error body ``{code, message}`` (or Azure's ``{statusCode, message}``) as a
    refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        return ProviderRefused(
            PROVIDER,
            body["message"],
            status=response.status_code,
            reason=code if isinstance(code, str) and code else str(response.status_code),
        )
    return ProviderRefused(
        PROVIDER,
        _error_words(response),
        status=response.status_code,
        reason=str(response.status_code),
    )


_clients: dict[MtnSettings, Collection] = {}
_clients_lock = threading.Lock()


def _collection(settings: Settings) -> Collection:
    """The process's one client per MTN set-up: its token is shared."""
    block = settings_of(settings)
    with _clients_lock:
        client = _clients.get(block)
        if client is None:
            client = _clients[block] = Collection(block)
        return client


# --- results: the status GET's body, and the callback that repeats it ---------------------

_REFERENCE_MAX: Final = column_length(PaymentRequest.provider_reference)
_REFERENCE_TEXT: Final = re.compile(r"[\x21-\x7e]+")
_TRANSACTION_TEXT: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PARTY_TEXT: Final = re.compile(r"\+?[1-9][0-9]{5,14}")


def parse_result(doc: dict[str, Any], reference: str, *, verified: bool) -> RequestResult:
    """A request-to-pay result (the status GET's body, or the callback's) as momo's.

    ``reference`` is the request's X-Reference-Id. A FAILED result's ``reason`` is a
    string ("APPROVAL_REJECTED") or, on older answers, an object {code, message};
    APPROVAL_REJECTED (the payer declined) is "cancelled".
    """
    status = doc.get("status")
    if not isinstance(status, str) or status.strip().upper() not in STATUSES:
        raise InvalidCallback(
            f"status {_show(status)} is not one of {', '.join(STATUSES)}", "invalid_status"
        )
    status = status.strip().upper()
    if status == PENDING:
        return RequestResult(
            provider=PROVIDER,
            reference=reference,
            state="pending",
            result_code=PENDING,
            result_description="the payer has not answered yet",
            channel=CHANNEL,
            verified=verified,
        )
    if status == FAILED:
        code, words = _reason(doc.get("reason"))
        state: RequestState = "cancelled" if code == APPROVAL_REJECTED else "failed"
        return RequestResult(
            provider=PROVIDER,
            reference=reference,
            state=state,
            result_code=code,
            result_description=words,
            channel=CHANNEL,
            verified=verified,
        )
    transaction = _transaction_id(doc.get("financialTransactionId"))
    currency = doc.get("currency")
    return RequestResult(
        provider=PROVIDER,
        reference=reference,
        state="paid",
        result_code=SUCCESSFUL,
        result_description=(
            f"paid, financial transaction {transaction}" if transaction else "paid"
        ),
        channel=CHANNEL,
        code=transaction,
        amount=parse_amount(doc.get("amount"), "amount"),
        currency=currency
        if isinstance(currency, str) and _CURRENCY_TEXT.fullmatch(currency)
        else None,
        msisdn=_payer(doc.get("payer")),
        verified=verified,
    )


def _reason(value: object) -> tuple[str, str]:
    """(code, words) of a failure reason: a string, or an object {code, message}."""
    if isinstance(value, dict):
        code, message = value.get("code"), value.get("message")
        code = code.strip() if isinstance(code, str) and code.strip() else "FAILED"
        words = message.strip() if isinstance(message, str) and message.strip() else code
        return code[:64], words
    if isinstance(value, str) and value.strip():
        return value.strip()[:64], value.strip()
    return FAILED, "MTN gave no reason"


def _transaction_id(value: object) -> str | None:
    """MTN's financialTransactionId, the payment's receipt; None when it names none (the
    payment is then kept under the request's reference)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and _TRANSACTION_TEXT.fullmatch(value.strip()):
        return value.strip()
    raise InvalidCallback(
        f"financialTransactionId {_show(value)} is not a transaction id (1-64 letters, digits,"
        " '.', '_' or '-')",
        "invalid_code",
    )


def _payer(value: object) -> Msisdn | None:
    """The payer's MSISDN: MTN writes it with its country code and no "+", so it is read
    as international, never in momo's default region. None when it is not such a
    number (the request's own phone then stands)."""
    if not isinstance(value, dict):
        return None
    party = value.get("partyId")
    if isinstance(party, int) and not isinstance(party, bool):
        party = str(party)
    if not isinstance(party, str) or not _PARTY_TEXT.fullmatch(party.strip()):
        return None
    digits = party.strip().removeprefix("+")
    msisdn = classify_msisdn("+" + digits)
    return msisdn if msisdn.kind == "phone" else None


def _reference(value: object) -> str:
    text = value.strip() if isinstance(value, str) else None
    if not text or not _REFERENCE_TEXT.fullmatch(text) or len(text) > _REFERENCE_MAX:
        raise InvalidCallback(
            f"externalId {_show(value)} is not a request reference (expected the UUID momo "
            "sent as X-Reference-Id and externalId)",
            "invalid_field",
        )
    return text


def _show(value: object) -> str:
    try:
        shown = json.dumps(value, default=str)
    except (TypeError, ValueError):
        shown = type(value).__name__
    return shown if len(shown) <= 60 else shown[:57] + "..."


# --- the adapter --------------------------------------------------------------------------


class MtnAdapter:
    """MTN MoMo callbacks in, momo values out; request-to-pay and its status out."""

    name: str = PROVIDER
    kinds: frozenset[str] = frozenset({CALLBACK})
    #: MTN's failure reasons are words, not numbers: a declined prompt is told by its
    #: reason (APPROVAL_REJECTED), in ``parse_result``
    cancelled_codes: frozenset[int] = frozenset()
    variables: tuple[str, ...] = (
        API_BASE_VARIABLE,
        SUBSCRIPTION_KEY_VARIABLE,
        API_USER_VARIABLE,
        API_KEY_VARIABLE,
        TARGET_ENVIRONMENT_VARIABLE,
        CURRENCY_VARIABLE,
        PATH_TOKEN_VARIABLE,
    )
    #: MTN calls back with PUT, and sometimes POST
    methods: frozenset[str] = frozenset({"PUT", "POST"})
    networks: frozenset[str] = NETWORKS
    registration: Registration = Registration(
        title="MTN MoMo",
        a_title="an MTN MoMo",
        registrar=REGISTRAR,
        token_variable=PATH_TOKEN_VARIABLE,
        token_file="mtn_path_token",  # noqa: S106 - a file name, not a secret
        optional=True,
    )

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> MtnSettings:
        return read_settings(env)

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
        # MTN signs nothing: the path token guards the URL, and no callback's word is
        # taken (parse: verified=False; MTN is asked before anything is settled)
        return None

    def rejects_unknown_accounts(self, settings: Settings) -> bool:
        return False

    def refusal(self, status: int, message: str, **extra: str) -> dict[str, Any]:
        return {"code": "REJECTED" if status < 500 else "UNAVAILABLE", "message": message, **extra}

    def receipt_code(self, reference: str) -> str | None:
        # MTN's financialTransactionIds are bare digits, which a phone number typed as a
        # reference also is: none is claimed as MTN's
        return None

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        """A request-to-pay callback, never trusted (``verified=False``): the request is
        found by ``externalId``, the UUID momo sent as X-Reference-Id."""
        if kind != CALLBACK:
            raise InvalidCallback(f"unknown callback kind {kind!r}", "unknown_kind")
        doc = decode_object(body)
        reference = _reference(doc.get("externalId"))
        return parse_result(doc, reference, verified=False)

    def acknowledge(self, kind: str) -> dict[str, Any]:
        return {}

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        return {}  # MTN asks for no validation

    # --- asking customers to pay (request to pay) -----------------------------------------

    def requests_missing(self, settings: Settings) -> list[str]:
        block = settings_of(settings)
        missing = [] if block.can_ask else list(CREDENTIAL_VARIABLES)
        if block.path_token is None:
            missing.append(PATH_TOKEN_VARIABLE)
        return missing

    def phone_region(self, settings: Settings) -> str:
        """Where a number written without its country code is read: MOMO_DEFAULT_REGION."""
        return settings.default_region

    def our_reference(self, request_id: int) -> str:
        """A fresh UUID: MTN knows the request by it from the start (X-Reference-Id and
        externalId); random, so two databases never send MTN the same one."""
        return str(uuid.uuid4())

    def callback_path(self, settings: Settings) -> str:
        return self.callback_paths(self.require_path_token(settings))[0]

    def ask(self, settings: Settings, ask: Ask) -> Asked:
        return _collection(settings).request_to_pay(ask, ask.callback_url)

    def query(self, settings: Settings, ask: Ask) -> RequestResult:
        if ask.reference is None:
            raise NoAnswer(PROVIDER, "the request has no X-Reference-Id to ask about")
        return _collection(settings).status(ask.reference)
