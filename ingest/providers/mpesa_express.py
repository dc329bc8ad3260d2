"""M-PESA Express (STK push) on Daraja: ask a customer to pay, and ask how it went.

Daraja's OAuth token comes from GET /oauth/v1/generate with the app's consumer key and
secret (HTTP Basic); the push is POST /mpesa/stkpush/v1/processrequest and the query
POST /mpesa/stkpushquery/v1/query, both signed with Password = base64(shortcode +
passkey + timestamp), the timestamp in Nairobi time. The push answers with a
CheckoutRequestID, the id the callback (and the query) name the request by.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

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
from matcher.notifications import RequestResult

PROVIDER: Final = "mpesa"
SANDBOX: Final = "https://sandbox.safaricom.co.ke"
NAIROBI: Final = ZoneInfo("Africa/Nairobi")
PAYBILL: Final = "CustomerPayBillOnline"
BUY_GOODS: Final = "CustomerBuyGoodsOnline"
OAUTH_PATH: Final = "/oauth/v1/generate?grant_type=client_credentials"
PUSH_PATH: Final = "/mpesa/stkpush/v1/processrequest"
QUERY_PATH: Final = "/mpesa/stkpushquery/v1/query"
DEFAULT_TIMEOUTS: Final = Timeouts()
#: Daraja's limits on the two texts the customer sees
ACCOUNT_REFERENCE_LENGTH: Final = 12
DESCRIPTION_LENGTH: Final = 13
#: Daraja's error code for a bearer token it does not take (expired, revoked)
INVALID_TOKEN: Final = "404.001.03"  # noqa: S105 - an error code, not a secret
#: the STK result code of a prompt the customer dismissed
CANCELLED_BY_USER: Final = 1032


@dataclass(frozen=True)
class ExpressSettings:
    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str
    api_base: str = SANDBOX
    transaction_type: str = PAYBILL
    #: who receives the money: the shortcode itself for a paybill, the till for buy goods
    party_b: str | None = None
    #: how long Daraja may take to answer one call
    timeouts: Timeouts = DEFAULT_TIMEOUTS


def timestamp(when: datetime) -> str:
    """Daraja's timestamp: YYYYMMDDHHMMSS in Nairobi time."""
    return when.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def password(shortcode: str, passkey: str, stamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{stamp}".encode()).decode("ascii")


def _whole_shillings(amount: int) -> int:
    shillings, cents = divmod(amount, 100)
    if cents:
        raise ProviderRefused(
            PROVIDER,
            f"M-PESA Express takes whole shillings; {amount / 100:.2f} has cents. Ask for "
            f"{shillings} or {shillings + 1}",
            status=422,
            reason="whole_shillings_only",
        )
    return shillings


class Express:
    """One shortcode's STK push client; its token is shared by every thread."""

    def __init__(
        self,
        settings: ExpressSettings,
        *,
        timeouts: Timeouts | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.clock = clock
        timeouts = timeouts or settings.timeouts
        self.client = ProviderClient(
            PROVIDER,
            settings.api_base,
            timeouts=timeouts,
            token=TokenCache(self._token),
            token_refused=_token_refused,
        )
        # A query answers 5xx while the customer has not answered yet ("The transaction
        # is being processed"): asking again at once tells nothing new.
        self.query_client = ProviderClient(
            PROVIDER,
            settings.api_base,
            timeouts=timeouts,
            token=self.client.token,
            token_refused=_token_refused,
            status_retries=0,
        )

    def close(self) -> None:
        self.client.close()
        self.query_client.close()

    def _token(self) -> tuple[str, float]:
        s = self.settings
        response = self.client.send(
            "GET", OAUTH_PATH, auth=(s.consumer_key, s.consumer_secret), bearer=False
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

    def _signed(self) -> dict[str, str]:
        s = self.settings
        stamp = timestamp(self.clock())
        return {
            "BusinessShortCode": s.shortcode,
            "Password": password(s.shortcode, s.passkey, stamp),
            "Timestamp": stamp,
        }

    def push(self, ask: Ask) -> Asked:
        """Prompt the customer. ProviderRefused: Daraja said no; ProviderUnavailable: it
        never took it; NoAnswer: it may have (the request then waits for its callback)."""
        s = self.settings
        msisdn = ask.phone.removeprefix("+")
        body: dict[str, Any] = {
            **self._signed(),
            "TransactionType": s.transaction_type,
            "Amount": _whole_shillings(ask.amount),
            "PartyA": msisdn,
            "PartyB": s.party_b or s.shortcode,
            "PhoneNumber": msisdn,
            "CallBackURL": ask.callback_url,
            "AccountReference": ask.account_number[:ACCOUNT_REFERENCE_LENGTH],
            "TransactionDesc": f"Pay {ask.account_number}"[:DESCRIPTION_LENGTH],
        }
        response = self.client.send("POST", PUSH_PATH, json=body)
        if response.status_code >= 400:
            raise _refusal(response)
        answer = json_object(PROVIDER, response, "the STK push")
        if answer.get("ResponseCode") is None:
            raise NoAnswer(PROVIDER, f"the STK push answered without a ResponseCode: {answer}")
        code = str(answer["ResponseCode"]).strip()
        checkout = answer.get("CheckoutRequestID")
        if code != "0":
            raise ProviderRefused(
                PROVIDER,
                str(answer.get("ResponseDescription") or answer),
                status=response.status_code,
                reason=code or "unknown",
            )
        if not isinstance(checkout, str) or not checkout:
            raise NoAnswer(PROVIDER, "the STK push was accepted without a CheckoutRequestID")
        merchant = answer.get("MerchantRequestID")
        message = answer.get("CustomerMessage")
        return Asked(
            reference=checkout,
            merchant_reference=merchant if isinstance(merchant, str) else None,
            message=message if isinstance(message, str) else None,
        )

    def query(self, reference: str) -> RequestResult:
        """How the prompt went. ProviderUnavailable while Daraja still processes it."""
        response = self.query_client.send(
            "POST", QUERY_PATH, json={**self._signed(), "CheckoutRequestID": reference}
        )
        if response.status_code >= 400:
            raise _refusal(response)
        answer = json_object(PROVIDER, response, "the STK query")
        code = answer.get("ResultCode")
        if code is None or str(code).strip() == "":
            raise NoAnswer(PROVIDER, f"the STK query answered without a ResultCode: {answer}")
        code = str(code).strip()
        description = str(answer.get("ResultDesc") or "")
        if code == "0":
            state = "paid"
        elif code == str(CANCELLED_BY_USER):
            state = "cancelled"
        else:
            state = "failed"
        return RequestResult(
            provider=PROVIDER,
            reference=reference,
            state=state,  # type: ignore[arg-type]
            result_code=code,
            result_description=description,
            channel="stk",
        )


def _token_refused(response: Any) -> bool:
    """Daraja answers an expired or unknown token with 404 and its code 404.001.03."""
    if response.status_code == 401:
        return True
    if response.status_code != 404:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("errorCode") == INVALID_TOKEN


def _refusal(response: Any) -> ProviderRefused:
    """Daraja's error body ``{requestId, errorCode, errorMessage}`` as a refusal."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("errorMessage"):
        return ProviderRefused(
            PROVIDER,
            str(body["errorMessage"]),
            status=response.status_code,
            reason=str(body.get("errorCode") or response.status_code),
        )
    text = response.text.strip()[:300] or "(empty body)"
    return ProviderRefused(
        PROVIDER, text, status=response.status_code, reason=str(response.status_code)
    )
