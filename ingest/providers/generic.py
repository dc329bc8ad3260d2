"""The generic webhook: payments posted by aggregators and in-house systems, signed.

A sender (a billing system, an aggregator) posts each payment to
``/webhooks/generic/<source>`` with the Standard Webhooks headers ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of
``<webhook-id>.<webhook-timestamp>.<body>`` under one of the source's secrets
(a space-separated list, so a sender rotating its secret signs with both). A timestamp
more than five minutes from this host's clock, either way, is refused.

The sources and their secrets are ``MOMO_GENERIC_SECRETS``
(``source=whsec_<base64>,...``, a source named again for each further secret); unset,
the generic webhook is off and its URLs answer 404. The body is one JSON object (see
``GenericAdapter.parse``); its payment is known as provider ``generic``, code
``<source>:<code>``, so two sources never share a code and a repeat is a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from core.config import ConfigError, IPNetwork, Settings
from core.providers import ParseContext, ProviderAdapter, Registration
from core.redact import WEBHOOK_PREFIX
from ingest.providers.json_body import decode_object, json_type
from ingest.providers.mpesa import CLOCK_SLACK, EARLIEST_TIME, parse_amount
from matcher.models import Payment
from matcher.notifications import Callback, InvalidCallback, Msisdn, PaymentNotification
from matcher.phones import classify_msisdn
from matcher.text import column_length, storable, unstorable_character

PROVIDER: Final = "generic"
#: how its payments were made, as momo shows them
CHANNEL: Final = "webhook"
SECRETS_VARIABLE: Final = "MOMO_GENERIC_SECRETS"

# --- Standard Webhooks (https://www.standardwebhooks.com, spec/standard-webhooks.md) -------

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
#: the version of a symmetric (HMAC-SHA256) signature; others in the list are not ours
SIGNATURE_VERSION: Final = "v1"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix of a secret's text, not a secret
#: a signing secret is 24 to 64 random bytes (the spec: at least 192 bits, 512 at most)
MIN_KEY_BYTES: Final = 24
MAX_KEY_BYTES: Final = 64
#: a callback signed further than this from now, either way, is a replay or a broken clock
TOLERANCE_SECONDS: Final = 5 * 60
# The signed content is "<id>.<timestamp>.<body>": a "." in the id would let one split be
# read as another, so ids are printable ASCII without it; timestamps are Unix seconds.
_MESSAGE_ID: Final = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,256}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")

# --- the body -------------------------------------------------------------------------------

#: a source: the last segment of its URL, and the start of its payments' codes
SOURCE_MAX: Final = 24
SOURCE: Final = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{SOURCE_MAX - 1}}}")
#: the sender's code, after "<source>:", fits the payment's code column
CODE_MAX: Final = column_length(Payment.code) - SOURCE_MAX - 1
_CODE: Final = re.compile(r"[\x21-\x7e]+")
_ACCOUNT_MAX: Final = column_length(Payment.account_reference)
_PAYER_MAX: Final = column_length(Payment.payer_name)
# RFC 3339 date-time: a full date, a time, and an offset ("Z" or +hh:mm); nothing looser
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_PHONE_DIGITS: Final = re.compile(r"[1-9][0-9 ().-]*")
_SHOWN_MAX: Final = 60

# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenericSettings:
    """The generic webhook's block of the settings; the default (no sources) is off."""

    #: MOMO_GENERIC_SECRETS: each source and its signing keys (more than one while the
    #: sender rotates); never shown
    secrets: tuple[tuple[str, tuple[bytes, ...]], ...] = field(default=(), repr=False)

    def keys(self, source: str) -> tuple[bytes, ...]:
        """The keys that sign ``source``'s callbacks; none for a source not configured."""
        return next((keys for name, keys in self.secrets if name == source), ())

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.secrets)


_SYNTAX: Final = (
    f"give a comma-separated list of source=whsec_<base64>, e.g. {SECRETS_VARIABLE}="
    "isp-billing=whsec_...,aggregator=whsec_... (a source named twice has two secrets, "
    "while its sender rotates)"
)


def read_settings(env: Mapping[str, str]) -> GenericSettings:
    """The block from ``MOMO_GENERIC_SECRETS``; ConfigError naming it when an entry is
    malformed. The messages name the source and the entry's place, never a secret."""
    keys: dict[str, list[bytes]] = {}
    owner: dict[bytes, str] = {}
    entries = [entry.strip() for entry in env.get(SECRETS_VARIABLE, "").split(",")]
    for number, entry in enumerate((e for e in entries if e), 1):
        source, equals, secret = (part.strip() for part in entry.partition("="))
        if not equals or SECRET_PREFIX in source:
            # a secret without its source (base64 may end in "="): say so, never show it
            raise ConfigError(
                f"{SECRETS_VARIABLE} entry {number} names no source before its secret: {_SYNTAX}"
            )
        if not SOURCE.fullmatch(source):
            raise ConfigError(
                f"{SECRETS_VARIABLE} entry {number} names the source {storable(source[:40])!r}, "
                f"which is not 1-{SOURCE_MAX} lowercase letters, digits, '-' or '_' starting "
                "with a letter or digit (it is the last segment of its URL, "
                "/webhooks/generic/<source>)"
            )
        key = _signing_key(secret, f"{SECRETS_VARIABLE} entry {number} (source {source!r})")
        if owner.get(key, source) != source:
            raise ConfigError(
                f"{SECRETS_VARIABLE} gives sources {owner[key]!r} and {source!r} the same "
                "secret: either could then sign as the other. Give each source its own"
            )
        owner[key] = source
        if key not in keys.setdefault(source, []):
            keys[source].append(key)
    return GenericSettings(secrets=tuple((name, tuple(k)) for name, k in keys.items()))


def _signing_key(secret: str, where: str) -> bytes:
    """The key bytes of ``secret`` (``whsec_`` and standard base64, padded or not)."""
    make = 'make one with: echo "whsec_$(openssl rand -base64 32)"'
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"{where}: the secret does not start with {SECRET_PREFIX}; {make}")
    text = secret[len(SECRET_PREFIX) :]
    try:
        if not _BASE64.fullmatch(text):
            raise ValueError
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (ValueError, binascii.Error):
        raise ConfigError(
            f"{where}: the secret after {SECRET_PREFIX} is not base64; {make}"
        ) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ConfigError(
            f"{where}: the secret is {len(key)} bytes; a signing secret is "
            f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes; {make}"
        )
    return key


def settings_of(settings: Settings) -> GenericSettings:
    """The generic webhook's block of ``settings``; off when the settings carry none."""
    block: GenericSettings | None = settings.providers.get(PROVIDER)
    return GenericSettings() if block is None else block


# --- signatures -----------------------------------------------------------------------------


def sign(key: bytes, message_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_problem(
    keys: tuple[bytes, ...], headers: Mapping[str, str], body: bytes, now: float
) -> str | None:
    """Why ``headers`` do not prove that a holder of one of ``keys`` sent ``body`` within
    ``TOLERANCE_SECONDS`` of ``now`` (Unix seconds); None when they do."""
    values = {name: headers.get(name) for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)}
    missing = [name for name, value in values.items() if not value]
    if missing:
        return f"{', '.join(missing)} missing: sign each callback as Standard Webhooks says"
    message_id, timestamp, signatures = (str(value) for value in values.values())
    if not _MESSAGE_ID.fullmatch(message_id):
        return (
            f"{ID_HEADER} is not 1-256 printable ASCII characters without spaces or '.' "
            "(e.g. msg_2KWPBgLlAfxdpx2AI54pPJ85f4W)"
        )
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER} is not whole seconds since 1970 (e.g. 1674087231)"
    drift = int(timestamp) - now
    if abs(drift) > TOLERANCE_SECONDS:
        when = "ahead of" if drift > 0 else "behind"
        return (
            f"{TIMESTAMP_HEADER} is {abs(int(drift))} seconds {when} this server's clock; it "
            f"must be within {TOLERANCE_SECONDS // 60} minutes: sign each attempt when it "
            "is sent, and check the sender's clock"
        )
    # Compared as text, in the one canonical base64 spelling: a different spelling of the
    # same bytes (spare bits set) is not the sender's signature.
    given = [s.encode("ascii") for s in signatures.split(" ") if s and s.isascii()]
    for key in keys:
        expected = sign(key, message_id, timestamp, body).encode("ascii")
        # every entry is compared, so the time taken says nothing of which one matched
        matched = [hmac.compare_digest(expected, candidate) for candidate in given]
        if any(matched):
            return None
    return f"no {SIGNATURE_VERSION} signature in {SIGNATURE_HEADER} matches this source's secret"


# --- the adapter ----------------------------------------------------------------------------


class GenericAdapter:
    """Signed JSON payments from a configured source; ``source`` set: the adapter of that
    source's URL, which checks its signatures."""

    name: str = PROVIDER
    #: its kinds are its configured sources (``route``): an inbox row's kind is its source
    kinds: frozenset[str] = frozenset()
    cancelled_codes: frozenset[int] = frozenset()
    variables: tuple[str, ...] = (SECRETS_VARIABLE,)
    methods: frozenset[str] = frozenset({"POST"})
    registration: Registration = Registration(
        title="generic webhook",
        a_title="a generic webhook",
        registrar="its sender",
        token_variable=SECRETS_VARIABLE,
        # no path token is ever made for it: it routes its own paths (``route``)
        token_file="",
    )

    def __init__(self, source: str | None = None) -> None:
        self.source = source

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> GenericSettings:
        return read_settings(env)

    def route(
        self, settings: Settings, segment: str, kind: str | None
    ) -> tuple[ProviderAdapter, str] | None:
        """``/webhooks/generic/<source>`` of a configured source: that source's adapter, and
        the source as the callback's kind. Anything else (another source, a longer path,
        the webhook off) is no URL of it."""
        if kind is not None or not settings_of(settings).keys(segment):
            return None
        return GenericAdapter(segment), segment

    def path_token(self, settings: Settings) -> str | None:
        return None  # the source is no secret: each callback's signature proves its sender

    def require_path_token(self, settings: Settings) -> str:
        raise ConfigError(
            f"the generic webhook has no path token: each source signs its callbacks with "
            f"its secret in {SECRETS_VARIABLE}"
        )

    def with_path_token(self, settings: Settings, token: str) -> Settings:
        return settings

    def callback_paths(self, token: str) -> tuple[str, ...]:
        """The URL of the source ``token``."""
        return (f"{WEBHOOK_PREFIX}{PROVIDER}/{token}",)

    def allowed_networks(self, settings: Settings) -> tuple[IPNetwork, ...]:
        return ()

    def signature_problem(
        self, settings: Settings, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        if self.source is None:  # fail closed: only a source's own adapter knows its keys
            return "the callback names no source"
        keys = settings_of(settings).keys(self.source)
        if not keys:
            return f"no secret is configured for source {self.source!r}"
        return signature_problem(keys, headers, body, time.time())

    def rejects_unknown_accounts(self, settings: Settings) -> bool:
        return False

    def refusal(self, status: int, message: str, **extra: str) -> dict[str, Any]:
        return {"accepted": False, "error": message, **extra}

    def receipt_code(self, reference: str) -> str | None:
        return None  # a sender's codes have no shape of their own to recognise

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        """The payment ``body`` describes, posted by source ``kind``; InvalidCallback (and
        never another exception) when it is not the documented shape:

        ``{"code", "amount", "currency", "phone", "account_reference", "paid_at",
        "payer_name"}``: ``code`` (required) the sender's unique id of the payment,
        1-39 printable ASCII characters without spaces, compared exactly; ``amount``
        (required) a decimal string ("1500.00") or JSON number, more than zero, at most
        two decimal places; ``currency`` (required) momo's own (MOMO_CURRENCY), any
        case; ``paid_at`` (required) RFC 3339 with an offset; ``phone``,
        ``account_reference`` and ``payer_name`` optional (null or left out). Other
        keys are ignored.
        """
        if not SOURCE.fullmatch(kind):
            raise InvalidCallback(f"{_show(kind)} is not a generic webhook source", "unknown_kind")
        doc = decode_object(body)
        return PaymentNotification(
            provider=PROVIDER,
            channel=CHANNEL,
            code=f"{kind}:{_code(_required(doc, 'code'))}",
            amount=parse_amount(_required(doc, "amount"), "amount"),
            currency=_currency(_required(doc, "currency"), ctx.currency),
            paid_at=_paid_at(_required(doc, "paid_at")),
            msisdn=_msisdn(doc.get("phone"), ctx),
            payer_name=_text(doc, "payer_name", _PAYER_MAX),
            account_reference=_text(doc, "account_reference", _ACCOUNT_MAX, allow_int=True),
        )

    def acknowledge(self, kind: str) -> dict[str, Any]:
        return {"accepted": True}

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        return {"accepted": accepted}


# --- field readers --------------------------------------------------------------------------


def _required(doc: dict[str, Any], key: str) -> Any:
    value = doc.get(key)
    if value is None:
        raise InvalidCallback(f"required field {key} is missing or null", "missing_field")
    return value


def _code(value: object) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value) or len(value) > CODE_MAX:
        raise InvalidCallback(
            f"code {_show(value)} is not a payment code (expected 1-{CODE_MAX} printable ASCII "
            "characters without spaces, unique per payment, like 'INV-2026-0042')",
            "invalid_code",
        )
    return value


def _currency(value: object, currency: str) -> str:
    if not isinstance(value, str) or value.strip().upper() != currency:
        raise InvalidCallback(
            f"currency {_show(value)} is not {currency!r}, the only currency this momo takes "
            "(MOMO_CURRENCY); a payment in another currency is not credited",
            "wrong_currency",
        )
    return currency


def _paid_at(value: object) -> datetime:
    expected = "expected RFC 3339 with an offset, like '2026-03-01T14:05:09+03:00'"
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.strip()):
        raise InvalidCallback(f"paid_at {_show(value)} is not a time; {expected}", "invalid_time")
    try:
        instant = datetime.fromisoformat(value.strip().upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidCallback(
            f"paid_at {_show(value)} is not a real time ({exc}); {expected}", "invalid_time"
        ) from None
    if not EARLIEST_TIME <= instant <= datetime.now(UTC) + CLOCK_SLACK:
        raise InvalidCallback(
            f"paid_at {_show(value)} is not a time a payment can have (expected from "
            f"{EARLIEST_TIME.date().isoformat()} to a day after now)",
            "invalid_time",
        )
    return instant


def _msisdn(value: object, ctx: ParseContext) -> Msisdn:
    """The payer's number: local numbers of MOMO_DEFAULT_REGION, or any with its country
    code ("+256...", or its digits when they are no local number): never forced local."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is not None and not isinstance(value, str):
        raise InvalidCallback(
            f"phone {_show(value)} is {json_type(value)}; expected a phone number as a string",
            "invalid_field",
        )
    if ctx.shape_only:
        return Msisdn(raw=value, kind="missing")  # the worker classifies it
    msisdn = classify_msisdn(value, ctx.region)
    if msisdn.kind == "invalid" and value is not None and _PHONE_DIGITS.fullmatch(value.strip()):
        international = classify_msisdn("+" + value.strip(), ctx.region)
        if international.kind == "phone":
            return Msisdn(
                raw=value, kind="phone", e164=international.e164, sha256=international.sha256
            )
    return msisdn


def _text(doc: dict[str, Any], key: str, limit: int, *, allow_int: bool = False) -> str | None:
    value = doc.get(key)
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        return None
    if not isinstance(value, str):
        expected = "a string or integer" if allow_int else "a string"
        raise InvalidCallback(
            f"{key} {_show(value)} is {json_type(value)}; expected {expected}", "invalid_field"
        )
    if len(value) > limit or unstorable_character(value) is not None:
        raise InvalidCallback(
            f"{key} {_show(value)} is not text of at most {limit} characters", "invalid_field"
        )
    return value


def _show(value: object) -> str:
    """``value`` for a one-line message: short, and storable beside the rejected body."""
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        shown = f"<integer of about {value.bit_length() * 3 // 10} digits>"
    elif isinstance(value, Decimal):
        shown = str(value)
    elif isinstance(value, int | bool) or value is None:
        shown = json.dumps(value)
    else:
        shown = f"<{json_type(value)}>"
    if len(shown) > _SHOWN_MAX:
        shown = shown[: _SHOWN_MAX - 3] + "..."
    return storable(shown)
