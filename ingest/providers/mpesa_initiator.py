"""Daraja's initiator APIs momo uses to reconcile: Transaction Status (ask about one
receipt) and Reversal (give a payment's money back to its payer).

Both are asynchronous. The call is signed by an initiator (an API operator of the
organisation portal) with its SecurityCredential (the password encrypted with
Safaricom's certificate, base64, as the portal's credential tool gives it) and answers
``{OriginatorConversationID, ConversationID, ResponseCode: "0", ResponseDescription}``
at once; the result is posted later to ResultURL (or QueueTimeOutURL when M-PESA gave
up). Request fields as Safaricom's Daraja 3.0 pages write them (TransactionStatus,
Reversal), including Reversal's own spelling ``RecieverIdentifierType``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ingest.providers.daraja import PROVIDER, Daraja
from ingest.providers.outbound import Accepted, NoAnswer, ProviderRefused

STATUS_PATH: Final = "/mpesa/transactionstatus/v1/query"
REVERSAL_PATH: Final = "/mpesa/reversal/v1/request"
STATUS_COMMAND: Final = "TransactionStatusQuery"
REVERSAL_COMMAND: Final = "TransactionReversal"
#: IdentifierType of the organisation asking about its own transaction: a shortcode
SHORTCODE_IDENTIFIER: Final = "4"
#: RecieverIdentifierType of the organisation that received the payment reversed
REVERSAL_RECEIVER_IDENTIFIER: Final = "11"
#: Daraja's bounds on Remarks and Occasion
REMARKS_LENGTH: Final = 100


@dataclass(frozen=True)
class Initiator:
    name: str
    #: the initiator password, encrypted and base64-encoded: a secret, never shown
    security_credential: str

    def __repr__(self) -> str:
        return f"Initiator(name={self.name!r}, security_credential=<hidden>)"


def _remarks(text: str) -> str:
    """Daraja wants 2-100 characters."""
    words = " ".join(text.split())[:REMARKS_LENGTH]
    return words if len(words) >= 2 else "momo"


def status_body(
    initiator: Initiator, shortcode: str, code: str, result_url: str, timeout_url: str
) -> dict[str, Any]:
    return {
        "Initiator": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": STATUS_COMMAND,
        "TransactionID": code,
        "PartyA": shortcode,
        "IdentifierType": SHORTCODE_IDENTIFIER,
        "ResultURL": result_url,
        "QueueTimeOutURL": timeout_url,
        "Remarks": _remarks(f"lookup {code}"),
        "Occasion": _remarks(f"lookup {code}"),
    }


def reversal_body(
    initiator: Initiator,
    shortcode: str,
    code: str,
    amount: int,
    result_url: str,
    timeout_url: str,
    remarks: str,
) -> dict[str, Any]:
    shillings, cents = divmod(amount, 100)
    return {
        "Initiator": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": REVERSAL_COMMAND,
        "TransactionID": code,
        "Amount": str(shillings) if not cents else f"{shillings}.{cents:02d}",
        "ReceiverParty": shortcode,
        "RecieverIdentifierType": REVERSAL_RECEIVER_IDENTIFIER,
        "ResultURL": result_url,
        "QueueTimeOutURL": timeout_url,
        "Remarks": _remarks(remarks),
        "Occasion": _remarks(f"reversal {code}"),
    }


def send(daraja: Daraja, path: str, body: dict[str, Any], what: str) -> Accepted:
    """Send one initiator call on the app's shared client. ProviderRefused: Daraja said
    no; ProviderUnavailable: it never took it; NoAnswer: it may have (its result may
    still come)."""
    answer = daraja.post(path, body, what)
    code = answer.get("ResponseCode")
    if code is None or str(code).strip() == "":
        raise NoAnswer(PROVIDER, f"{what} answered without a ResponseCode: {answer}")
    if str(code).strip() != "0":
        raise ProviderRefused(
            PROVIDER,
            str(answer.get("ResponseDescription") or answer),
            status=200,
            reason=str(code).strip(),
        )
    originator, conversation = answer.get("OriginatorConversationID"), answer.get("ConversationID")
    originator = originator if isinstance(originator, str) and originator else None
    conversation = conversation if isinstance(conversation, str) and conversation else None
    if originator is None and conversation is None:
        raise NoAnswer(PROVIDER, f"{what} was accepted without a ConversationID: {answer}")
    return Accepted(originator_id=originator, conversation_id=conversation)
