"""What a provider told us, in momo's own terms.

Adapters in ``ingest/`` turn provider bodies into these frozen values; the
domain never sees a provider's JSON. Amounts are integer minor units and
times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: the ``source`` of a payment told by the provider's callback (not read from its record)
CALLBACK_SOURCE = "callback"

MsisdnKind = Literal["phone", "hashed", "masked", "invalid", "missing"]


@dataclass(frozen=True)
class Msisdn:
    """The payer's number as the provider sent it, classified.

    ``raw`` is kept exactly as received (as text). ``e164`` is set only for
    ``kind == "phone"``; ``sha256`` is the hex digest of the 12-digit form for a
    phone, or the provider's digest for ``kind == "hashed"``. A mask is never
    turned into a phone number.
    """

    raw: str | None
    kind: MsisdnKind
    e164: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class PaymentNotification:
    """A completed payment: money has moved, it must be credited once."""

    provider: str
    channel: str  # how it was paid, as its provider's adapter names it
    code: str  # the provider's transaction code: the dedupe key per provider
    amount: int  # minor units, always > 0
    currency: str
    paid_at: datetime  # aware, UTC
    msisdn: Msisdn
    payer_name: str | None = None
    account_reference: str | None = None  # as typed by the payer, unstripped
    business_short_code: str | None = None
    transaction_type: str | None = None
    #: the provider's id of the payment request this payment answers (a phone prompt
    #: momo started); such a payment belongs to that request's customer
    request_reference: str | None = None
    #: what kind of provider record this is: callback, pull, statement or lookup; a
    #: payment entered by hand that this record names is confirmed by it
    source: str = CALLBACK_SOURCE


@dataclass(frozen=True)
class ValidationRequest:
    """A payment about to happen, asking whether we accept it."""

    provider: str
    code: str
    amount: int
    currency: str
    msisdn: Msisdn
    account_reference: str | None = None
    business_short_code: str | None = None


@dataclass(frozen=True)
class FailedAttempt:
    """A payment attempt that did not move money (e.g. a phone prompt the payer cancelled)."""

    provider: str
    channel: str
    reference: str  # the provider's id of the attempt (the request it answers)
    result_code: int
    result_desc: str
    merchant_reference: str | None = None  # MerchantRequestID
    #: the payer said no (rather than: could not be reached, wrong PIN, no funds)
    cancelled: bool = False


RequestState = Literal["paid", "failed", "cancelled", "pending"]


@dataclass(frozen=True)
class RequestResult:
    """What a provider says became of a payment request momo made, by callback or when
    asked. A provider that says no more than "paid" leaves the amount and the payer to
    the request momo stored; ``code`` is then its receipt (or, when it gives none, the
    request's own reference)."""

    provider: str
    reference: str  # the provider's id of the request
    state: RequestState
    result_code: str
    result_description: str
    channel: str = "request"
    code: str | None = None
    amount: int | None = None  # minor units, when the provider says what was paid
    currency: str | None = None
    paid_at: datetime | None = None  # aware UTC, when the provider says
    msisdn: Msisdn | None = None
    payer_name: str | None = None
    #: False for a callback nothing authenticates (one its provider does not sign): its
    #: word is not taken, for a payment or a failure; the provider is asked at once
    #: instead, and its answer settles the request
    verified: bool = True


@dataclass(frozen=True)
class Notice:
    """A provider's message that names no payment, attempt or request (it tells of the
    provider's own doings): acknowledged, and not kept, since nothing in it is momo's to
    record."""

    provider: str
    kind: str
    detail: str


LookupState = Literal["found", "not_found", "failed", "timed_out"]


@dataclass(frozen=True)
class LookupResult:
    """A provider's answer to a lookup momo made (one transaction code asked about).

    The lookup is known by the ids the provider gave the question. ``payment`` is the
    payment it found (``source="lookup"``), recorded like any other provider record; a
    lookup that found nothing, failed or timed out moves no money.
    """

    provider: str
    originator_id: str | None
    conversation_id: str | None
    state: LookupState
    result_code: str
    result_description: str
    payment: PaymentNotification | None = None


ReversalState = Literal["reversed", "failed", "timed_out"]


@dataclass(frozen=True)
class ReversalResult:
    """A provider's word that a payment was reversed (or that a reversal momo asked for
    failed): the answer to a reversal request, known by the ids the provider gave it, or
    a reversal its statement lists, known by the receipt it reversed."""

    provider: str
    state: ReversalState
    result_code: str
    result_description: str
    originator_id: str | None = None
    conversation_id: str | None = None
    #: the receipt of the payment reversed, when the provider names it
    original_code: str | None = None
    #: the provider's receipt of the reversal itself
    receipt: str | None = None
    amount: int | None = None  # minor units, when the provider says
    reversed_at: datetime | None = None  # aware UTC, when the provider says
    #: what kind of provider record this is: callback or statement
    source: str = "callback"


Callback = (
    PaymentNotification
    | ValidationRequest
    | FailedAttempt
    | RequestResult
    | LookupResult
    | ReversalResult
    | Notice
)


class InvalidCallback(Exception):
    """A body that is not the provider's shape.

    ``reason`` is short and machine-readable (log field, inbox reason, metric
    label); the message says what was wrong for a human.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
