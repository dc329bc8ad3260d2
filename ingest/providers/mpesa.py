"""M-PESA (Safaricom Daraja): C2B confirmation and validation, and STK push results.

M-PESA's settings (``MOMO_MPESA_*``) are its own block, ``MpesaSettings``, read by
``MpesaAdapter.read_settings`` and found again with ``settings_of``.

``MpesaAdapter.parse`` turns a raw callback body into one of momo's frozen values or
raises ``InvalidCallback`` with a short reason; no other exception escapes it, and no
float ever holds an amount (JSON fractions are decoded as ``Decimal``).

``parse_amount`` and ``parse_local_time`` are shared by other adapters whose providers
write money and local times the same way.
"""

from __future__ import annotations

import decimal
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Final

from core.config import (
    ConfigError,
    IPNetwork,
    Settings,
    check_path_token,
    parse_networks,
)
from core.providers import NOT_ACCEPTED, ParseContext, Registration, require_path_token
from core.redact import WEBHOOK_PREFIX
from ingest.providers.daraja import APP_VARIABLES, Daraja, DarajaApp
from ingest.providers.json_body import decode_object, json_type
from ingest.providers.mpesa_express import (
    BUY_GOODS,
    CANCELLED_BY_USER,
    PAYBILL,
    SANDBOX,
    Express,
    ExpressSettings,
)
from ingest.providers.mpesa_initiator import (
    REVERSAL_PATH,
    STATUS_PATH,
    Initiator,
    reversal_body,
    status_body,
)
from ingest.providers.mpesa_initiator import send as send_initiator_call
from ingest.providers.mpesa_pull import CHANNEL as PULL_CHANNEL
from ingest.providers.mpesa_pull import PULL, Puller, not_a_payment, record_fields
from ingest.providers.mpesa_pull import SOURCE as PULL_SOURCE
from ingest.providers.mpesa_statement import CHANNEL as STATEMENT_CHANNEL
from ingest.providers.mpesa_statement import STATEMENT, ReversalFields, entry_fields
from ingest.providers.outbound import Accepted, Ask, Asked, NoAnswer
from matcher.models import PaymentAttempt
from matcher.notifications import (
    Callback,
    FailedAttempt,
    InvalidCallback,
    LookupResult,
    Msisdn,
    Notice,
    PaymentNotification,
    RequestResult,
    ReversalResult,
    ValidationRequest,
)
from matcher.phones import classify_msisdn
from matcher.text import column_length, storable

PROVIDER: Final = "mpesa"
C2B_CONFIRMATION: Final = "c2b/confirmation"
C2B_VALIDATION: Final = "c2b/validation"
STK: Final = "stk"
#: Transaction Status and Reversal results (and M-PESA giving up on them), posted to the
#: ResultURL and QueueTimeOutURL momo sends with each call
STATUS_RESULT: Final = "status/result"
STATUS_TIMEOUT: Final = "status/timeout"
REVERSAL_RESULT: Final = "reversal/result"
REVERSAL_TIMEOUT: Final = "reversal/timeout"
RESULT_KINDS: Final = (STATUS_RESULT, STATUS_TIMEOUT, REVERSAL_RESULT, REVERSAL_TIMEOUT)
#: the channel of a payment found by a Transaction Status lookup
LOOKUP_CHANNEL: Final = "lookup"
#: Transaction Status result codes that mean "no such transaction" (chosen: Safaricom's
#: pages list no code for it; R000002 is the Reversal API's "The OriginalTransactionID is
#: invalid"), so the lookup ends not_found; any other non-zero code ends it failed
NOT_FOUND_CODES: Final = frozenset({"R000002"})
#: a Reversal result code saying the transaction was reversed before (R000001)
ALREADY_REVERSED_CODES: Final = frozenset({"R000001"})
#: what a Transaction Status result says of a transaction that moved money
STATUS_COMPLETED: Final = "Completed"

#: The largest amount accepted, in major units (KES 1,000,000,000.00).
MAX_AMOUNT: Final = Decimal("1000000000.00")
_CENT: Final = Decimal("0.01")
# Our own context so the caller's thread-local decimal settings can never round money;
# 40 digits is far more than any amount that passed the MAX_AMOUNT check needs.
_MONEY: Final = decimal.Context(
    prec=40,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)

# Explicit ASCII classes: ``\d`` and ``str.isdigit`` also accept digits of other scripts.
_AMOUNT_TEXT: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_LOCAL_TIME_TEXT: Final = re.compile(r"[0-9]{14}")
# Matched before upper-casing: "ß".upper() == "SS" would otherwise sneak letters in.
_CODE_TEXT: Final = re.compile(r"[A-Za-z0-9]{1,32}")
_RESULT_CODE_TEXT: Final = re.compile(r"-?[0-9]{1,9}")
#: a result code as text: "0", "2001", "R000002", "SFC_IC0003"
_RESULT_TEXT: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
#: the same bound for a ResultCode sent as a JSON number: 9 digits fit the INTEGER column
_RESULT_CODE_MAX: Final = 999_999_999
#: no payment is older than this: a time before it is a broken clock or a broken sender
EARLIEST_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: how far ahead of this host's clock a provider's time may be (its clock, or ours, off)
CLOCK_SLACK: Final = timedelta(days=1)
# Daraja's request ids ("ws_CO_191220191020363925") are printable ASCII; an attempt is
# known by its CheckoutRequestID, so it must be kept whole, never cut or altered.
_REQUEST_ID_MAX: Final = column_length(PaymentAttempt.reference)
_REQUEST_ID_TEXT: Final = re.compile(r"[\x21-\x7e]+")

_AMOUNT_EXPECTED: Final = "expected a decimal string like '1500.00' or a JSON number"
_SHOWN_MAX: Final = 60

#: what a receipt code looks like: ten capital letters and digits, a letter first
#: (so a ten-digit phone number typed as a reference is not taken for a receipt)
RECEIPT: Final = re.compile(r"(?=.*[0-9])[A-Z][A-Z0-9]{9}")
#: STK result "Request cancelled by user"

#: The STK metadata items we read; a duplicate of one of these is ambiguous.
_STK_ITEMS: Final = frozenset({"Amount", "MpesaReceiptNumber", "TransactionDate", "PhoneNumber"})

# --- settings -----------------------------------------------------------------------------

PATH_TOKEN_VARIABLE: Final = "MOMO_MPESA_PATH_TOKEN"  # noqa: S105 - a variable name, not a secret
ALLOWED_IPS_VARIABLE: Final = "MOMO_MPESA_ALLOWED_IPS"
VALIDATION_VARIABLE: Final = "MOMO_MPESA_VALIDATION"
#: where M-PESA's callback URLs are registered
REGISTRAR: Final = "Safaricom"
#: what the callback URLs carry after /webhooks/: Daraja refuses to register a URL holding
#: "mpesa" (``daraja_url_problem``); /webhooks/mpesa/... keeps working for URLs registered
#: before
URL_NAME: Final = "daraja"
#: words Daraja refuses anywhere in a C2B URL, in any case
DARAJA_REFUSED_WORDS: Final = ("mpesa", "m-pesa", "safaricom", "exec", "exe", "cmd", "sql", "query")


def refused_word(text: str) -> str | None:
    """The first word of ``DARAJA_REFUSED_WORDS`` that ``text`` holds, in any case."""
    lowered = text.lower()
    return next((word for word in DARAJA_REFUSED_WORDS if word in lowered), None)


def daraja_url_problem(url: str, *, sandbox: bool = False) -> str | None:
    """Why Daraja would refuse to register ``url`` as a C2B confirmation or validation
    URL (a word it refuses, or plain http outside the sandbox), or None when it takes it."""
    word = refused_word(url)
    if word is not None:
        return f"{url!r} holds {word!r}, which Daraja refuses in a callback URL"
    if not sandbox and not url.lower().startswith("https://"):
        return f"{url!r} is not https; Daraja takes plain http only in the sandbox"
    return None


def webhook_path(token: str, kind: str) -> str:
    """Where Daraja posts callbacks of ``kind`` for the path token ``token``."""
    return f"{WEBHOOK_PREFIX}{URL_NAME}/{token}/{kind}"


VALIDATION_MODES: Final = ("accept", "reject-unknown-account")


@dataclass(frozen=True)
class MpesaSettings:
    """M-PESA's block of the settings; the defaults are what an unset variable means."""

    #: MOMO_MPESA_PATH_TOKEN: the secret path segment of the callback URLs; None: every
    #: callback is refused, and no web process starts
    path_token: str | None = None
    #: MOMO_MPESA_ALLOWED_IPS: the addresses callbacks may come from; empty: any address
    allowed_ips: tuple[IPNetwork, ...] = ()
    #: MOMO_MPESA_VALIDATION: "accept", or "reject-unknown-account"
    validation: str = "accept"
    #: MOMO_MPESA_PASSKEY with the app: the shortcode asks customers to pay (M-PESA
    #: Express); unset: no payment requests
    express: ExpressSettings | None = None
    #: MOMO_MPESA_CONSUMER_KEY / _SECRET / _SHORTCODE (/ _API_BASE): the Daraja app momo
    #: talks to Daraja with (URL registration, pulls, lookups, reversals); unset: none of
    #: those. Given only ``express``, its app.
    app: DarajaApp | None = None
    #: MOMO_MPESA_PULL_EVERY_MINUTES: how often beat pulls the shortcode's transactions
    #: (Pull Transactions); None: only by hand (``momo mpesa pull``)
    pull_every_minutes: int | None = None
    #: MOMO_MPESA_INITIATOR_NAME / _SECURITY_CREDENTIAL: the API operator that asks
    #: Transaction Status and Reversal; unset: no lookups, no reversals
    initiator: Initiator | None = None

    @property
    def daraja_app(self) -> DarajaApp | None:
        if self.app is not None:
            return self.app
        return None if self.express is None else self.express.app


#: M-PESA Express: every one is needed before momo asks anyone to pay
EXPRESS_VARIABLES: Final = (*APP_VARIABLES, "MOMO_MPESA_PASSKEY")
API_BASE_VARIABLE: Final = "MOMO_MPESA_API_BASE"
TRANSACTION_TYPE_VARIABLE: Final = "MOMO_MPESA_TRANSACTION_TYPE"
PARTY_B_VARIABLE: Final = "MOMO_MPESA_PARTY_B"
PULL_EVERY_VARIABLE: Final = "MOMO_MPESA_PULL_EVERY_MINUTES"

#: Transaction Status and Reversal: both are needed before momo asks either
INITIATOR_VARIABLES: Final = ("MOMO_MPESA_INITIATOR_NAME", "MOMO_MPESA_SECURITY_CREDENTIAL")


def _read_initiator(env: Mapping[str, str]) -> Initiator | None:
    name = env.get(INITIATOR_VARIABLES[0], "").strip()
    credential = env.get(INITIATOR_VARIABLES[1], "").strip()
    if not name and not credential:
        return None
    if not name or not credential:
        given, missing = (
            INITIATOR_VARIABLES if name else (INITIATOR_VARIABLES[1], INITIATOR_VARIABLES[0])
        )
        raise ConfigError(
            f"{missing} not set, but {given} is: M-PESA lookups and reversals need the "
            "initiator's name and its security credential (the initiator password "
            "encrypted with Safaricom's certificate, from the Daraja portal)"
        )
    return Initiator(name=name, security_credential=credential)


def _read_app(env: Mapping[str, str]) -> DarajaApp | None:
    """The Daraja app, when its key, secret and shortcode are set (all or none)."""
    given = {name: env.get(name, "").strip() for name in APP_VARIABLES}
    passkey = env.get("MOMO_MPESA_PASSKEY", "").strip()
    if not any(given.values()):
        if passkey:
            raise ConfigError(
                f"MOMO_MPESA_PASSKEY is set but {', '.join(APP_VARIABLES)} are not: M-PESA "
                "Express needs the Daraja app's consumer key and secret and the shortcode "
                "too (Daraja portal, My Apps and Go Live)"
            )
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set, but {', '.join(n for n in given if given[n])} "
            "is: talking to Daraja needs the app's consumer key and secret and the "
            "shortcode (Daraja portal, My Apps and Go Live)"
        )
    shortcode = given["MOMO_MPESA_SHORTCODE"]
    if not shortcode.isdigit():
        raise ConfigError(
            f"MOMO_MPESA_SHORTCODE={shortcode!r} is not a shortcode; give its digits, e.g. 174379"
        )
    api_base = env.get(API_BASE_VARIABLE, "").strip().rstrip("/") or SANDBOX
    if not api_base.startswith(("https://", "http://")):
        raise ConfigError(
            f"{API_BASE_VARIABLE}={api_base!r} is not a URL; give {SANDBOX} (the sandbox, "
            "the default) or https://api.safaricom.co.ke (live)"
        )
    return DarajaApp(
        consumer_key=given["MOMO_MPESA_CONSUMER_KEY"],
        consumer_secret=given["MOMO_MPESA_CONSUMER_SECRET"],
        shortcode=shortcode,
        api_base=api_base,
    )


def _read_express(env: Mapping[str, str], app: DarajaApp | None) -> ExpressSettings | None:
    """M-PESA Express: the app and the shortcode's passkey; None without the passkey."""
    passkey = env.get("MOMO_MPESA_PASSKEY", "").strip()
    if app is None or not passkey:
        return None
    transaction_type = env.get(TRANSACTION_TYPE_VARIABLE, "").strip() or PAYBILL
    if transaction_type not in (PAYBILL, BUY_GOODS):
        raise ConfigError(
            f"{TRANSACTION_TYPE_VARIABLE}={transaction_type!r} is not one of: {PAYBILL}, "
            f"{BUY_GOODS}"
        )
    party_b = env.get(PARTY_B_VARIABLE, "").strip() or None
    if party_b is not None and not party_b.isdigit():
        raise ConfigError(
            f"{PARTY_B_VARIABLE}={party_b!r} is not a till or shortcode; give its digits"
        )
    return ExpressSettings(
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
        shortcode=app.shortcode,
        passkey=passkey,
        api_base=app.api_base,
        transaction_type=transaction_type,
        party_b=party_b,
    )


def read_settings(env: Mapping[str, str]) -> MpesaSettings:
    """M-PESA's block from the environment; ConfigError naming a variable that is wrong."""
    validation = env.get(VALIDATION_VARIABLE, "accept").strip() or "accept"
    if validation not in VALIDATION_MODES:
        raise ConfigError(
            f"{VALIDATION_VARIABLE}={validation!r} is not one of: {', '.join(VALIDATION_MODES)}"
        )
    path_token = env.get(PATH_TOKEN_VARIABLE, "").strip() or None
    if path_token is not None:
        check_path_token(path_token, PATH_TOKEN_VARIABLE, REGISTRAR)
    allowed_ips = parse_networks(
        env.get(ALLOWED_IPS_VARIABLE, ""),
        ALLOWED_IPS_VARIABLE,
        "196.201.214.0/24,196.201.213.114",
    )
    app = _read_app(env)
    express = _read_express(env, app)
    return MpesaSettings(
        path_token=path_token,
        allowed_ips=allowed_ips,
        validation=validation,
        app=app,
        express=express,
        pull_every_minutes=_read_pull_every(env, app),
        initiator=_read_initiator(env),
    )


def _read_pull_every(env: Mapping[str, str], app: DarajaApp | None) -> int | None:
    """MOMO_MPESA_PULL_EVERY_MINUTES: a positive whole number of minutes, or unset."""
    raw = env.get(PULL_EVERY_VARIABLE, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"{PULL_EVERY_VARIABLE}={raw!r} is not a whole number of minutes of at least 1; "
            "give e.g. 15, or leave it unset to pull only by hand (momo mpesa pull)"
        )
    if app is None:
        raise ConfigError(
            f"{PULL_EVERY_VARIABLE} is set but {', '.join(APP_VARIABLES)} are not: pulling "
            "asks Daraja, which needs the app's consumer key and secret and the shortcode"
        )
    return int(raw)


def settings_of(settings: Settings) -> MpesaSettings:
    """M-PESA's block of ``settings``; the defaults when the settings carry none."""
    block: MpesaSettings | None = settings.providers.get(PROVIDER)
    return MpesaSettings() if block is None else block


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with M-PESA's block changed (e.g. ``path_token=...``)."""
    return settings.with_provider(PROVIDER, replace(settings_of(settings), **changes))


_apps: dict[DarajaApp, Daraja] = {}
_clients: dict[ExpressSettings, Express] = {}
_clients_lock = threading.Lock()


def daraja(settings: Settings) -> Daraja:
    """The process's one client per Daraja app: every call of that app shares its token."""
    app = settings_of(settings).daraja_app
    if app is None:
        raise ConfigError(f"no Daraja app is set up: set {', '.join(APP_VARIABLES)}")
    with _clients_lock:
        client = _apps.get(app)
        if client is None:
            client = _apps[app] = Daraja(app)
        return client


def pull_every(settings: Settings) -> int | None:
    """Minutes between scheduled pulls of the shortcode's transactions; None: off."""
    block = settings_of(settings)
    return block.pull_every_minutes if block.daraja_app is not None else None


def puller(settings: Settings) -> Puller:
    """Pull Transactions for the shortcode, on the process's Daraja client."""
    return Puller(daraja(settings), settings.zone)


def pull_callback_url(settings: Settings) -> str:
    """Where Daraja is told to post about pulls: under momo's public URL, beside the other
    M-PESA callbacks. ConfigError when the public URL or the path token is not set."""
    if not settings.public_url:
        raise ConfigError(
            "MOMO_PUBLIC_URL is not set: Daraja needs the https address it reaches momo at"
        )
    token = MpesaAdapter().require_path_token(settings)
    return settings.public_url.rstrip("/") + webhook_path(token, PULL)


def _express(settings: Settings) -> Express:
    """The process's one Express client per shortcode set-up, on its app's client."""
    block = settings_of(settings).express
    if block is None:
        raise ConfigError(f"M-PESA Express is not set up: set {', '.join(EXPRESS_VARIABLES)}")
    shared = daraja(settings)
    with _clients_lock:
        client = _clients.get(block)
        if client is None:
            client = _clients[block] = Express(block, daraja=shared)
        return client


def _initiator(settings: Settings) -> tuple[Daraja, Initiator]:
    """The Daraja app's client (its token shared with every other call) and the initiator
    that signs Transaction Status and Reversal calls."""
    block = settings_of(settings)
    if block.initiator is None:
        raise ConfigError(
            f"M-PESA lookups and reversals are not set up: set {', '.join(INITIATOR_VARIABLES)}"
        )
    return daraja(settings), block.initiator


# --- the adapter --------------------------------------------------------------------------


class MpesaAdapter:
    """Daraja callbacks in, momo values out; Daraja's own acknowledgement formats back."""

    name: str = PROVIDER
    #: ``pull``: what Daraja posts to the pull CallBackURL (``momo mpesa pull register``)
    kinds: frozenset[str] = frozenset({C2B_CONFIRMATION, C2B_VALIDATION, STK, PULL, *RESULT_KINDS})
    cancelled_codes: frozenset[int] = frozenset({CANCELLED_BY_USER})
    variables: tuple[str, ...] = (
        PATH_TOKEN_VARIABLE,
        ALLOWED_IPS_VARIABLE,
        VALIDATION_VARIABLE,
        *EXPRESS_VARIABLES,
        API_BASE_VARIABLE,
        TRANSACTION_TYPE_VARIABLE,
        PARTY_B_VARIABLE,
        PULL_EVERY_VARIABLE,
        *INITIATOR_VARIABLES,
    )
    methods: frozenset[str] = frozenset({"POST"})
    #: the networks whose subscribers M-PESA Express prompts (phonenumbers' carrier names)
    networks: frozenset[str] = frozenset({"Safaricom"})
    registration: Registration = Registration(
        title="M-PESA",
        a_title="an M-PESA",
        registrar=REGISTRAR,
        token_variable=PATH_TOKEN_VARIABLE,
        token_file="mpesa_path_token",  # noqa: S106 - a file name, not a secret
        url_name=URL_NAME,
    )

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> MpesaSettings:
        return read_settings(env)

    def path_token(self, settings: Settings) -> str | None:
        return settings_of(settings).path_token

    def require_path_token(self, settings: Settings) -> str:
        """The token, when it is set and strong enough to guard the callback URLs."""
        return require_path_token(settings_of(settings).path_token, self.registration)

    def with_path_token(self, settings: Settings, token: str) -> Settings:
        return with_settings(settings, path_token=token)

    def callback_paths(self, token: str) -> tuple[str, ...]:
        """Confirmation and validation (C2B), STK push results, then the Transaction
        Status and Reversal result and timeout URLs."""
        kinds = (C2B_CONFIRMATION, C2B_VALIDATION, STK, *RESULT_KINDS)
        return tuple(webhook_path(token, kind) for kind in kinds)

    def allowed_networks(self, settings: Settings) -> tuple[IPNetwork, ...]:
        return settings_of(settings).allowed_ips

    def signature_problem(
        self, settings: Settings, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        return None  # Daraja signs nothing: the path token and the allow-list guard it

    # --- asking customers to pay (M-PESA Express) ------------------------------------------

    def requests_missing(self, settings: Settings) -> list[str]:
        block = settings_of(settings)
        missing = [] if block.express is not None else list(EXPRESS_VARIABLES)
        return missing if block.path_token else [PATH_TOKEN_VARIABLE, *missing]

    def phone_region(self, settings: Settings) -> str:
        """Where a number written without its country code is read: MOMO_DEFAULT_REGION."""
        return settings.default_region

    def our_reference(self, request_id: int) -> str | None:
        return None  # Daraja names the request (CheckoutRequestID)

    def callback_path(self, settings: Settings) -> str:
        return webhook_path(self.require_path_token(settings), STK)

    def ask(self, settings: Settings, ask: Ask) -> Asked:
        return _express(settings).push(ask)

    def query(self, settings: Settings, ask: Ask) -> RequestResult:
        if ask.reference is None:
            raise NoAnswer(PROVIDER, "Daraja never named this request, so it cannot be asked")
        return _express(settings).query(ask.reference)

    # --- reconciling: Transaction Status lookups and Reversals ---------------------------

    def reconcile_missing(self, settings: Settings) -> list[str]:
        """The settings still needed before lookups and reversals (variable names)."""
        block = settings_of(settings)
        missing = [] if block.path_token else [PATH_TOKEN_VARIABLE]
        if block.daraja_app is None:
            missing.extend(APP_VARIABLES)
        if block.initiator is None:
            missing.extend(INITIATOR_VARIABLES)
        return missing

    def _result_urls(self, settings: Settings, what: str) -> tuple[str, str]:
        base = (settings.public_url or "").rstrip("/")
        root = base + webhook_path(self.require_path_token(settings), what)
        return f"{root}/result", f"{root}/timeout"

    def look_up(self, settings: Settings, code: str) -> Accepted:
        """Ask Transaction Status about ``code``; its result is posted to status/result."""
        app, initiator = _initiator(settings)
        result_url, timeout_url = self._result_urls(settings, "status")
        body = status_body(initiator, app.app.shortcode, code, result_url, timeout_url)
        return send_initiator_call(app, STATUS_PATH, body, "the Transaction Status call")

    def reverse(self, settings: Settings, code: str, amount: int, remarks: str) -> Accepted:
        """Ask Reversal to give payment ``code`` back; its result is posted to
        reversal/result."""
        app, initiator = _initiator(settings)
        result_url, timeout_url = self._result_urls(settings, "reversal")
        shortcode = app.app.shortcode
        body = reversal_body(initiator, shortcode, code, amount, result_url, timeout_url, remarks)
        return send_initiator_call(app, REVERSAL_PATH, body, "the Reversal call")

    def rejects_unknown_accounts(self, settings: Settings) -> bool:
        return settings_of(settings).validation == "reject-unknown-account"

    def refusal(self, status: int, message: str, **extra: str) -> dict[str, Any]:
        """Daraja's error shape, whatever the status: ResultCode 1 and the reason."""
        return _refusal(message, **extra)

    def receipt_code(self, reference: str) -> str | None:
        """The receipt code ``reference`` names (any case), or None if it is not one."""
        code = reference.strip().upper()
        return code if RECEIPT.fullmatch(code) else None

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        """Return the callback ``body`` describes, or raise InvalidCallback.

        A C2B confirmation, a successful STK result, a statement row (kind
        ``statement``: stored by ``momo mpesa import-statement``, never posted, so not one
        of ``kinds``) and a pulled record (kind ``pull``: stored by a pull) give a
        ``PaymentNotification``, a
        C2B validation a ``ValidationRequest``, an unsuccessful STK result a
        ``FailedAttempt``, and anything else Daraja posts to the pull CallBackURL a
        ``Notice`` (acknowledged, not kept). Unknown keys are ignored; anything else
        that is not Daraja's shape raises ``InvalidCallback`` and never another exception.
        """
        if kind == STATEMENT:
            return _parse_statement(body, ctx)
        if kind == PULL:
            doc = decode_object(body)
            why = not_a_payment(doc)
            if why is not None:
                return Notice(PROVIDER, kind, why)
            return _parse_pull(doc, ctx)
        if kind in RESULT_KINDS:
            return _parse_result(kind, decode_object(body), ctx)
        if kind not in self.kinds:
            expected = ", ".join(sorted(self.kinds))
            raise InvalidCallback(
                f"unknown M-PESA callback kind {kind!r}; expected one of {expected}",
                "unknown_kind",
            )
        doc = decode_object(body)
        if kind == STK:
            return _parse_stk(doc, ctx)
        if kind == C2B_VALIDATION:
            return _parse_validation(doc, ctx)
        return _parse_confirmation(doc, ctx)

    def acknowledge(self, kind: str) -> dict[str, Any]:
        """Daraja's "received" answer; the same for every kind, a fresh dict each call."""
        return {"ResultCode": 0, "ResultDesc": "Accepted"}

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        """Daraja's answer to a validation request.

        A rejection uses C2B00012 ("invalid account number"), the only reason momo
        refuses a payment before it happens.
        """
        if accepted:
            return {"ResultCode": "0", "ResultDesc": "Accepted"}
        return {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}


def _refusal(message: str, **extra: str) -> dict[str, Any]:
    return {"ResultCode": 1, "ResultDesc": message, **extra}


#: the answer while neither the inbox nor the spool can keep a callback
UNAVAILABLE: Final = _refusal(NOT_ACCEPTED)


# --- shared helpers -----------------------------------------------------------------------


def parse_amount(value: object, field: str = "amount") -> int:
    """Return ``value`` exactly, in integer minor units (hundredths).

    Accepted: a plain decimal string ("1500", "1500.00", surrounding whitespace ignored),
    a JSON integer, or a JSON fraction decoded as ``Decimal`` (which may use exponent
    notation: the JSON number ``1e3`` is exactly 1000). The amount must be greater than
    zero, have at most two decimal places (trailing zeros beyond them are fine) and be at
    most 1,000,000,000.00.

    Refused with ``InvalidCallback`` reason ``invalid_amount`` naming ``field`` and the
    value: booleans, floats, signs, thousands separators, exponents inside strings
    ("1e3"), NaN and infinities, and every other JSON type.
    """
    amount: Decimal
    if isinstance(value, bool):  # bool is an int subclass: true must not become 1.00
        raise _bad_amount(field, value, f"is a boolean; {_AMOUNT_EXPECTED}")
    if isinstance(value, str):
        text = value.strip()
        # Strings are the format Daraja sends ("1500.00"); anything fancier in a string
        # (sign, separator, exponent) is a sign of a broken sender, not a number to guess.
        if not _AMOUNT_TEXT.fullmatch(text):
            raise _bad_amount(
                field,
                value,
                "is not a plain decimal number like '1500.00' "
                "(digits with an optional point; no sign, separators or exponent)",
            )
        amount = Decimal(text)
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, float):
        raise _bad_amount(field, value, "is a float, which cannot hold money exactly")
    else:
        raise _bad_amount(field, value, f"is {json_type(value)}; {_AMOUNT_EXPECTED}")

    if not amount.is_finite():
        raise _bad_amount(field, value, "is not a finite number")
    if amount <= 0:
        raise _bad_amount(field, value, "must be greater than zero")
    if amount > MAX_AMOUNT:
        raise _bad_amount(field, value, f"is more than the maximum {MAX_AMOUNT}")
    try:
        cents = amount.quantize(_CENT, context=_MONEY)
        if cents != amount:
            raise _bad_amount(field, value, "has more than two decimal places")
        return int(cents.scaleb(2, context=_MONEY))
    except decimal.DecimalException:  # unreachable within the bounds above; kept as a net
        raise _bad_amount(field, value, "is not a representable amount") from None


def parse_local_time(value: object, tz: tzinfo, field: str = "TransTime") -> datetime:
    """Return the instant ``value`` names, as an aware UTC datetime.

    ``value`` is wall-clock time in ``tz`` written ``YYYYMMDDHHMMSS``, as a string
    (surrounding whitespace ignored) or a JSON integer (Daraja's STK callbacks send one).
    A wall-clock time that a DST change makes ambiguous resolves to its first occurrence.
    Anything else, a time no calendar has, or one no payment can have (before
    ``EARLIEST_TIME`` or more than ``CLOCK_SLACK`` after now: year 0001 and 9999 are
    storable, and would put money in reports for those years) raises ``InvalidCallback``
    reason ``invalid_time``.
    """
    expected = "expected local time written YYYYMMDDHHMMSS"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidCallback(
            f"{field} {_show(value)} is {json_type(value)}; {expected}", "invalid_time"
        )
    if isinstance(value, int) and not 0 <= value < 10**14:
        raise InvalidCallback(
            f"{field} {_show(value)} is not 14 digits; {expected}", "invalid_time"
        )
    # No zero-padding of integers: a 13-digit number is a broken time, not year 0xxx.
    text = value.strip() if isinstance(value, str) else str(value)
    if not _LOCAL_TIME_TEXT.fullmatch(text):
        raise InvalidCallback(
            f"{field} {_show(value)} is not 14 digits; {expected}", "invalid_time"
        )
    try:
        local = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            tzinfo=tz,
        )
        instant = local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidCallback(
            f"{field} {_show(value)} is not a real time ({exc})", "invalid_time"
        ) from None
    latest = datetime.now(UTC) + CLOCK_SLACK
    if not EARLIEST_TIME <= instant <= latest:
        raise InvalidCallback(
            f"{field} {_show(value)} is {instant.isoformat()}, not a time a payment can have "
            f"(expected from {EARLIEST_TIME.date().isoformat()} to a day after now); "
            "the sender's clock or encoding is wrong",
            "invalid_time",
        )
    return instant


# --- C2B ----------------------------------------------------------------------------------


def _parse_confirmation(doc: dict[str, Any], ctx: ParseContext) -> PaymentNotification:
    return PaymentNotification(
        provider=PROVIDER,
        channel="c2b",
        code=_code(_required(doc, "TransID"), "TransID", allow_empty=False),
        amount=parse_amount(_required(doc, "TransAmount"), "TransAmount"),
        currency=ctx.currency,
        paid_at=parse_local_time(_required(doc, "TransTime"), ctx.timezone, "TransTime"),
        msisdn=_msisdn(doc.get("MSISDN"), "MSISDN", ctx),
        payer_name=_payer_name(doc),
        # Kept exactly as typed (case, spaces): matching trims, the operator sees the truth.
        account_reference=_optional_text(doc, "BillRefNumber", allow_int=True),
        business_short_code=_optional_text(doc, "BusinessShortCode", allow_int=True),
        transaction_type=_optional_text(doc, "TransactionType"),
    )


def _parse_validation(doc: dict[str, Any], ctx: ParseContext) -> ValidationRequest:
    # Daraja may validate before it has assigned a transaction id, so TransID may be
    # empty here; TransTime is not needed to decide.
    return ValidationRequest(
        provider=PROVIDER,
        code=_code(_required(doc, "TransID"), "TransID", allow_empty=True),
        amount=parse_amount(_required(doc, "TransAmount"), "TransAmount"),
        currency=ctx.currency,
        msisdn=_msisdn(doc.get("MSISDN"), "MSISDN", ctx),
        account_reference=_optional_text(doc, "BillRefNumber", allow_int=True),
        business_short_code=_optional_text(doc, "BusinessShortCode", allow_int=True),
    )


def _payer_name(doc: dict[str, Any]) -> str | None:
    words: list[str] = []
    for key in ("FirstName", "MiddleName", "LastName"):
        part = _optional_text(doc, key)
        if part is not None:
            words.extend(part.split())
    return " ".join(words) or None


def _parse_statement(body: bytes, ctx: ParseContext) -> PaymentNotification | ReversalResult:
    """A row of the portal's statement, read with the same field rules as a confirmation;
    a reversal row names the receipt it reversed."""
    fields = entry_fields(body)
    if isinstance(fields, ReversalFields):
        return ReversalResult(
            provider=PROVIDER,
            state="reversed",
            result_code="0",
            result_description=fields.details,
            original_code=_code(fields.original_receipt, "Details", allow_empty=False),
            receipt=_code(fields.receipt, "Receipt No.", allow_empty=False),
            amount=parse_amount(fields.amount, "Withdrawn"),
            reversed_at=parse_local_time(fields.local_time, ctx.timezone, "Completion Time"),
            source="statement",
        )
    return PaymentNotification(
        provider=PROVIDER,
        channel=STATEMENT_CHANNEL,
        code=_code(fields.receipt, "Receipt No.", allow_empty=False),
        amount=parse_amount(fields.amount, "Paid In"),
        currency=ctx.currency,
        paid_at=parse_local_time(fields.local_time, ctx.timezone, "Completion Time"),
        msisdn=_msisdn(fields.number, "Other Party Info", ctx),
        payer_name=fields.payer_name,
        account_reference=fields.account,
        source="statement",
    )


def _parse_pull(doc: dict[str, Any], ctx: ParseContext) -> PaymentNotification:
    """A record of Pull Transactions, read with the same field rules as a confirmation."""
    fields = record_fields(doc)
    return PaymentNotification(
        provider=PROVIDER,
        channel=PULL_CHANNEL,
        code=_code(fields.receipt, "transactionId", allow_empty=False),
        amount=parse_amount(fields.amount, "amount"),
        currency=ctx.currency,
        paid_at=parse_local_time(fields.local_time, fields.zone or ctx.timezone, "trxDate"),
        msisdn=_msisdn(fields.number, "msisdn", ctx),
        payer_name=fields.payer_name,
        account_reference=_optional_text(
            {"billreference": fields.account}, "billreference", allow_int=True
        ),
        source=PULL_SOURCE,
    )


# --- Transaction Status and Reversal results ----------------------------------------------


def _parse_result(kind: str, doc: dict[str, Any], ctx: ParseContext) -> Callback:
    """A result posted to a ResultURL or QueueTimeOutURL: ``{"Result": {ResultType,
    ResultCode, ResultDesc, OriginatorConversationID, ConversationID, TransactionID,
    ResultParameters: {ResultParameter: [{Key, Value}, ...]}, ReferenceData}}``."""
    result = _required_object(doc, "Result", "")
    where = "Result."
    originator = _conversation_id(result, "OriginatorConversationID", where)
    conversation = _conversation_id(result, "ConversationID", where)
    if originator is None and conversation is None:
        raise InvalidCallback(
            f"{where}ConversationID and {where}OriginatorConversationID are both missing: "
            "nothing says which request this answers",
            "missing_field",
        )
    description = storable(_optional_text(result, "ResultDesc", where) or "")
    timed_out = kind in (STATUS_TIMEOUT, REVERSAL_TIMEOUT)
    raw_code = result.get("ResultCode")
    if raw_code is None and not timed_out:
        raise InvalidCallback(
            f"required field {where}ResultCode is missing or null", "missing_field"
        )
    code = "timeout" if raw_code is None else _result_text(raw_code, where + "ResultCode")
    if kind == STATUS_TIMEOUT:
        return LookupResult(
            provider=PROVIDER,
            originator_id=originator,
            conversation_id=conversation,
            state="timed_out",
            result_code=code,
            result_description=description or "M-PESA gave up on the lookup (queue timeout)",
        )
    if kind == REVERSAL_TIMEOUT:
        return ReversalResult(
            provider=PROVIDER,
            state="timed_out",
            result_code=code,
            result_description=description or "M-PESA gave up on the reversal (queue timeout)",
            originator_id=originator,
            conversation_id=conversation,
        )
    params = _result_parameters(result, where)
    if kind == STATUS_RESULT:
        return _status_result(originator, conversation, code, description, params, ctx)
    return _reversal_result(result, originator, conversation, code, description, params, ctx)


def _status_result(
    originator: str | None,
    conversation: str | None,
    code: str,
    description: str,
    params: dict[str, list[Any]],
    ctx: ParseContext,
) -> LookupResult:
    def ended(state: Any, words: str) -> LookupResult:
        return LookupResult(
            provider=PROVIDER,
            originator_id=originator,
            conversation_id=conversation,
            state=state,
            result_code=code,
            result_description=words,
        )

    if code != "0":
        return ended("not_found" if code in NOT_FOUND_CODES else "failed", description)
    status = _parameter(params, "TransactionStatus")
    if status is not None and str(status).strip() != STATUS_COMPLETED:
        return ended("not_found", f"the transaction is {str(status).strip()!r}, not completed")
    receipt = _code(_required_parameter(params, "ReceiptNo"), "ReceiptNo", allow_empty=False)
    when = _parameter(params, "FinalisedTime")
    if when is None or str(when).strip() == "":
        when = _required_parameter(params, "InitiatedTime")
        field = "InitiatedTime"
    else:
        field = "FinalisedTime"
    number, name = _party(params.get("DebitPartyName", []))
    payment = PaymentNotification(
        provider=PROVIDER,
        channel=LOOKUP_CHANNEL,
        code=receipt,
        amount=parse_amount(_required_parameter(params, "Amount"), "Amount"),
        currency=ctx.currency,
        paid_at=parse_local_time(when, ctx.timezone, field),
        msisdn=_msisdn(number, "DebitPartyName", ctx),
        payer_name=name,
        source="lookup",
    )
    return LookupResult(
        provider=PROVIDER,
        originator_id=originator,
        conversation_id=conversation,
        state="found",
        result_code=code,
        result_description=description,
        payment=payment,
    )


def _reversal_result(
    result: dict[str, Any],
    originator: str | None,
    conversation: str | None,
    code: str,
    description: str,
    params: dict[str, list[Any]],
    ctx: ParseContext,
) -> ReversalResult:
    if code != "0" and code not in ALREADY_REVERSED_CODES:
        return ReversalResult(
            provider=PROVIDER,
            state="failed",
            result_code=code,
            result_description=description,
            originator_id=originator,
            conversation_id=conversation,
        )
    original = _parameter(params, "OriginalTransactionID")
    amount = _parameter(params, "Amount")
    completed = _parameter(params, "TransCompletedTime")
    receipt = None if code != "0" else result.get("TransactionID")
    return ReversalResult(
        provider=PROVIDER,
        state="reversed",
        result_code=code,
        result_description=description,
        originator_id=originator,
        conversation_id=conversation,
        original_code=(
            None
            if original is None
            else _code(original, "OriginalTransactionID", allow_empty=False)
        ),
        receipt=None
        if receipt is None
        else _code(receipt, "Result.TransactionID", allow_empty=False),
        amount=None if amount is None else parse_amount(amount, "Amount"),
        reversed_at=(
            None
            if completed is None
            else parse_local_time(completed, ctx.timezone, "TransCompletedTime")
        ),
    )


def _optional_code(value: object, field: str) -> str | None:
    return None if value is None else _code(value, field, allow_empty=False)


def _conversation_id(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not _REQUEST_ID_TEXT.fullmatch(value.strip()):
        raise InvalidCallback(
            f"{where}{key} {_show(value)} is not a conversation id (expected printable ASCII "
            "without spaces, like 'AG_20180223_0000493344ae97d86f75')",
            "invalid_field",
        )
    if len(value.strip()) > _REQUEST_ID_MAX:
        raise InvalidCallback(
            f"{where}{key} {_show(value)} is longer than {_REQUEST_ID_MAX} characters",
            "invalid_field",
        )
    return value.strip()


def _result_text(value: object, field: str) -> str:
    """A ResultCode: Daraja sends numbers (0, 2001) and strings ("R000002")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_result_code(value, field))
    if isinstance(value, str) and _RESULT_TEXT.fullmatch(value.strip()):
        return value.strip()
    raise InvalidCallback(
        f"{field} {_show(value)} is not a result code (expected an integer or a short code "
        "of letters, digits and underscores, like 0 or R000002)",
        "invalid_field",
    )


def _result_parameters(result: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """``ResultParameters.ResultParameter`` as Key -> its Values (a key may come twice: a
    status result names two DebitPartyName). Daraja sends one parameter as an object
    rather than a list of one; both are read. Missing: no parameters."""
    block = result.get("ResultParameters")
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise InvalidCallback(
            f"{where}ResultParameters is {json_type(block)}; expected an object", "invalid_field"
        )
    raw = block.get("ResultParameter")
    if raw is None:
        return {}
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise InvalidCallback(
            f"{where}ResultParameters.ResultParameter is {json_type(raw)}; expected a list "
            "of {Key, Value}",
            "invalid_field",
        )
    params: dict[str, list[Any]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("Key"), str):
            raise InvalidCallback(
                f"{where}ResultParameters.ResultParameter[{index}] {_show(item)} is not an "
                "object with a Key string",
                "invalid_field",
            )
        if item.get("Value") is not None:
            params.setdefault(item["Key"], []).append(item["Value"])
    return params


def _parameter(params: dict[str, list[Any]], key: str) -> Any:
    """The one Value of ``key``, None when it has none; two different ones are ambiguous."""
    values = params.get(key, [])
    if len(set(map(str, values))) > 1:
        raise InvalidCallback(
            f"result parameter {key} has {len(values)} different values; which one is meant "
            "is unknown",
            "invalid_field",
        )
    return values[0] if values else None


def _required_parameter(params: dict[str, list[Any]], key: str) -> Any:
    value = _parameter(params, key)
    if value is None:
        raise InvalidCallback(
            f"required result parameter {key} is missing or has no Value", "missing_field"
        )
    return value


def _party(values: list[Any]) -> tuple[str | None, str | None]:
    """The payer among the ``"<number> - <NAME>"`` parties: the one named by a phone
    number (a status result may also name the organisation, by its shortcode)."""
    for value in values:
        number, sep, name = str(value).partition(" - ")
        if number.strip().isdigit() and len(number.strip()) >= 10:
            return number.strip(), (" ".join(name.split()) or None) if sep else None
    return None, None


# --- STK push -----------------------------------------------------------------------------


def _parse_stk(doc: dict[str, Any], ctx: ParseContext) -> PaymentNotification | FailedAttempt:
    body = _required_object(doc, "Body", "")
    callback = _required_object(body, "stkCallback", "Body.")
    where = "Body.stkCallback."
    reference = _request_id(_required(callback, "CheckoutRequestID", where), where)
    result_code = _result_code(_required(callback, "ResultCode", where), where + "ResultCode")
    if result_code != 0:
        return FailedAttempt(
            provider=PROVIDER,
            channel="stk",
            reference=reference,
            result_code=result_code,
            result_desc=_optional_text(callback, "ResultDesc", where) or "",
            merchant_reference=_optional_text(callback, "MerchantRequestID", where),
            cancelled=result_code == CANCELLED_BY_USER,
        )

    metadata = _required_object(callback, "CallbackMetadata", where)
    items = _stk_items(metadata, where + "CallbackMetadata.")
    return PaymentNotification(
        provider=PROVIDER,
        channel="stk",
        code=_code(
            _required_item(items, "MpesaReceiptNumber"), "MpesaReceiptNumber", allow_empty=False
        ),
        amount=parse_amount(_required_item(items, "Amount"), "Amount"),
        currency=ctx.currency,
        paid_at=parse_local_time(
            _required_item(items, "TransactionDate"), ctx.timezone, "TransactionDate"
        ),
        msisdn=_msisdn(items.get("PhoneNumber"), "PhoneNumber", ctx),
        request_reference=reference,
    )


def _stk_items(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    """The metadata ``Item`` list as Name -> Value (None when an item has no Value)."""
    raw_items = _required(metadata, "Item", where)
    if not isinstance(raw_items, list):
        raise InvalidCallback(
            f"{where}Item is {json_type(raw_items)}; expected a list of {{Name, Value}}",
            "invalid_field",
        )
    items: dict[str, Any] = {}
    for index, item in enumerate(raw_items):
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
            raise InvalidCallback(
                f"{where}Item[{index}] {_show(item)} is not an object with a Name string",
                "invalid_field",
            )
        name: str = item["Name"]
        if name in items and name in _STK_ITEMS:
            raise InvalidCallback(
                f"{where}Item has {name!r} more than once; which one is meant is unknown",
                "invalid_field",
            )
        items[name] = item.get("Value")
    return items


def _required_item(items: dict[str, Any], name: str) -> Any:
    value = items.get(name)
    if value is None:
        raise InvalidCallback(
            f"required CallbackMetadata item {name} is missing or has no Value", "missing_field"
        )
    return value


def _result_code(value: object, field: str) -> int:
    """An integer of at most 9 digits: Daraja's codes are small, and the column is INTEGER."""
    if isinstance(value, int) and not isinstance(value, bool):
        if -_RESULT_CODE_MAX <= value <= _RESULT_CODE_MAX:
            return value
        raise InvalidCallback(
            f"{field} {_show(value)} is not a result code (expected an integer of at most "
            "9 digits, like 0 or 1032)",
            "invalid_field",
        )
    if isinstance(value, str) and _RESULT_CODE_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise InvalidCallback(
        f"{field} {_show(value)} is not an integer (a JSON number or numeric string)",
        "invalid_field",
    )


# --- field readers ------------------------------------------------------------------------


def _required(obj: dict[str, Any], key: str, where: str = "") -> Any:
    """``obj[key]``; a missing key and a JSON null are both missing."""
    value = obj.get(key)
    if value is None:
        raise InvalidCallback(f"required field {where}{key} is missing or null", "missing_field")
    return value


def _required_object(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = _required(obj, key, where)
    if not isinstance(value, dict):
        raise InvalidCallback(
            f"{where}{key} is {json_type(value)}; expected an object", "invalid_field"
        )
    return value


def _request_id(value: object, where: str) -> str:
    """An STK CheckoutRequestID: the attempt's identity, printable ASCII, kept whole."""
    field = f"{where}CheckoutRequestID"
    text = value.strip() if isinstance(value, str) else None
    if not text or not _REQUEST_ID_TEXT.fullmatch(text) or len(text) > _REQUEST_ID_MAX:
        raise InvalidCallback(
            f"{field} {_show(value)} is not a request id (expected 1-{_REQUEST_ID_MAX} "
            "printable ASCII characters without spaces, like 'ws_CO_191220191020363925')",
            "invalid_field",
        )
    return text


def _optional_text(
    obj: dict[str, Any], key: str, where: str = "", *, allow_int: bool = False
) -> str | None:
    """``obj[key]`` as sent, None when missing or null.

    With ``allow_int`` a JSON integer is taken as its digits: short codes and account
    numbers are digit strings some integrations send unquoted.
    """
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    expected = "a string or integer" if allow_int else "a string"
    raise InvalidCallback(
        f"{where}{key} {_show(value)} is {json_type(value)}; expected {expected}",
        "invalid_field",
    )


def _code(value: object, field: str, *, allow_empty: bool) -> str:
    """A transaction code, stripped and upper-cased: 1-32 ASCII letters and digits."""
    if not isinstance(value, str):
        raise InvalidCallback(
            f"{field} {_show(value)} is {json_type(value)}; expected a transaction code string",
            "invalid_code",
        )
    text = value.strip()
    if allow_empty and not text:
        return ""
    if not _CODE_TEXT.fullmatch(text):
        raise InvalidCallback(
            f"{field} {_show(value)} is not a transaction code "
            "(expected 1-32 letters A-Z and digits 0-9)",
            "invalid_code",
        )
    return text.upper()


def _msisdn(value: object, field: str, ctx: ParseContext) -> Msisdn:
    """Classify the payer's number; missing or null is a valid ``missing`` number."""
    if isinstance(value, int) and not isinstance(value, bool):
        # STK sends PhoneNumber as a JSON number; its digits are the number as text.
        value = str(value)
    if value is None or isinstance(value, str):
        if ctx.shape_only:
            # Any text is an acceptable number (a mask, a hash, junk: the worker classifies
            # it), so checking the shape needs no phone parsing.
            return Msisdn(raw=value, kind="missing")
        return classify_msisdn(value, ctx.region)
    raise InvalidCallback(
        f"{field} {_show(value)} is {json_type(value)}; expected a phone number "
        "as a string or integer",
        "invalid_field",
    )


# --- messages -----------------------------------------------------------------------------


def _bad_amount(field: str, value: object, problem: str) -> InvalidCallback:
    return InvalidCallback(f"{field} {_show(value)} {problem}", "invalid_amount")


def _show(value: object) -> str:
    """``value`` as it appeared in the JSON, shortened: messages must stay one line."""
    shown: str
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, Decimal | float):
        shown = str(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        shown = f"<integer of about {value.bit_length() * 3 // 10} digits>"
    else:
        try:
            shown = json.dumps(value, default=str, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            shown = f"<{json_type(value)}>"
    if len(shown) > _SHOWN_MAX:
        shown = shown[: _SHOWN_MAX - 3] + "..."
    # the message is stored with the rejected body: no character the database refuses
    return storable(shown)
