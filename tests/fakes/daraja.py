"""A fake Safaricom Daraja: OAuth, M-PESA Express (STK push) and its query, STK callbacks.

Shapes follow Safaricom's own Daraja 3.0 pages (developer.safaricom.co.ke/apis/
Authorization, /MpesaExpressSimulate, /MpesaExpressQuery; read from the copy kept in
github.com/JacksCodeVault/mpesa-daraja-mcp, daraja_docs_v3/docs/), the STK samples in
/work/shared/samples/mpesa (a callback's Amount, TransactionDate and PhoneNumber are JSON
numbers; a ``Balance`` item may come without a Value) and errors reported by users:
"404.001.03 Invalid Access Token" (safaricom/LNMOnlineAndroidSample#11) and the query's
"500.001.1001 The transaction is being processed" while the customer has not answered
(safaricom/LNMOnlineAndroidSample#13).

C2B URL registration follows the "Customer To Business (C2B)" page (POST
/mpesa/c2b/v2/registerurl, its answer with Daraja's spelling "OriginatorCoversationID",
its error table: "500.003.1001 Urls are already registered.") and the "Register URL" page
(production URLs https only, the sandbox takes http; no "M-PESA", "Safaricom", "exe",
"exec", "cmd", "SQL" or "query" in any case; ResponseType "Completed" or "Cancelled" in
sentence case; registering again overwrites in the sandbox, production registers once).

Not confirmed, chosen here: a wrong consumer key or secret answers 400 with
400.008.01 (Safaricom documents 400.008.01 for a wrong authentication *type*; users
report an empty 400 for wrong keys); an unknown CheckoutRequestID in a query answers
400.002.02 "Bad Request - Invalid CheckoutRequestID"; a URL or field registration refuses
answers 400 with 400.003.02 "Bad Request - Invalid <Field>" (the table's 400.003.02).

Pull Transactions (/pulltransactions/v1/register and /query, Safaricom's PullTransaction
page). Confirmed there: the register body {ShortCode, RequestType "Pull",
NominatedNumber, CallBackURL} and its answer {ResponseRefID, ResponseStatus "1000",
ShortCode, ResponseDescription}, "1001" when the shortcode is registered already; the
query body {ShortCode, StartDate, EndDate ("YYYY-MM-DD HH:MM:SS" or without seconds),
OffSetValue}, the offset being the row to start from; the answer's ResponseRefID,
ResponseCode "1000" and ResponseMessage; the record fields transactionId, trxDate
("2020-08-05T10:13:00Z"), msisdn (a bare national number), transactiontype
("c2b-pay-bill-debit"), billreference, amount (a number: 233.8) and organizationname;
code 1001 with "[[]]" when there is nothing; transactions are kept 48 hours; pulling
needs registering first; error 400.001 "Invalid ShortCode".
Chosen here: the query is a POST, as its request body and the table of endpoints say
(the page's "GET for Pull transaction" contradicts them); the records are under
``Response`` as a list nested in a list (the page's answer sample repeats the request);
``sender`` is the payer's name; a till's payment is "c2b-buy-goods-debit"; trxDate's "Z"
labels Nairobi wall-clock time; a page holds ``pull_page_size`` records; a StartDate
more than 48 hours ago, or a query before registering, answers 400 400.002.02 with the
reason; the nominated number must be the one the fake was given (``nominated_number``),
in 07... or 2547... form. A successful STK payment is one of the shortcode's C2B
payments too, listed as a pay bill.

Transaction Status (POST /mpesa/transactionstatus/v1/query) and Reversal (POST
/mpesa/reversal/v1/request), from Safaricom's TransactionStatus and Reversal pages (same
copy). Confirmed there: the request fields (Initiator, SecurityCredential, CommandID
TransactionStatusQuery / TransactionReversal, TransactionID, PartyA + IdentifierType 4,
ReceiverParty + RecieverIdentifierType 11 in Daraja's own spelling, ResultURL,
QueueTimeOutURL, Remarks, Occasion); the synchronous answer {OriginatorConversationID,
ConversationID, ResponseCode "0", ResponseDescription "Accept the service request
successfully."}; the result {"Result": {ResultType, ResultCode, ResultDesc,
OriginatorConversationID, ConversationID, TransactionID, ResultParameters:
{ResultParameter: [{Key, Value}]}, ReferenceData: {ReferenceItem}}}, the status keys
(DebitPartyName "<number> - <NAME>", ReceiptNo, Amount as a string, TransactionStatus
"Completed", InitiatedTime / FinalisedTime YYYYMMDDHHMMSS strings) and the reversal keys
(OriginalTransactionID, Amount as a JSON number, TransCompletedTime as a JSON number,
CreditPartyPublicName, DebitPartyPublicName, Charge, DebitAccountBalance); ResultCode
R000001 (already reversed) and R000002 (OriginalTransactionID invalid) for a reversal;
ResultCode 2001 "The initiator information is invalid." for a wrong initiator
(dkiptugen/mpesa-php-full-integration#1).

Chosen here, not confirmed: a status lookup of a receipt M-PESA does not know ends with
ResultCode "R000002" (the pages list no code for it); a status result names only the
payer as DebitPartyName (the page's B2C sample names two parties); a reversed payment's
TransactionStatus is "Reversed"; a wrong initiator is refused in the result, not in the
synchronous answer; QueueTimeOutURL is never used (M-PESA always answers here).
"""

from __future__ import annotations

import base64
import re
import secrets
import string
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo

from tests.fakes.base import (
    PAY,
    QUERY,
    TOKEN,
    Delivery,
    FakeProvider,
    Outcome,
    Recorded,
    Reply,
    Transaction,
    basic_auth,
    new_id,
    to_json,
)

#: the endpoints of Transaction Status and Reversal, for calls() and the fault controls
STATUS: Final = "status"
REVERSAL: Final = "reversal"
INITIATOR_NAME: Final = "testapi"
SECURITY_CREDENTIAL: Final = "c2VjdXJpdHktY3JlZGVudGlhbC1mb3ItdGhlLWZha2U="
ACCEPTED: Final = "Accept the service request successfully."
PROCESSED: Final = "The service request is processed successfully."
#: a status lookup of a receipt M-PESA does not know (chosen, see the module docstring)
UNKNOWN_RECEIPT: Final = "R000002"
ALREADY_REVERSED: Final = "R000001"
INVALID_INITIATOR: Final = 2001
_STATUS_FIELDS = (
    "Initiator",
    "SecurityCredential",
    "CommandID",
    "TransactionID",
    "PartyA",
    "IdentifierType",
    "ResultURL",
    "QueueTimeOutURL",
    "Remarks",
)
_REVERSAL_FIELDS = (
    "Initiator",
    "SecurityCredential",
    "CommandID",
    "TransactionID",
    "Amount",
    "ReceiverParty",
    "RecieverIdentifierType",
    "ResultURL",
    "QueueTimeOutURL",
    "Remarks",
)

CONSUMER_KEY: Final = "daraja-consumer-key"
CONSUMER_SECRET: Final = "daraja-consumer-secret"
#: Safaricom's public sandbox shortcode and its published test passkey
SHORTCODE: Final = "174379"
PASSKEY: Final = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"

SUCCESS: Final = 0
INSUFFICIENT_FUNDS: Final = 1
BELOW_MINIMUM: Final = 2
ABOVE_MAXIMUM: Final = 3
CANCELLED: Final = 1032
UNREACHABLE: Final = 1037
WRONG_PIN: Final = 2001
#: ResultDesc per ResultCode, from the MpesaExpressSimulate result code table
RESULT_DESCS: Final = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    1019: "Transaction has expired.",
    1025: "An error occurred while sending a push request.",
    1032: "Request cancelled by user",
    1037: "DS timeout user cannot be reached",
    2001: "The initiator information is invalid.",
}
NAIROBI: Final = ZoneInfo("Africa/Nairobi")
#: Pull Transactions' endpoints, named for fail_next() and the like
PULL_REGISTER: Final = "pull_register"
PULL_QUERY: Final = "pull_query"
#: how long Daraja keeps transactions for pulling
PULL_WINDOW: Final = timedelta(hours=48)
PULL_TYPES: Final = {"Pay Bill": "c2b-pay-bill-debit", "Buy Goods": "c2b-buy-goods-debit"}
ORGANIZATION: Final = "MOMO DEMO LTD"
NOMINATED_NUMBER: Final = "0722000000"
_PHONE = re.compile(r"254(7|1)[0-9]{8}")
_TIMESTAMP = re.compile(r"[0-9]{14}")
_TYPES = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})
#: the C2B URL registration endpoint
REGISTER: Final = "register"
#: what Daraja refuses anywhere in a registered URL, in any case (the Register URL page)
REFUSED_URL_WORDS: Final = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
_RESPONSE_TYPES = frozenset({"Completed", "Cancelled"})
_PUSH_FIELDS = (
    "BusinessShortCode",
    "Password",
    "Timestamp",
    "TransactionType",
    "Amount",
    "PartyA",
    "PartyB",
    "PhoneNumber",
    "CallBackURL",
    "AccountReference",
)


@dataclass(frozen=True)
class StkResult(Outcome):
    """How a push ends. ``amount`` None means the amount asked for; ``receipt`` None, a new one."""

    code: int = SUCCESS
    desc: str | None = None
    amount: Decimal | None = None
    receipt: str | None = None
    paid_at: datetime | None = None


@dataclass
class C2BPayment:
    """A customer's payment to the shortcode (Pay Bill or Buy Goods), as M-PESA keeps it.

    Every C2B flow of the fake reads these: the confirmation posted to the registered URL,
    the pull and the transaction status answers, and reversals (which set ``reversed_by``).
    """

    receipt: str
    amount: Decimal
    #: the payer's number, 2547XXXXXXXX
    msisdn: str
    #: aware; Daraja writes it in Nairobi time
    paid_at: datetime
    account: str
    first_name: str = "JOHN"
    last_name: str = "DOE"
    transaction_type: str = "Pay Bill"
    #: the receipt of the reversal that undid it, once reversed
    reversed_by: str | None = None

    def confirmation(self, shortcode: str) -> dict[str, Any]:
        """The C2B confirmation body Daraja posts to the registered ConfirmationURL."""
        return {
            "TransactionType": self.transaction_type,
            "TransID": self.receipt,
            "TransTime": self.paid_at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"),
            "TransAmount": f"{self.amount:.2f}",
            "BusinessShortCode": shortcode,
            "BillRefNumber": self.account,
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": self.msisdn,
            "FirstName": self.first_name,
            "MiddleName": "",
            "LastName": self.last_name,
        }

    def pulled(self) -> dict[str, Any]:
        """The payment as Pull Transactions lists it."""
        return {
            "transactionId": self.receipt,
            "trxDate": self.paid_at.astimezone(NAIROBI).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "msisdn": self.msisdn.removeprefix("254"),
            "sender": f"{self.first_name} {self.last_name}".strip(),
            "transactiontype": PULL_TYPES.get(self.transaction_type, self.transaction_type),
            "billreference": self.account,
            "amount": self.amount,
            "organizationname": ORGANIZATION,
        }


def password(shortcode: str, passkey: str, timestamp: str) -> str:
    """Daraja's Password field: base64(shortcode + passkey + timestamp)."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def _error(code: str, message: str) -> dict[str, str]:
    hex_ = "0123456789abcdef"
    request_id = f"{new_id(hex_, 4)}-{new_id(hex_, 4)}-{secrets.randbelow(10**7)}"
    return {"requestId": request_id, "errorCode": code, "errorMessage": message}


class DarajaFake(FakeProvider):
    """Daraja's sandbox (production's URL rules with ``sandbox=False``), on loopback.
    STK callbacks go to each push's CallBackURL, C2B confirmations to the registered
    ConfirmationURL."""

    ROUTES = (
        ("GET", r"/oauth/v1/generate", TOKEN, "_token"),
        ("POST", r"/mpesa/stkpush/v1/processrequest", PAY, "_push"),
        ("POST", r"/mpesa/stkpushquery/v1/query", QUERY, "_query"),
        ("POST", r"/mpesa/c2b/v2/registerurl", REGISTER, "_register_urls"),
        ("POST", r"/pulltransactions/v1/register", PULL_REGISTER, "_pull_register"),
        ("POST", r"/pulltransactions/v1/query", PULL_QUERY, "_pull_query"),
        ("POST", r"/mpesa/transactionstatus/v1/query", STATUS, "_status"),
        ("POST", r"/mpesa/reversal/v1/request", REVERSAL, "_reversal"),
    )
    REFUSALS: ClassVar[dict[str, tuple[int, Any]]] = {
        "invalid_phone": (400, ("400.002.02", "Bad Request - Invalid PhoneNumber")),
        "invalid_amount": (400, ("400.002.02", "Bad Request - Invalid Amount")),
        "wrong_credentials": (500, ("500.001.1001", "Wrong credentials")),
        "subscriber_locked": (
            500,
            (
                "500.001.1001",
                "Unable to lock subscriber, a transaction is already in process for the "
                "current subscriber",
            ),
        ),
        "spike_arrest": (500, ("500.003.02", "Error Occurred: Spike Arrest Violation")),
        "urls_already_registered": (500, ("500.003.1001", "Urls are already registered.")),
        "invalid_transaction_id": (400, ("400.002.02", "Bad Request - Invalid TransactionID")),
    }
    ESSENTIAL: ClassVar[dict[str, tuple[str, ...]]] = {
        TOKEN: ("access_token",),
        PAY: ("CheckoutRequestID", "ResponseCode"),
        QUERY: ("ResultCode",),
        REGISTER: ("ResponseCode",),
        PULL_REGISTER: ("ResponseStatus",),
        PULL_QUERY: ("ResponseCode", "Response"),
        STATUS: ("ConversationID", "OriginatorConversationID", "ResponseCode"),
        REVERSAL: ("ConversationID", "OriginatorConversationID", "ResponseCode"),
    }

    def __init__(
        self,
        consumer_key: str = CONSUMER_KEY,
        consumer_secret: str = CONSUMER_SECRET,
        shortcode: str = SHORTCODE,
        passkey: str = PASSKEY,
        token_lifetime: float = 3599,
        initiator_name: str = INITIATOR_NAME,
        security_credential: str = SECURITY_CREDENTIAL,
        nominated_number: str = NOMINATED_NUMBER,
        *,
        sandbox: bool = True,
    ) -> None:
        super().__init__(token_lifetime)
        #: the sandbox takes plain http URLs and registration again; production neither
        self.sandbox = sandbox
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.shortcode, self.passkey = shortcode, passkey
        self.default_outcome = StkResult()
        self._count = 0
        #: every C2B payment to the shortcode, by receipt, oldest first
        self.c2b: dict[str, C2BPayment] = {}
        #: where C2B confirmations are posted (set by URL registration, or by a test)
        self.confirmation_url: str | None = None
        self.validation_url: str | None = None
        #: the registered ResponseType (what M-PESA does when validation cannot be reached)
        self.response_type: str | None = None
        #: Pull Transactions: the shortcode's nominated number, whether the shortcode is
        #: registered for pulling and the CallBackURL it was registered with, and how many
        #: records one page of a pull holds
        self.nominated_number = nominated_number
        self.pull_registered = False
        self.pull_callback_url: str | None = None
        self.pull_page_size = 100
        self.initiator_name, self.security_credential = initiator_name, security_credential
        #: seconds between a Transaction Status or Reversal answer and its result callback
        self.result_delay = 0.2
        #: how often each result is posted (2: M-PESA repeats itself)
        self.result_copies = 1
        #: every result posted, by the ConversationID it answers
        self.results: dict[str, dict[str, Any]] = {}

    def _error(self, status: int) -> Reply:
        return Reply(status, _error("500.003.1001", "Internal Server Error"))

    def _refusal_body(self, body: Any) -> Any:
        return _error(*body) if isinstance(body, tuple) else body

    # --- endpoints ----------------------------------------------------------------

    def _token(self, request: Recorded) -> Reply:
        if request.query.get("grant_type") != "client_credentials":
            return Reply(400, _error("400.008.02", "Invalid grant type passed"))
        if basic_auth(request) != (self.consumer_key, self.consumer_secret):
            return Reply(400, _error("400.008.01", "Invalid Authentication passed"))
        token = self.issue_token()
        return Reply(200, {"access_token": token, "expires_in": str(int(self.token_lifetime))})

    def _push(self, request: Recorded) -> Reply:
        if not self.token_valid(request):
            return Reply(404, _error("404.001.03", "Invalid Access Token"))
        body = request.json
        if not isinstance(body, dict):
            return _bad("Body")
        for name in _PUSH_FIELDS:
            if str(body.get(name) or "").strip() == "":
                return _bad(name)
        if refused := self._check_credentials(body):
            return refused
        if body["TransactionType"] not in _TYPES:
            return _bad("TransactionType")
        amount = _amount(body["Amount"])
        if amount is None:
            return _bad("Amount")
        for name in ("PartyA", "PhoneNumber"):
            if not _PHONE.fullmatch(str(body[name])):
                return _bad(name)
        if not str(body["CallBackURL"]).startswith(("http://", "https://")):
            return _bad("CallBackURL")
        with self._lock:
            self._count += 1
            count = self._count
        stamp = datetime.now(NAIROBI).strftime("%d%m%Y%H%M%S")
        merchant_id = f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(10**8)}-{count}"
        checkout_id = f"ws_CO_{stamp}{count:010d}"
        txn = self.take(
            checkout_id,
            request,
            str(body["CallBackURL"]),
            merchant_request_id=merchant_id,
            amount=amount,
            phone=int(body["PhoneNumber"]),
        )
        accepted = "Success. Request accepted for processing"
        reply = {
            "MerchantRequestID": merchant_id,
            "CheckoutRequestID": checkout_id,
            "ResponseCode": "0",
            "ResponseDescription": accepted,
            "CustomerMessage": accepted,
        }
        return Reply(200, reply, after=[self.callback_later(txn)])

    def _query(self, request: Recorded) -> Reply:
        if not self.token_valid(request):
            return Reply(404, _error("404.001.03", "Invalid Access Token"))
        body = request.json
        if not isinstance(body, dict):
            return _bad("Body")
        for name in ("BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID"):
            if str(body.get(name) or "").strip() == "":
                return _bad(name)
        if refused := self._check_credentials(body):
            return refused
        txn = self.transactions.get(str(body["CheckoutRequestID"]))
        if txn is None:
            return _bad("CheckoutRequestID")
        outcome = txn.outcome
        if outcome is None:
            return Reply(500, _error("500.001.1001", "The transaction is being processed"))
        assert isinstance(outcome, StkResult)
        return Reply(
            200,
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successsfully",
                "MerchantRequestID": txn.data["merchant_request_id"],
                "CheckoutRequestID": txn.id,
                "ResultCode": str(outcome.code),
                "ResultDesc": _desc(outcome),
            },
        )

    def _register_urls(self, request: Recorded) -> Reply:
        if not self.token_valid(request):
            return Reply(404, _error("404.001.03", "Invalid Access Token"))
        body = request.json
        if not isinstance(body, dict):
            return Reply(400, _error("400.002.05", "Invalid Request Payload"))
        if str(body.get("ShortCode") or "").strip() != self.shortcode:
            return _bad_registration("ShortCode")
        if body.get("ResponseType") not in _RESPONSE_TYPES:
            return _bad_registration("ResponseType")
        for name in ("ConfirmationURL", "ValidationURL"):
            url = body.get(name)
            if not isinstance(url, str) or not self._registrable(url):
                return _bad_registration(name)
        with self._lock:
            if not self.sandbox and self.confirmation_url is not None:
                return Reply(500, _error("500.003.1001", "Urls are already registered."))
            self.confirmation_url = body["ConfirmationURL"]
            self.validation_url = body["ValidationURL"]
            self.response_type = body["ResponseType"]
        conversation = f"{new_id('0123456789abcdef', 4)}-{new_id('0123456789abcdef', 4)}"
        return Reply(
            200,
            {
                "OriginatorCoversationID": f"{conversation}-{secrets.randbelow(10**7)}",
                "ResponseCode": "0",
                "ResponseDescription": "Success",
            },
        )

    def _registrable(self, url: str) -> bool:
        lowered = url.lower()
        if any(word in lowered for word in REFUSED_URL_WORDS):
            return False
        return lowered.startswith("https://") or (self.sandbox and lowered.startswith("http://"))

    def _check_credentials(self, body: dict[str, Any]) -> Reply | None:
        shortcode, stamp = str(body["BusinessShortCode"]), str(body["Timestamp"])
        if not _TIMESTAMP.fullmatch(stamp):
            return _bad("Timestamp")
        if shortcode != self.shortcode:
            return Reply(500, _error("500.001.1001", "Merchant does not exist"))
        if body["Password"] != password(shortcode, self.passkey, stamp):
            return Reply(500, _error("500.001.1001", "Wrong credentials"))
        return None

    # --- Pull Transactions -----------------------------------------------------------

    def _pull_register(self, request: Recorded) -> Reply:
        if not self.token_valid(request):
            return Reply(404, _error("404.001.03", "Invalid Access Token"))
        body = request.json
        if not isinstance(body, dict):
            return _bad("Body")
        for name in ("ShortCode", "RequestType", "NominatedNumber", "CallBackURL"):
            if str(body.get(name) or "").strip() == "":
                return _bad(name)
        if str(body["ShortCode"]) != self.shortcode:
            return Reply(400, _error("400.001", "Invalid ShortCode"))
        if body["RequestType"] != "Pull":
            return _bad("RequestType")
        if _national(str(body["NominatedNumber"])) != _national(self.nominated_number):
            return _bad("NominatedNumber")
        if not str(body["CallBackURL"]).startswith(("http://", "https://")):
            return _bad("CallBackURL")
        with self._lock:
            again = self.pull_registered
            self.pull_registered = True
            self.pull_callback_url = str(body["CallBackURL"])
        return Reply(
            200,
            {
                "ResponseRefID": _ref_id(),
                "ResponseStatus": "1001" if again else "1000",
                "ShortCode": self.shortcode,
                "ResponseDescription": "ShortCode already Registered"
                if again
                else "Shortcode Registered Successfully",
            },
        )

    def _pull_query(self, request: Recorded) -> Reply:
        if not self.token_valid(request):
            return Reply(404, _error("404.001.03", "Invalid Access Token"))
        body = request.json
        if not isinstance(body, dict):
            return _bad("Body")
        for name in ("ShortCode", "StartDate", "EndDate", "OffSetValue"):
            if str(body.get(name) or "").strip() == "":
                return _bad(name)
        if str(body["ShortCode"]) != self.shortcode:
            return Reply(400, _error("400.001", "Invalid ShortCode"))
        if not self.pull_registered:
            return Reply(
                400, _error("400.002.02", "Bad Request - ShortCode not registered for Pull")
            )
        start, end = _pull_time(body["StartDate"]), _pull_time(body["EndDate"])
        if start is None:
            return _bad("StartDate")
        if end is None:
            return _bad("EndDate")
        offset = str(body["OffSetValue"]).strip()
        if not offset.isdigit():
            return _bad("OffSetValue")
        if start < datetime.now(NAIROBI) - PULL_WINDOW:
            return Reply(
                400,
                _error("400.002.02", "Bad Request - StartDate is more than 48 hours ago"),
            )
        with self._lock:
            for txn in list(self.transactions.values()):
                if isinstance(txn.outcome, StkResult) and txn.outcome.code == SUCCESS:
                    self._stk_paid(txn, txn.outcome)
            found = sorted(
                (p for p in self.c2b.values() if start <= p.paid_at.replace(microsecond=0) <= end),
                key=lambda p: (p.paid_at, p.receipt),
            )
        page = found[int(offset) : int(offset) + self.pull_page_size]
        if not page:
            return Reply(
                200,
                {
                    "ResponseRefID": _ref_id(),
                    "ResponseCode": "1001",
                    "ResponseMessage": "No transactions available for the selected period",
                    "Response": [[]],
                },
            )
        return Reply(
            200,
            {
                "ResponseRefID": _ref_id(),
                "ResponseCode": "1000",
                "ResponseMessage": "Success",
                "Response": [[p.pulled() for p in page]],
            },
        )

    # --- Transaction Status and Reversal --------------------------------------------

    def _initiator_call(
        self, request: Recorded, fields: tuple[str, ...], command: str
    ) -> dict[str, Any] | Reply:
        """The call's body once its token and fields are right, else Daraja's refusal."""
        if not self.token_valid(request):
            return Reply(404, _error("404.001.03", "Invalid Access Token"))
        body = request.json
        if not isinstance(body, dict):
            return _bad("Body")
        for name in fields:
            if str(body.get(name) or "").strip() == "":
                return _bad(name)
        if body["CommandID"] != command:
            return _bad("CommandID")
        for name in ("ResultURL", "QueueTimeOutURL"):
            if not str(body[name]).startswith(("http://", "https://")):
                return _bad(name)
        return body

    def _accepted(self, body: dict[str, Any], result: dict[str, Any]) -> Reply:
        with self._lock:
            self._count += 1
            count = self._count
        stamp = datetime.now(NAIROBI).strftime("%Y%m%d")
        originator = f"{new_id('0123456789abcdef', 4)}-{secrets.randbelow(10**7)}-{count}"
        conversation = f"AG_{stamp}_{secrets.token_hex(10)}"
        document = {
            "Result": {
                "ResultType": 0,
                "OriginatorConversationID": originator,
                "ConversationID": conversation,
                "ReferenceData": {"ReferenceItem": {"Key": "Occasion", "Value": "momo"}},
                **result,
            }
        }
        with self._lock:
            self.results[conversation] = document
        url = str(body["ResultURL"])
        reply = {
            "OriginatorConversationID": originator,
            "ConversationID": conversation,
            "ResponseCode": "0",
            "ResponseDescription": ACCEPTED,
        }
        return Reply(200, reply, after=[lambda: self._post_later(url, document)])

    def _post_later(self, url: str, document: dict[str, Any]) -> None:
        copies, delay = self.result_copies, self.result_delay

        def send() -> None:
            if delay and self._closed.wait(delay):
                return
            for _ in range(copies):
                if not self._closed.is_set():
                    self._deliver("POST", url, to_json(document))

        threading.Thread(target=send, name="fake-result", daemon=True).start()

    def _initiator_refused(self, body: dict[str, Any]) -> dict[str, Any] | None:
        if (body["Initiator"], body["SecurityCredential"]) == (
            self.initiator_name,
            self.security_credential,
        ):
            return None
        return {
            "ResultCode": INVALID_INITIATOR,
            "ResultDesc": "The initiator information is invalid.",
            "TransactionID": _no_transaction(),
        }

    def _status(self, request: Recorded) -> Reply:
        body = self._initiator_call(request, _STATUS_FIELDS, "TransactionStatusQuery")
        if isinstance(body, Reply):
            return body
        if str(body["PartyA"]) != self.shortcode or str(body["IdentifierType"]) != "4":
            return _bad("PartyA")
        refused = self._initiator_refused(body)
        if refused is not None:
            return self._accepted(body, refused)
        with self._lock:
            payment = self.c2b.get(str(body["TransactionID"]).strip().upper())
        if payment is None:
            return self._accepted(
                body,
                {
                    "ResultCode": UNKNOWN_RECEIPT,
                    "ResultDesc": "The transaction receipt number does not exist.",
                    "TransactionID": _no_transaction(),
                },
            )
        when = payment.paid_at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")
        name = f"{payment.first_name} {payment.last_name}"
        parameters = [
            {"Key": "DebitPartyName", "Value": f"{payment.msisdn} - {name}"},
            {"Key": "CreditPartyName", "Value": f"{self.shortcode} - Fake Shortcode"},
            {"Key": "OriginatorConversationID", "Value": "0000-0000000-0"},
            {"Key": "InitiatedTime", "Value": when},
            {"Key": "DebitAccountType", "Value": "MMF Account For Customer"},
            {"Key": "DebitPartyCharges"},
            {"Key": "TransactionReason"},
            {"Key": "ReasonType", "Value": "Pay Bill Online"},
            {
                "Key": "TransactionStatus",
                "Value": "Reversed" if payment.reversed_by else "Completed",
            },
            {"Key": "FinalisedTime", "Value": when},
            {"Key": "Amount", "Value": f"{payment.amount:.2f}"},
            {"Key": "ConversationID", "Value": f"AG_{when[:8]}_{secrets.token_hex(8)}"},
            {"Key": "ReceiptNo", "Value": payment.receipt},
        ]
        return self._accepted(
            body,
            {
                "ResultCode": 0,
                "ResultDesc": PROCESSED,
                "TransactionID": receipt(),
                "ResultParameters": {"ResultParameter": parameters},
            },
        )

    def _reversal(self, request: Recorded) -> Reply:
        body = self._initiator_call(request, _REVERSAL_FIELDS, "TransactionReversal")
        if isinstance(body, Reply):
            return body
        if str(body["ReceiverParty"]) != self.shortcode:
            return _bad("ReceiverParty")
        if str(body["RecieverIdentifierType"]) != "11":
            return _bad("RecieverIdentifierType")
        amount = _amount(body["Amount"])
        if amount is None:
            return _bad("Amount")
        refused = self._initiator_refused(body)
        if refused is not None:
            return self._accepted(body, refused)
        code = str(body["TransactionID"]).strip().upper()
        with self._lock:
            payment = self.c2b.get(code)
            if payment is None or payment.amount != amount:
                result: dict[str, Any] = {
                    "ResultCode": "R000002",
                    "ResultDesc": "The OriginalTransactionID is invalid.",
                    "TransactionID": _no_transaction(),
                }
            elif payment.reversed_by is not None:
                result = {
                    "ResultCode": ALREADY_REVERSED,
                    "ResultDesc": "The transaction has already been reversed.",
                    "TransactionID": _no_transaction(),
                }
            else:
                payment.reversed_by = receipt()
                done = datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")
                name = f"{payment.first_name} {payment.last_name}"
                result = {
                    "ResultCode": 0,
                    "ResultDesc": PROCESSED,
                    "TransactionID": payment.reversed_by,
                    "ResultParameters": {
                        "ResultParameter": [
                            {
                                "Key": "DebitAccountBalance",
                                "Value": "Utility Account|KES|7722179.62|7722179.62|0.00|0.00",
                            },
                            {"Key": "Amount", "Value": payment.amount.quantize(Decimal("0.01"))},
                            {"Key": "TransCompletedTime", "Value": int(done)},
                            {"Key": "OriginalTransactionID", "Value": payment.receipt},
                            {"Key": "Charge", "Value": Decimal("0.00")},
                            {"Key": "CreditPartyPublicName", "Value": f"{payment.msisdn} - {name}"},
                            {
                                "Key": "DebitPartyPublicName",
                                "Value": f"{self.shortcode} - Fake Shortcode",
                            },
                        ]
                    },
                }
        return self._accepted(body, result)

    # --- C2B payments ---------------------------------------------------------------

    def pay_bill(
        self,
        amount: Decimal | int | str,
        msisdn: str,
        account: str,
        *,
        deliver: bool = True,
        paid_at: datetime | None = None,
        receipt_code: str | None = None,
        first_name: str = "JOHN",
    ) -> C2BPayment:
        """A customer pays the shortcode. With ``deliver`` the confirmation is posted to
        the registered URL now, in this thread (see ``deliveries``); without it the
        confirmation is lost on the way, as when momo's host was down."""
        payment = C2BPayment(
            receipt=receipt_code or receipt(),
            amount=Decimal(amount),
            msisdn=msisdn,
            paid_at=(paid_at or datetime.now(NAIROBI)).astimezone(NAIROBI),
            account=account,
            first_name=first_name,
        )
        with self._lock:
            if payment.receipt in self.c2b:
                raise ValueError(f"receipt {payment.receipt} is already taken")
            self.c2b[payment.receipt] = payment
        if deliver:
            self.deliver_confirmation(payment.receipt)
        return payment

    def deliver_confirmation(self, receipt_code: str) -> Delivery:
        """Post the C2B confirmation of a payment (again) to the registered URL."""
        if self.confirmation_url is None:
            raise ValueError("no confirmation URL is registered")
        payment = self.c2b[receipt_code]
        return self._deliver(
            "POST", self.confirmation_url, to_json(payment.confirmation(self.shortcode))
        )

    # --- callbacks ----------------------------------------------------------------

    def momo_env(self, public_url: str) -> dict[str, str]:
        """The variables that point momo's M-PESA Express at this fake, with ``public_url``
        as where the fake posts its callbacks."""
        return {
            "MOMO_PUBLIC_URL": public_url,
            "MOMO_MPESA_API_BASE": self.base_url,
            "MOMO_MPESA_CONSUMER_KEY": self.consumer_key,
            "MOMO_MPESA_CONSUMER_SECRET": self.consumer_secret,
            "MOMO_MPESA_SHORTCODE": self.shortcode,
            "MOMO_MPESA_PASSKEY": self.passkey,
            "MOMO_MPESA_INITIATOR_NAME": self.initiator_name,
            "MOMO_MPESA_SECURITY_CREDENTIAL": self.security_credential,
        }

    def callback_body(self, txn: Transaction) -> dict[str, Any]:
        """The STK callback Daraja posts for a decided push."""
        outcome = txn.outcome
        assert isinstance(outcome, StkResult)
        result: dict[str, Any] = {
            "MerchantRequestID": txn.data["merchant_request_id"],
            "CheckoutRequestID": txn.id,
            "ResultCode": outcome.code,
            "ResultDesc": _desc(outcome),
        }
        if outcome.code == SUCCESS:
            amount = outcome.amount if outcome.amount is not None else txn.data["amount"]
            paid_at = self._stk_paid(txn, outcome)
            result["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": Decimal(amount).quantize(Decimal("0.01"))},
                    {"Name": "MpesaReceiptNumber", "Value": txn.data["receipt"]},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": int(paid_at.strftime("%Y%m%d%H%M%S"))},
                    {"Name": "PhoneNumber", "Value": txn.data["phone"]},
                ]
            }
        return {"Body": {"stkCallback": result}}

    def _stk_paid(self, txn: Transaction, outcome: StkResult) -> datetime:
        """A successful push's receipt and time, fixed the first time they are asked for,
        and its place among the shortcode's C2B payments."""
        with self._lock:
            txn.data.setdefault("receipt", outcome.receipt or receipt())
            paid_at: datetime = txn.data.setdefault(
                "paid_at", (outcome.paid_at or datetime.now(NAIROBI)).astimezone(NAIROBI)
            )
            amount = outcome.amount if outcome.amount is not None else txn.data["amount"]
            self.c2b.setdefault(
                txn.data["receipt"],
                C2BPayment(
                    receipt=txn.data["receipt"],
                    amount=Decimal(amount),
                    msisdn=str(txn.data["phone"]),
                    paid_at=paid_at,
                    account=str(txn.request.json.get("AccountReference", "")),
                ),
            )
        return paid_at

    def _callback_for(self, txn: Transaction) -> tuple[str, str, bytes]:
        assert txn.callback_url is not None
        return "POST", txn.callback_url, to_json(self.callback_body(txn))


def receipt() -> str:
    """A new M-PESA receipt code: ten capital letters and digits, a letter first."""
    return (
        secrets.choice(string.ascii_uppercase)
        + new_id("ABCDEFGHJKLMNPQRSTUVWXYZ", 4)
        + (f"{secrets.randbelow(10**5):05d}")
    )


def _no_transaction() -> str:
    """The TransactionID of a result that moved nothing: a prefix and zeros."""
    return receipt()[:3] + "0000000"


def _desc(outcome: StkResult) -> str:
    return outcome.desc or RESULT_DESCS.get(outcome.code, f"Result code {outcome.code}")


def _ref_id() -> str:
    hex_ = "0123456789abcdef"
    return "-".join(new_id(hex_, n) for n in (8, 4, 4, 4, 12))


def _national(number: str) -> str:
    digits = number.strip().lstrip("+")
    return digits[3:] if digits.startswith("254") else digits.removeprefix("0")


def _pull_time(value: object) -> datetime | None:
    """A query's StartDate or EndDate: Nairobi wall-clock time, with or without seconds."""
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(str(value).strip(), fmt).replace(tzinfo=NAIROBI)
        except ValueError:
            continue
    return None


def _bad(name: str) -> Reply:
    return Reply(400, _error("400.002.02", f"Bad Request - Invalid {name}"))


def _bad_registration(name: str) -> Reply:
    return Reply(400, _error("400.003.02", f"Bad Request - Invalid {name}"))


def _amount(value: object) -> Decimal | None:
    """Daraja takes whole shillings, as a JSON number or a numeric string."""
    if isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 1 or amount != amount.to_integral_value():
        return None
    return amount
