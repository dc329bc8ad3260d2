"""A fake MTN MoMo Open API, collection product: token, request-to-pay, its status, callbacks.

Shapes follow MTN's MoMo developer portal (momodeveloper.mtn.com, Collection:
CreateAccessToken, RequesttoPay, RequesttoPayTransactionStatus) as used by
sparkplug/momoapi-node (src/common.ts: token ``{access_token, token_type, expires_in}``
with a numeric ``expires_in``; statuses PENDING, SUCCESSFUL, FAILED; failure reasons
APPROVAL_REJECTED, EXPIRED, PAYER_NOT_FOUND, NOT_ENOUGH_FUNDS, ...; error bodies
``{code, message}``) and global-121/121-platform's mock-service (409
RESOURCE_ALREADY_EXIST for a repeated X-Reference-Id, 404 RESOURCE_NOT_FOUND). The
subscription-key refusal body is Azure API Management's, as users quote it
(mtvbrianking/laravel-mtn-momo#77); a wrong API user or key gives ``{"error":
"login_failed"}`` (#46, where the sandbox answered it with status 500; 401 here). The
sandbox takes only EUR. The callback repeats the status body and comes as PUT, or
sometimes POST, to X-Callback-Url (integrations route both, e.g. wutsi's MTNController);
a status ``reason`` is a string, or on older answers an object ``{code, message}``.

Not confirmed, chosen here: the body for a rejected bearer token and for a wrong
X-Target-Environment, and the 400 for a malformed X-Reference-Id or body.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
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
    basic_auth,
    to_json,
)

API_USER: Final = "0f4b6c5e-8a0d-4c1b-9a7e-3d2f1e0c9b8a"
API_KEY: Final = "mtn-api-key"
SUBSCRIPTION_KEY: Final = "mtn-subscription-key"

PENDING: Final = "PENDING"
SUCCESSFUL: Final = "SUCCESSFUL"
FAILED: Final = "FAILED"
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]{6,15}")


@dataclass(frozen=True)
class MtnResult(Outcome):
    """How a request-to-pay ends, as its status GET shows it.

    ``amount`` (a string, as MTN writes it; None: the amount asked for);
    ``reason`` for FAILED: a string such as "APPROVAL_REJECTED" or a dict {code, message};
    ``callback_status`` makes the callback say another status than the GET does;
    ``callback_method``: "PUT" or "POST".
    """

    status: str = SUCCESSFUL
    reason: str | dict[str, str] | None = None
    amount: str | None = None
    financial_transaction_id: str | None = None
    callback_status: str | None = None
    callback_method: str = "PUT"


def _err(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


_DENIED_KEY: Final = {
    "statusCode": 401,
    "message": "Access denied due to invalid subscription key. Make sure to provide a valid "
    "key for an active subscription.",
}
_DENIED_TOKEN: Final = {"statusCode": 401, "message": "Access denied due to invalid token."}


class MtnFake(FakeProvider):
    """MTN's sandbox, collection product, on loopback. Callbacks go to X-Callback-Url."""

    ROUTES = (
        ("POST", r"/collection/token/?", TOKEN, "_token"),
        ("POST", r"/collection/v1_0/requesttopay", PAY, "_request_to_pay"),
        ("GET", r"/collection/v1_0/requesttopay/([^/]+)", QUERY, "_status"),
    )
    REFUSALS: ClassVar[dict[str, tuple[int, Any]]] = {
        "payer_not_found": (404, _err("PAYER_NOT_FOUND", "Payer not found.")),
        "invalid_currency": (500, _err("INVALID_CURRENCY", "Currency not supported.")),
        "payer_limit_reached": (400, _err("PAYER_LIMIT_REACHED", "Payer limit reached.")),
        "not_allowed": (
            403,
            _err("NOT_ALLOWED", "Authorization failed. Insufficient permissions."),
        ),
    }
    ESSENTIAL: ClassVar[dict[str, tuple[str, ...]]] = {
        TOKEN: ("access_token",),
        QUERY: ("status",),
    }

    def __init__(
        self,
        api_user: str = API_USER,
        api_key: str = API_KEY,
        subscription_key: str = SUBSCRIPTION_KEY,
        target_environment: str = "sandbox",
        currency: str = "EUR",
        token_lifetime: float = 3600,
    ) -> None:
        super().__init__(token_lifetime)
        self.api_user, self.api_key, self.subscription_key = api_user, api_key, subscription_key
        self.target_environment, self.currency = target_environment, currency
        self.default_outcome = MtnResult()

    def _error(self, status: int) -> Reply:
        return Reply(status, _err("INTERNAL_PROCESSING_ERROR", "An internal error occurred."))

    # --- endpoints ----------------------------------------------------------------

    def _token(self, request: Recorded) -> Reply:
        if refused := self._check_subscription(request):
            return refused
        if basic_auth(request) != (self.api_user, self.api_key):
            return Reply(401, {"error": "login_failed"})
        return Reply(
            200,
            {
                "access_token": self.issue_token(),
                "token_type": "access_token",
                "expires_in": int(self.token_lifetime),
            },
        )

    def _request_to_pay(self, request: Recorded) -> Reply:
        if refused := self._check_call(request):
            return refused
        reference = request.headers.get("X-Reference-Id", "")
        try:
            uuid.UUID(reference)
        except ValueError:
            return Reply(400, {"message": "X-Reference-Id must be a valid UUID."})
        callback_url = request.headers.get("X-Callback-Url")
        if callback_url is not None and not callback_url.startswith(("http://", "https://")):
            return Reply(400, _err("INVALID_CALLBACK_URL_HOST", "Callback URL is not valid."))
        body = request.json if isinstance(request.json, dict) else {}
        payer = body.get("payer")
        if not isinstance(body.get("amount"), str) or not _AMOUNT.fullmatch(body["amount"]):
            return Reply(400, _err("INVALID_AMOUNT", "Amount must be a string of digits."))
        if body.get("currency") != self.currency:
            return Reply(500, _err("INVALID_CURRENCY", "Currency not supported."))
        if (
            not isinstance(payer, dict)
            or payer.get("partyIdType") != "MSISDN"
            or not _DIGITS.fullmatch(str(payer.get("partyId") or ""))
        ):
            return Reply(400, _err("PAYER_NOT_FOUND", "Payer not found."))
        with self._lock:
            if reference in self.transactions:
                return Reply(
                    409,
                    _err(
                        "RESOURCE_ALREADY_EXIST",
                        "Duplicated reference id. Creation of resource failed.",
                    ),
                )
            txn = self.take(reference, request, callback_url, body=body)
        return Reply(202, after=[self.callback_later(txn)])

    def _status(self, request: Recorded, reference: str) -> Reply:
        if refused := self._check_call(request):
            return refused
        txn = self.transactions.get(reference)
        if txn is None:
            return Reply(404, _err("RESOURCE_NOT_FOUND", "Requested resource was not found."))
        outcome = txn.outcome
        if outcome is None:
            return Reply(200, self._body(txn, PENDING))
        assert isinstance(outcome, MtnResult)
        return Reply(200, self._body(txn, outcome.status))

    def _check_subscription(self, request: Recorded) -> Reply | None:
        key = request.headers.get("Ocp-Apim-Subscription-Key")
        if key is None:
            return Reply(
                401,
                {
                    "statusCode": 401,
                    "message": "Access denied due to missing subscription key. Make sure to "
                    "include subscription key when making requests to an API.",
                },
            )
        return None if key == self.subscription_key else Reply(401, dict(_DENIED_KEY))

    def _check_call(self, request: Recorded) -> Reply | None:
        if refused := self._check_subscription(request):
            return refused
        if not self.token_valid(request):
            return Reply(401, dict(_DENIED_TOKEN))
        if request.headers.get("X-Target-Environment") != self.target_environment:
            return Reply(
                403,
                _err(
                    "NOT_ALLOWED_TARGET_ENVIRONMENT", "Access to target environment is forbidden."
                ),
            )
        return None

    # --- callbacks ----------------------------------------------------------------

    def _body(self, txn: Transaction, status: str) -> dict[str, Any]:
        """The status GET's body (and the callback's) with ``status``."""
        asked = txn.data["body"]
        outcome = txn.outcome
        body: dict[str, Any] = {
            "amount": asked["amount"],
            "currency": asked["currency"],
            "externalId": asked.get("externalId"),
            "payer": asked["payer"],
            "payerMessage": asked.get("payerMessage"),
            "payeeNote": asked.get("payeeNote"),
            "status": status,
        }
        if isinstance(outcome, MtnResult):
            if outcome.amount is not None:
                body["amount"] = outcome.amount
            if status == SUCCESSFUL:
                txn.data.setdefault(
                    "financial_transaction_id",
                    outcome.financial_transaction_id or str(secrets.randbelow(9 * 10**9) + 10**9),
                )
                body = {"financialTransactionId": txn.data["financial_transaction_id"], **body}
            elif status == FAILED:
                body["reason"] = outcome.reason or "INTERNAL_PROCESSING_ERROR"
        return body

    def callback_body(self, txn: Transaction) -> dict[str, Any]:
        outcome = txn.outcome
        assert isinstance(outcome, MtnResult)
        return self._body(txn, outcome.callback_status or outcome.status)

    def _callback_for(self, txn: Transaction) -> tuple[str, str, bytes]:
        outcome = txn.outcome
        assert isinstance(outcome, MtnResult) and txn.callback_url is not None
        return outcome.callback_method, txn.callback_url, to_json(self.callback_body(txn))
