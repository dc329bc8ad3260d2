"""M-PESA Express (STK push) on Daraja: ask a customer to pay, and ask how it went.

The app's client and OAuth token are ``daraja.Daraja``'s; the push is POST
/mpesa/stkpush/v1/processrequest and the query POST /mpesa/stkpushquery/v1/query, both
signed with Password = base64(shortcode + passkey + timestamp), the timestamp in Nairobi
time. The push answers with a CheckoutRequestID, the id the callback (and the query)
name the request by.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from ingest.providers.daraja import (
    DEFAULT_TIMEOUTS,
    PROVIDER,
    SANDBOX,
    Daraja,
    DarajaApp,
    refusal,
)
from ingest.providers.outbound import (
    Ask,
    Asked,
    NoAnswer,
    ProviderRefused,
    Timeouts,
    json_object,
)
from matcher.notifications import RequestResult

NAIROBI: Final = ZoneInfo("Africa/Nairobi")
PAYBILL: Final = "CustomerPayBillOnline"
BUY_GOODS: Final = "CustomerBuyGoodsOnline"
PUSH_PATH: Final = "/mpesa/stkpush/v1/processrequest"
QUERY_PATH: Final = "/mpesa/stkpushquery/v1/query"
#: Daraja's limits on the two texts the customer sees
ACCOUNT_REFERENCE_LENGTH: Final = 12
DESCRIPTION_LENGTH: Final = 13
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

    @property
    def app(self) -> DarajaApp:
        """The Daraja app these settings sign in with."""
        return DarajaApp(
            self.consumer_key, self.consumer_secret, self.shortcode, self.api_base, self.timeouts
        )


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
    """One shortcode's STK push client, on its app's Daraja client (whose token every
    Daraja call of this app shares)."""

    def __init__(
        self,
        settings: ExpressSettings,
        *,
        daraja: Daraja | None = None,
        timeouts: Timeouts | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.daraja = daraja or Daraja(settings.app, timeouts=timeouts)
        self.client = self.daraja.client
        # A query answers 5xx while the customer has not answered yet ("The transaction
        # is being processed"): asking again at once tells nothing new.
        self.query_client = self.daraja.patient_client

    def close(self) -> None:
        self.daraja.close()

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
            raise refusal(response)
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
            raise refusal(response)
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
