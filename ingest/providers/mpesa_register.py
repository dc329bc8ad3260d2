"""Registering momo's C2B URLs with Daraja (Customer To Business, Register URL).

M-PESA posts every payment to the shortcode to the confirmation URL registered for it,
and, when the shortcode has external validation, asks the validation URL first. Until
both are registered, M-PESA completes payments and tells momo nothing.

A URL Daraja would refuse (``daraja_url_problem``: a word it refuses anywhere in it, or
plain http against the live API) is refused here before anything is sent, naming the
word and what to change. Daraja's own refusals (a URL it does not take, URLs already
registered in production, where registration is done once) are given in its words.

Sources: Safaricom's Daraja 3.0 pages "Customer To Business (C2B)" (the current one:
``/mpesa/c2b/v2/registerurl``, its error table) and "Customer To Business Register URL"
(the v1 page: URL rules, ResponseType), kept in github.com/JacksCodeVault/mpesa-daraja-mcp,
daraja_docs_v3/docs/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from core.config import ConfigError, Settings
from core.redact import MASK
from ingest.providers.daraja import APP_VARIABLES, DarajaApp, error_words
from ingest.providers.mpesa import (
    C2B_CONFIRMATION,
    C2B_VALIDATION,
    PATH_TOKEN_VARIABLE,
    PROVIDER,
    daraja,
    daraja_url_problem,
    refused_word,
    settings_of,
    webhook_path,
)
from ingest.providers.outbound import NoAnswer, ProviderRefused, ProviderUnavailable

REGISTER_PATH: Final = "/mpesa/c2b/v2/registerurl"
#: ResponseType: what M-PESA does with a payment when the validation URL cannot be reached
#: or does not answer in time (about 8 s): complete it (and confirm it), or cancel it.
#: Daraja takes these two words only, in this case.
COMPLETED: Final = "Completed"
CANCELLED: Final = "Cancelled"
RESPONSE_TYPES: Final = (COMPLETED, CANCELLED)
#: ResponseCode of a registration Daraja took
ACCEPTED: Final = "0"
#: Daraja's words (errorMessage, any case) for a shortcode whose URLs are registered already
ALREADY_REGISTERED: Final = "already registered"
WHAT: Final = "the C2B URL registration"

ONCE_IN_PRODUCTION: Final = (
    "in production Daraja registers a shortcode's URLs once: delete the registered ones "
    "in the M-PESA organisation portal (URL management, under self-service) or ask "
    "apisupport@safaricom.co.ke, then run this again"
)


class NotRegistrable(Exception):
    """A URL Daraja would refuse; nothing was sent. ``message`` names the word (or the
    scheme) and what to change; it never holds the path token."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        #: "refused_word" or "not_https"
        self.reason = reason


@dataclass(frozen=True)
class C2BUrls:
    """The confirmation and validation URLs of one public address and path token."""

    confirmation: str
    validation: str

    @classmethod
    def of(cls, public_url: str, token: str) -> C2BUrls:
        base = public_url.rstrip("/")
        return cls(
            confirmation=base + webhook_path(token, C2B_CONFIRMATION),
            validation=base + webhook_path(token, C2B_VALIDATION),
        )

    def masked(self, token: str) -> C2BUrls:
        """The same URLs with the path token written as ``***``."""
        return C2BUrls(
            confirmation=_mask(self.confirmation, token), validation=_mask(self.validation, token)
        )


@dataclass(frozen=True)
class Registered:
    """Daraja took the URLs."""

    #: ResponseDescription ("Success")
    description: str
    #: OriginatorCoversationID (Daraja's spelling), its id of the request
    conversation_id: str | None


def c2b_urls(settings: Settings, token: str) -> tuple[DarajaApp, C2BUrls]:
    """The app to register with and the URLs to register; ConfigError naming every
    variable still missing (MOMO_PUBLIC_URL, the app's)."""
    app = settings_of(settings).daraja_app
    missing = [] if settings.public_url else ["MOMO_PUBLIC_URL"]
    if app is None:
        missing += APP_VARIABLES
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set: registering the C2B URLs needs the https "
            "address Daraja reaches momo at (MOMO_PUBLIC_URL, e.g. https://pay.example.com) "
            "and the Daraja app of the shortcode (consumer key and secret and the "
            "shortcode: Daraja portal, My Apps and Go Live)"
        )
    assert app is not None and settings.public_url is not None
    return app, C2BUrls.of(settings.public_url, token)


def check_urls(app: DarajaApp, public_url: str, token: str, urls: C2BUrls) -> None:
    """NotRegistrable when Daraja would refuse either URL, saying what to change."""
    for url in (urls.confirmation, urls.validation):
        problem = daraja_url_problem(url, sandbox=not app.live)
        if problem is None:
            continue
        problem = _mask(problem, token)
        word = refused_word(url)
        if word is None:
            raise NotRegistrable(
                f"{problem}: serve momo behind HTTPS and set MOMO_PUBLIC_URL to its https:// "
                "address (MOMO_MPESA_API_BASE is Daraja's live API); nothing was sent to "
                "Daraja",
                "not_https",
            )
        raise NotRegistrable(
            f"{problem}: {_where(word, public_url, token)}; nothing was sent to Daraja",
            "refused_word",
        )


def register_urls(settings: Settings, token: str, response_type: str = COMPLETED) -> Registered:
    """Register the shortcode's confirmation and validation URLs under MOMO_PUBLIC_URL.

    ConfigError when something to register with is missing, NotRegistrable before any
    call for a URL Daraja would refuse; ProviderRefused with Daraja's words when it
    refuses; ProviderUnavailable / NoAnswer when it cannot be asked or does not answer.
    """
    if response_type not in RESPONSE_TYPES:
        raise ValueError(f"ResponseType {response_type!r} is not one of {RESPONSE_TYPES}")
    app, urls = c2b_urls(settings, token)
    assert settings.public_url is not None
    check_urls(app, settings.public_url, token, urls)
    body = {
        "ShortCode": app.shortcode,
        "ResponseType": response_type,
        "ConfirmationURL": urls.confirmation,
        "ValidationURL": urls.validation,
    }
    try:
        # patient: a 5xx is not retried at once (it may be Daraja's "already registered")
        answer = daraja(settings).post(REGISTER_PATH, body, WHAT, patient=True)
    except ProviderRefused as exc:
        raise _refused(exc.message, exc.reason, exc.status) from None
    except ProviderUnavailable as exc:
        words = error_words(exc.answer) if exc.status is not None else None
        if words is not None and ALREADY_REGISTERED in words[1].lower():
            raise _refused(words[1], words[0], exc.status or 500) from None
        raise
    return _registered(answer)


def _registered(answer: dict[str, Any]) -> Registered:
    code = answer.get("ResponseCode")
    description = str(answer.get("ResponseDescription") or "")
    if code is None:
        raise NoAnswer(
            PROVIDER,
            f"{WHAT} answered without a ResponseCode ({answer!r}); run it again (registering "
            "the same URLs twice is harmless in the sandbox; in production Daraja says so)",
        )
    if str(code).strip() != ACCEPTED:
        raise _refused(description or "(no ResponseDescription)", str(code), 200)
    conversation = answer.get("OriginatorCoversationID", answer.get("OriginatorConversationID"))
    return Registered(
        description=description,
        conversation_id=None if conversation is None else str(conversation),
    )


def _refused(words: str, code: str, status: int) -> ProviderRefused:
    advice = (
        ONCE_IN_PRODUCTION
        if ALREADY_REGISTERED in words.lower()
        else "check the URLs and the shortcode against Daraja's rules, then run this again"
    )
    return ProviderRefused(
        PROVIDER,
        f"Daraja refused {WHAT}: {words!r} ({code}, HTTP {status}); {advice}",
        status=status,
        reason=code,
    )


def _where(word: str, public_url: str, token: str) -> str:
    """What to change so that no URL holds ``word``."""
    parts = urlsplit(public_url)
    if word in (parts.hostname or "").lower():
        return (
            f"the host name {parts.hostname!r} of MOMO_PUBLIC_URL holds it; give Daraja "
            "another host name for this momo (e.g. pay.example.com) and set MOMO_PUBLIC_URL "
            "to it"
        )
    if word in parts.path.lower():
        return (
            f"the path {parts.path!r} of MOMO_PUBLIC_URL holds it; serve momo under a path "
            "without it and set MOMO_PUBLIC_URL to match"
        )
    if word in token.lower():
        return (
            f"the path token holds it; set {PATH_TOKEN_VARIABLE} to a new one "
            "(openssl rand -hex 24 makes one no word can be in), restart the web processes "
            "and register again"
        )
    return "change MOMO_PUBLIC_URL so that no URL holds it"


def _mask(text: str, token: str) -> str:
    return text.replace(token, MASK) if token else text
