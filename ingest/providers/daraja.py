"""Daraja, Safaricom's M-PESA API: one app (consumer key and secret) and its shortcode.

Every call momo makes to Daraja (M-PESA Express, C2B URL registration, Pull
Transactions, Transaction Status, Reversal) goes through one ``Daraja`` client per app:
one pooled session and one OAuth token, fetched with the consumer key and secret
(GET /oauth/v1/generate, HTTP Basic) and shared by every thread until shortly before it
expires, or until Daraja refuses it (404 with 404.001.03).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ingest.providers.outbound import (
    NoAnswer,
    ProviderClient,
    ProviderRefused,
    Timeouts,
    TokenCache,
    json_object,
)

PROVIDER: Final = "mpesa"
SANDBOX: Final = "https://sandbox.safaricom.co.ke"
#: the host of Daraja's live API (https://api.safaricom.co.ke)
LIVE_HOST: Final = "api.safaricom.co.ke"
OAUTH_PATH: Final = "/oauth/v1/generate?grant_type=client_credentials"
DEFAULT_TIMEOUTS: Final = Timeouts()
#: Daraja's error code for a bearer token it does not take (expired, revoked)
INVALID_TOKEN: Final = "404.001.03"  # noqa: S105 - an error code, not a secret
#: the same, as the C2B pages (URL registration) give it: 400 with 400.003.01
C2B_INVALID_TOKEN: Final = "400.003.01"  # noqa: S105 - an error code, not a secret
_INVALID_TOKENS: Final = {404: INVALID_TOKEN, 400: C2B_INVALID_TOKEN}
#: the variables an app is read from
APP_VARIABLES: Final = (
    "MOMO_MPESA_CONSUMER_KEY",
    "MOMO_MPESA_CONSUMER_SECRET",
    "MOMO_MPESA_SHORTCODE",
)


@dataclass(frozen=True)
class DarajaApp:
    """A Daraja app and the shortcode it acts for (MOMO_MPESA_CONSUMER_KEY, _SECRET,
    _SHORTCODE, _API_BASE)."""

    consumer_key: str
    consumer_secret: str
    shortcode: str
    api_base: str = SANDBOX
    #: how long Daraja may take to answer one call
    timeouts: Timeouts = DEFAULT_TIMEOUTS

    @property
    def sandbox(self) -> bool:
        """Whether the app talks to Safaricom's sandbox (where plain http URLs are taken)."""
        return self.api_base.rstrip("/") == SANDBOX

    @property
    def live(self) -> bool:
        """Whether the app talks to Daraja's live API, the one that registers https URLs
        only. Another base (the sandbox, a stand-in on loopback) is left to say for itself
        what it takes."""
        return (urlsplit(self.api_base).hostname or "").lower() == LIVE_HOST


class Daraja:
    """One app's client. ``client`` retries 5xx; ``patient_client`` does not (for calls
    whose 5xx means "not yet", where asking again at once tells nothing new)."""

    def __init__(self, app: DarajaApp, *, timeouts: Timeouts | None = None) -> None:
        self.app = app
        timeouts = timeouts or app.timeouts
        self.client = ProviderClient(
            PROVIDER,
            app.api_base,
            timeouts=timeouts,
            token=TokenCache(self._token),
            token_refused=token_refused,
        )
        self.patient_client = ProviderClient(
            PROVIDER,
            app.api_base,
            timeouts=timeouts,
            token=self.client.token,
            token_refused=token_refused,
            status_retries=0,
        )

    def close(self) -> None:
        self.client.close()
        self.patient_client.close()

    def _token(self) -> tuple[str, float]:
        app = self.app
        response = self.client.send(
            "GET", OAUTH_PATH, auth=(app.consumer_key, app.consumer_secret), bearer=False
        )
        if response.status_code != 200:
            raise ProviderRefused(
                PROVIDER,
                f"Daraja refused the consumer key and secret ({response.status_code}): check "
                "MOMO_MPESA_CONSUMER_KEY and MOMO_MPESA_CONSUMER_SECRET, and that "
                "MOMO_MPESA_API_BASE is the environment they belong to",
                status=response.status_code,
                reason="credentials_refused",
            )
        body = json_object(PROVIDER, response, "the OAuth token request")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise NoAnswer(PROVIDER, "the OAuth answer holds no access_token")
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 3599.0
        return token, lifetime

    def post(
        self, path: str, body: dict[str, Any], what: str, *, patient: bool = False
    ) -> dict[str, Any]:
        """POST ``body`` to ``path``; the answer's JSON object. ProviderRefused with
        Daraja's own code and words for a 4xx; ProviderUnavailable / NoAnswer as the
        client raises them."""
        client = self.patient_client if patient else self.client
        response = client.send("POST", path, json=body)
        if response.status_code >= 400:
            raise refusal(response)
        return json_object(PROVIDER, response, what)


def token_refused(response: Any) -> bool:
    """Daraja answers an expired or unknown token with 404 and its code 404.001.03 (400
    and 400.003.01 in the C2B API's table)."""
    if response.status_code == 401:
        return True
    code = _INVALID_TOKENS.get(response.status_code)
    if code is None:
        return False
    words = error_words(response.text)
    return words is not None and words[0] == code


def error_words(body: str) -> tuple[str, str] | None:
    """(errorCode, errorMessage) of Daraja's error body ``{requestId, errorCode,
    errorMessage}``, or None when ``body`` is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("errorMessage"):
        return str(doc.get("errorCode") or ""), str(doc["errorMessage"])
    return None


def refusal(response: Any) -> ProviderRefused:
    """Daraja's error body ``{requestId, errorCode, errorMessage}`` as a refusal."""
    words = error_words(response.text)
    if words is not None:
        code, message = words
        return ProviderRefused(
            PROVIDER, message, status=response.status_code, reason=code or str(response.status_code)
        )
    text = response.text.strip()[:300] or "(empty body)"
    return ProviderRefused(
        PROVIDER, text, status=response.status_code, reason=str(response.status_code)
    )
