"""A fake Airtel Money Open API: OAuth, collection (USSD push), enquiry, callbacks.

Shapes follow Airtel's developer portal (developers.airtel.africa: Authorization,
Collection-APIs "USSD Push" and "Transaction Enquiry", "Callback" with authentication),
as kept in public integrations: fredpatch/ono_ticketr_server
services/airtelmoney/documentations.md, a copy of the UAT pages for openapiuat.airtel.mg
(token ``expires_in`` is a string, "180"; enquiry ``data.transaction`` has
airtel_money_id, id, message, status) and the portal's collection response codes
(DP00800001000 ambiguous ... DP00800001029 expired) and statuses TS, TF, TA, TIP, TE,
as listed alike in several integrations.

The callback hash. With callback authentication on, Airtel adds ``"hash"`` to the body:
base64(HMAC-SHA256(key, message)), where ``key`` is the private key text copied from the
application settings, used as its UTF-8 bytes (not base64-decoded), and ``message`` is
the callback payload without the hash, i.e. ``{"transaction":{...}}``. Sources: the
portal's "Callback With Authentication" text ("hashing the callback payload with the
private key ... using HmacSHA256, then comparing the Base64-encoded result"), and its
Java sample ``ApiSecurityExample`` (``new SecretKeySpec(secret.getBytes(), "HmacSHA256")``
over ``{"transaction":{"id":...,"message":...,"status_code":...,"airtel_money_id":...}}``,
then ``Base64.encodeBase64String``), kept in public repositories. The portal's sample
hash equals its sample key, so there is no published test vector. The exact bytes Airtel
serialises are not documented; this fake sends compact JSON, transaction fields in the
order id, message, status_code, airtel_money_id, and signs exactly the bytes
``{"transaction":<those bytes>}``: re-serialising ``{"transaction": body["transaction"]}``
with ``separators=(",", ":")`` gives them back.

Not confirmed, chosen here: wrong client credentials and a bad token answer 401 (the
global-121 mock-service, built against Airtel UAT, answers 400 and 403 with the same
bodies); the refusal codes for a bad MSISDN or a duplicate id (modelled on Airtel's
disbursement answers); an unknown id in an enquiry answers HTTP 404 with DP00800001025.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Final

from tests.fakes.base import (
    PAY,
    QUERY,
    TOKEN,
    FakeProvider,
    Outcome,
    Recorded,
    Reply,
    Transaction,
    new_id,
)

CLIENT_ID: Final = "airtel-client-id"
CLIENT_SECRET: Final = "airtel-client-secret"
CALLBACK_KEY: Final = "airtel-callback-private-key"

SUCCESS: Final = "TS"
FAILED: Final = "TF"
AMBIGUOUS: Final = "TA"
IN_PROGRESS: Final = "TIP"
EXPIRED: Final = "TE"
#: enquiry status.response_code per transaction status (DP008... are collection codes)
RESPONSE_CODES: Final = {
    SUCCESS: "DP00800001001",
    FAILED: "DP00800001008",  # "Refused"; an outcome may name another (e.g. ...007 no balance)
    AMBIGUOUS: "DP00800001000",
    IN_PROGRESS: "DP00800001006",
    EXPIRED: "DP00800001029",
}
GOOD: Final = "good"
TAMPERED: Final = "tampered"
NO_HASH: Final = "none"
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class AirtelResult(Outcome):
    """How a push ends. ``amount`` (None: the amount asked for) appears only in ``message``,
    as with Airtel, whose callback and enquiry carry no amount field.

    ``hash``: GOOD, TAMPERED (the body was changed after signing: the hash is of the
    opposite status) or NO_HASH, when the fake's callback key is set.
    """

    status: str = SUCCESS
    message: str | None = None
    amount: Decimal | None = None
    airtel_money_id: str | None = None
    response_code: str | None = None
    hash: str = GOOD


def sign(transaction: dict[str, Any], key: str) -> str:
    """The callback hash of ``{"transaction": transaction}`` under the private ``key``."""
    message = json.dumps({"transaction": transaction}, separators=(",", ":")).encode()
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def _envelope(code: str, message: str, response_code: str | None, success: bool) -> dict:
    status: dict[str, Any] = {
        "code": code,
        "message": message,
        "result_code": "ESB000010" if success else "ESB000008",
        "success": success,
    }
    if response_code:
        status["response_code"] = response_code
    return status


_INVALID_TOKEN: Final = {
    "error_description": "The access token is invalid or has expired",
    "error": "invalid_token",
}


class AirtelFake(FakeProvider):
    """Airtel's UAT, on loopback. Callbacks go to ``callback_url`` (set in Airtel's portal)."""

    ROUTES = (
        ("POST", r"/auth/oauth2/token", TOKEN, "_token"),
        ("POST", r"/merchant/v1/payments/?", PAY, "_pay"),
        ("GET", r"/standard/v1/payments/([^/]+)", QUERY, "_enquiry"),
    )
    REFUSALS: ClassVar[dict[str, tuple[int, Any]]] = {
        "invalid_msisdn": (400, ("Invalid Msisdn Length. Msisdn Length should be 9", None)),
        "invalid_amount": (400, ("Invalid Amount", "DP00800001004")),
        "limit_exceeded": (400, ("Exceeds withdrawal amount limit(s)", "DP00800001003")),
        "payee_not_permitted": (
            400,
            ("Transaction not permitted to Payee", "DP00800001010"),
        ),
    }
    ESSENTIAL: ClassVar[dict[str, tuple[str, ...]]] = {
        TOKEN: ("access_token",),
        PAY: ("data.transaction",),
        QUERY: ("data.transaction.status",),
    }

    def __init__(
        self,
        callback_url: str | None = None,
        callback_key: str | None = CALLBACK_KEY,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        country: str = "KE",
        currency: str = "KES",
        msisdn_length: int = 9,
        token_lifetime: float = 180,
    ) -> None:
        super().__init__(token_lifetime)
        #: where callbacks go; None posts none
        self.callback_url = callback_url
        #: the private key of callback authentication; None turns the hash off
        self.callback_key = callback_key
        self.client_id, self.client_secret = client_id, client_secret
        self.country, self.currency, self.msisdn_length = country, currency, msisdn_length
        self.default_outcome = AirtelResult()

    def _error(self, status: int) -> Reply:
        return Reply(
            status, {"status": _envelope(str(status), "Internal Server Error", None, False)}
        )

    def _refusal_body(self, body: Any) -> Any:
        if isinstance(body, tuple):
            message, response_code = body
            return {"status": _envelope("400", message, response_code, False)}
        return body

    # --- endpoints ----------------------------------------------------------------

    def _token(self, request: Recorded) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        if (
            body.get("grant_type") != "client_credentials"
            or body.get("client_id") != self.client_id
            or body.get("client_secret") != self.client_secret
        ):
            return Reply(
                401,
                {"error_description": "Invalid client authentication", "error": "invalid_client"},
            )
        return Reply(
            200,
            {
                "access_token": self.issue_token(),
                "expires_in": str(int(self.token_lifetime)),
                "token_type": "bearer",
            },
        )

    def _pay(self, request: Recorded) -> Reply:
        if not self.token_valid(request):
            return Reply(401, dict(_INVALID_TOKEN))
        if refused := self._check_market(request):
            return refused
        body = request.json if isinstance(request.json, dict) else {}
        subscriber, transaction = body.get("subscriber"), body.get("transaction")
        if not isinstance(subscriber, dict) or not isinstance(transaction, dict):
            return self._refuse("Missing header/body params", None)
        msisdn = str(subscriber.get("msisdn") or "")
        if not _DIGITS.fullmatch(msisdn) or len(msisdn) != self.msisdn_length:
            return self._refuse(
                f"Invalid Msisdn Length. Msisdn Length should be {self.msisdn_length}", None
            )
        amount = _amount(transaction.get("amount"))
        if amount is None:
            return self._refuse("Invalid Amount", "DP00800001004")
        txn_id = str(transaction.get("id") or "")
        if not txn_id:
            return self._refuse("Missing header/body params", None)
        with self._lock:
            if txn_id in self.transactions:
                return self._refuse(f"Duplicate transaction id {txn_id}", "DP00800001009")
            # the callback URL is the one registered in Airtel's portal
            txn = self.take(txn_id, request, self.callback_url, amount=amount, msisdn=msisdn)
        return Reply(
            200,
            {
                "data": {"transaction": {"id": txn_id, "status": "SUCCESS"}},
                "status": _envelope("200", "SUCCESS", RESPONSE_CODES[IN_PROGRESS], True),
            },
            after=[self.callback_later(txn)],
        )

    def _enquiry(self, request: Recorded, txn_id: str) -> Reply:
        if not self.token_valid(request):
            return Reply(401, dict(_INVALID_TOKEN))
        if refused := self._check_market(request):
            return refused
        txn = self.transactions.get(txn_id)
        if txn is None:
            return Reply(
                404,
                {"status": _envelope("404", "Transaction Not Found", "DP00800001025", False)},
            )
        outcome = txn.outcome
        if outcome is None:
            found: dict[str, Any] = {"airtel_money_id": None, "id": txn_id}
            found |= {"message": "In process", "status": IN_PROGRESS}
            code = RESPONSE_CODES[IN_PROGRESS]
        else:
            assert isinstance(outcome, AirtelResult)
            found = {**self._result(txn), "status": outcome.status}
            code = outcome.response_code or RESPONSE_CODES.get(outcome.status, "DP00800001000")
        return Reply(
            200, {"data": {"transaction": found}, "status": _envelope("200", "SUCCESS", code, True)}
        )

    def _check_market(self, request: Recorded) -> Reply | None:
        if request.headers.get("X-Country") != self.country:
            return self._refuse("Invalid Country Code", None)
        if request.headers.get("X-Currency") != self.currency:
            return self._refuse("Invalid/Missing Currency", None)
        return None

    def _refuse(self, message: str, response_code: str | None) -> Reply:
        return Reply(400, {"status": _envelope("400", message, response_code, False)})

    # --- callbacks ----------------------------------------------------------------

    def _result(self, txn: Transaction) -> dict[str, Any]:
        outcome = txn.outcome
        assert isinstance(outcome, AirtelResult)
        money_id = txn.data.setdefault("airtel_money_id", outcome.airtel_money_id or money_id_())
        amount = outcome.amount if outcome.amount is not None else txn.data["amount"]
        if outcome.message is not None:
            message = outcome.message
        elif outcome.status == SUCCESS:
            message = f"Paid {self.currency} {amount:,} to MOMO TEST LIMITED, Trans ID {money_id}."
        else:
            message = "Transaction failed"
        return {"id": txn.id, "message": message, "airtel_money_id": money_id}

    def callback_body(self, txn: Transaction) -> dict[str, Any]:
        """The callback Airtel posts for a decided push, hash included when it is on."""
        outcome = txn.outcome
        assert isinstance(outcome, AirtelResult)
        result = self._result(txn)
        transaction = {
            "id": result["id"],
            "message": result["message"],
            "status_code": outcome.status,
            "airtel_money_id": result["airtel_money_id"],
        }
        body: dict[str, Any] = {"transaction": transaction}
        if self.callback_key is not None and outcome.hash != NO_HASH:
            signed = transaction
            if outcome.hash == TAMPERED:
                flipped = FAILED if outcome.status == SUCCESS else SUCCESS
                signed = {**transaction, "status_code": flipped}
            body["hash"] = sign(signed, self.callback_key)
        return body

    def _callback_for(self, txn: Transaction) -> tuple[str, str, bytes]:
        assert txn.callback_url is not None
        body = json.dumps(self.callback_body(txn), separators=(",", ":")).encode()
        return "POST", txn.callback_url, body


def money_id_() -> str:
    """A new Airtel Money transaction id, like MP210603.1234.L06941."""
    now = datetime.now(UTC)
    letter = secrets.choice(string.ascii_uppercase)
    return f"MP{now:%y%m%d}.{now:%H%M}.{letter}{new_id(string.digits, 5)}"


def _amount(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount > 0 else None
