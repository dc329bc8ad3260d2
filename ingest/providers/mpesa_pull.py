"""M-PESA Pull Transactions: Daraja's own list of the shortcode's C2B payments, for
recovering confirmations that never reached momo.

Daraja keeps a shortcode's C2B transactions for 48 hours (``MAX_WINDOW``). Once the
shortcode is registered for pulling (``Puller.register``, a one-time step), a window of
at most 48 hours is read page by page (``Puller.window``): the query names the window in
Nairobi wall-clock time and the row to start from (``OffSetValue``), and the answer holds
the records as a list nested in a list (``Response: [[{...}, ...]]``), ``ResponseCode``
1000, or 1001 and an empty list when there is nothing (more). A longer span is cut into
windows (``windows``); a span that starts more than 48 hours ago cannot be pulled
(``TooOld``): a statement covers it.

Each record is sorted (``sort_record``): a C2B payment (``PAYMENT_TYPES``) becomes an
``Entry`` whose body, the record as JSON, is stored in the inbox as kind ``pull`` and
parsed by the M-PESA adapter (``record_fields`` here, then the adapter's field readers),
so a pulled payment is recorded exactly like its callback: same provider and receipt,
a known one a duplicate. Other transaction types are ``Skipped``; a record that cannot
be read is ``Malformed``, and the rest are still read.

What Daraja's page says and what is chosen here:
- keys are read in any case (the page writes ``transactionId`` and ``trxDate``, its
  other keys lower-case);
- ``trxDate`` is written "2020-08-05T10:13:00Z" on the page; "2020-08-05 10:13:00" is
  taken too. Without a zone, or with "Z", it is Nairobi wall-clock time (momo's
  MOMO_TIMEZONE), as the Daraja times of every other API are; an explicit offset
  ("+03:00") is honoured;
- ``msisdn`` is the bare national number ("722000000"), read in MOMO_DEFAULT_REGION;
  full forms (0722..., 254722...) are read as they are;
- the page lists one type, ``c2b-pay-bill-debit`` (the customer's account debited:
  money into the shortcode); ``c2b-buy-goods-debit`` is its till twin. Only those are
  payments; any other type is skipped and counted, as a statement's withdrawals are;
- ``sender`` is the payer's name, unless Daraja wrote "UNKNOWN";
- the page size is Daraja's: a window is read until a page comes back empty (code
  1001) or shorter than the one before it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Final

from ingest.providers.daraja import Daraja
from ingest.providers.json_body import STRICT
from ingest.providers.outbound import NoAnswer, ProviderRefused
from matcher.notifications import InvalidCallback

#: the inbox kind of a pulled record: stored by momo itself, or posted by Daraja to the
#: pull CallBackURL
PULL: Final = "pull"
#: the channel and the record source a pulled payment is recorded with
CHANNEL: Final = "pull"
SOURCE: Final = "pull"

REGISTER_PATH: Final = "/pulltransactions/v1/register"
QUERY_PATH: Final = "/pulltransactions/v1/query"
#: how far back Daraja keeps a shortcode's transactions for pulling
MAX_WINDOW: Final = timedelta(hours=48)
#: Daraja's codes: success, and (query) nothing in the window / (register) registered before
OK: Final = "1000"
NOTHING: Final = "1001"
#: the transaction types that are money in: the customer's account debited to the shortcode
PAYMENT_TYPES: Final = frozenset({"c2b-pay-bill-debit", "c2b-buy-goods-debit"})
#: Daraja's word for a payer it cannot name
UNKNOWN_SENDER: Final = "UNKNOWN"
#: how Daraja's query writes a time (Nairobi wall-clock)
QUERY_TIME: Final = "%Y-%m-%d %H:%M:%S"
#: no window is read in more pages than this: a Daraja that never says "no more" must
#: not keep a pull running forever
MAX_PAGES: Final = 1000

TRANSACTION_ID: Final = "transactionid"
TRX_DATE: Final = "trxdate"
MSISDN: Final = "msisdn"
SENDER: Final = "sender"
TRANSACTION_TYPE: Final = "transactiontype"
BILL_REFERENCE: Final = "billreference"
AMOUNT: Final = "amount"

_TIME_FORMATS: Final = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)
_SHOWN_MAX: Final = 60


@dataclass(frozen=True)
class Entry:
    """A pulled C2B payment, to be stored in the inbox as ``body``."""

    receipt: str
    body: bytes


@dataclass(frozen=True)
class Skipped:
    """A pulled record that is no payment into the shortcode (``why``: its type)."""

    receipt: str
    why: str


@dataclass(frozen=True)
class Malformed:
    """A pulled record that cannot be read; ``message`` says what is wrong with it."""

    receipt: str
    message: str


Record = Entry | Skipped | Malformed


class TooOld(ValueError):
    """A span that starts before Daraja's 48 hours: it cannot be pulled."""


def _keys(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).casefold(): value for key, value in doc.items()}


def _dumps(doc: Any) -> bytes:
    """The record as JSON; a fractional amount (read as Decimal, never a float) is written
    as its decimal text."""

    def text(value: Any) -> str:
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON")

    return json.dumps(doc, ensure_ascii=False, default=text).encode("utf-8")


def sort_record(doc: object) -> Record:
    """A record of Daraja's answer as an Entry, Skipped or Malformed."""
    if not isinstance(doc, dict):
        return Malformed("", f"a record is {type(doc).__name__}, not an object: {_show(doc)}")
    fields = _keys(doc)
    receipt = fields.get(TRANSACTION_ID)
    shown = receipt if isinstance(receipt, str) else ""
    kind = fields.get(TRANSACTION_TYPE)
    if not isinstance(kind, str) or not kind.strip():
        return Malformed(shown, f"record {_show(receipt)} has no transactiontype")
    if kind.strip().casefold() not in PAYMENT_TYPES:
        return Skipped(shown, kind.strip())
    return Entry(shown, _dumps(doc))


def not_a_payment(doc: Mapping[str, Any]) -> str | None:
    """Why ``doc`` (posted to the pull CallBackURL) is no payment to record: it is no
    transaction record, or one of a type that is no money in; None for a payment."""
    fields = _keys(doc)
    if TRANSACTION_ID not in fields:
        return f"no transaction record (keys: {_show(sorted(fields))})"
    kind = fields.get(TRANSACTION_TYPE)
    if isinstance(kind, str) and kind.strip() and kind.strip().casefold() not in PAYMENT_TYPES:
        return f"transaction {_show(fields[TRANSACTION_ID])} of type {_show(kind)}: no money in"
    return None


@dataclass(frozen=True)
class Fields:
    """A stored pulled record's payment fields, for the adapter's field readers."""

    receipt: object
    amount: object
    #: trxDate as YYYYMMDDHHMMSS wall-clock time, and the zone it is in (None: Nairobi's)
    local_time: str
    zone: tzinfo | None
    number: object
    payer_name: str | None
    account: object


def record_fields(doc: Mapping[str, Any]) -> Fields:
    """The payment a stored pulled record describes, or InvalidCallback with a reason."""
    fields = _keys(doc)
    kind = fields.get(TRANSACTION_TYPE)
    if not isinstance(kind, str) or kind.strip().casefold() not in PAYMENT_TYPES:
        raise InvalidCallback(
            f"transactiontype {_show(kind)} is not a C2B payment "
            f"({', '.join(sorted(PAYMENT_TYPES))}): no money came in",
            "not_a_payment",
        )
    for name in (TRANSACTION_ID, AMOUNT, TRX_DATE):
        if fields.get(name) is None:
            raise InvalidCallback(f"required field {name} is missing or null", "missing_field")
    local_time, zone = _trx_date(fields[TRX_DATE])
    sender = fields.get(SENDER)
    payer = " ".join(sender.split()) if isinstance(sender, str) else None
    return Fields(
        receipt=fields[TRANSACTION_ID],
        amount=fields[AMOUNT],
        local_time=local_time,
        zone=zone,
        number=fields.get(MSISDN),
        payer_name=None if not payer or payer.upper() == UNKNOWN_SENDER else payer,
        account=fields.get(BILL_REFERENCE),
    )


def _trx_date(value: object) -> tuple[str, tzinfo | None]:
    """trxDate as YYYYMMDDHHMMSS and its zone: None (Nairobi wall-clock) for "Z" or none."""
    expected = "expected a time like '2020-08-05T10:13:00Z' or '2020-08-05 10:13:00'"
    if not isinstance(value, str):
        raise InvalidCallback(f"trxDate {_show(value)} is not text; {expected}", "invalid_time")
    text = " ".join(value.split())
    zone: tzinfo | None = None
    if text.endswith(("Z", "z")):
        text = text[:-1]  # Daraja's "Z" labels Nairobi wall-clock time, not UTC
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        try:
            zone = datetime.strptime(text[-6:].replace(":", ""), "%z").tzinfo
        except ValueError:
            raise InvalidCallback(
                f"trxDate {_show(value)} has no readable offset; {expected}", "invalid_time"
            ) from None
        text = text[:-6]
    text = text.split(".", 1)[0]  # fractions of a second tell nothing about a payment
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).strftime("%Y%m%d%H%M%S"), zone
        except ValueError:
            continue
    raise InvalidCallback(f"trxDate {_show(value)} is not a time; {expected}", "invalid_time")


# --- windows --------------------------------------------------------------------------------


def windows(
    starts_at: datetime, ends_at: datetime, *, now: datetime | None = None
) -> list[tuple[datetime, datetime]]:
    """``starts_at``..``ends_at`` cut into windows Daraja answers (at most 48 hours each);
    TooOld when it starts before Daraja's 48 hours."""
    now = now or datetime.now(UTC)
    if ends_at <= starts_at:
        raise ValueError(
            f"the span ends ({ends_at.isoformat()}) before it starts ({starts_at.isoformat()})"
        )
    if starts_at < now - MAX_WINDOW:
        raise TooOld(
            f"{starts_at.isoformat()} is more than 48 hours ago: Daraja keeps pulled "
            "transactions for 48 hours only. Export the statement for that time from the "
            "M-PESA organisation portal and run `momo mpesa import-statement FILE`"
        )
    found = []
    start = starts_at
    while start < ends_at:
        end = min(start + MAX_WINDOW, ends_at)
        found.append((start, end))
        start = end
    return found


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a window: where it starts and the records on it."""

    offset: int
    records: list[Any]


class Puller:
    """Pull Transactions for the Daraja app's shortcode."""

    def __init__(self, daraja: Daraja, timezone: tzinfo) -> None:
        self.daraja = daraja
        self.timezone = timezone

    @property
    def shortcode(self) -> str:
        return self.daraja.app.shortcode

    def register(self, nominated_number: str, callback_url: str) -> dict[str, Any]:
        """Register the shortcode for pulling (once); Daraja's answer. ProviderRefused when
        Daraja says no; an answer of "already registered" (1001) is success."""
        answer = self.daraja.post(
            REGISTER_PATH,
            {
                "ShortCode": self.shortcode,
                "RequestType": "Pull",
                "NominatedNumber": nominated_number,
                "CallBackURL": callback_url,
            },
            "the pull registration",
        )
        code = str(answer.get("ResponseStatus", answer.get("ResponseCode", "")))
        if code not in (OK, NOTHING):
            words = answer.get("ResponseDescription") or answer.get("ResponseMessage") or answer
            raise ProviderRefused(
                "mpesa",
                f"Daraja did not register the shortcode: {words}",
                status=200,
                reason=code or "unknown",
            )
        return answer

    def _when(self, at: datetime, *, up: bool = False) -> str:
        """``at`` as the query writes it (whole seconds); ``up``: the second that ends it,
        so an end never leaves out the last part of its second."""
        if up and at.microsecond:
            at = at + timedelta(seconds=1)
        return at.astimezone(self.timezone).strftime(QUERY_TIME)

    def window(self, starts_at: datetime, ends_at: datetime) -> Iterator[Page]:
        """Every page of one window (at most 48 hours), until Daraja has no more."""
        offset = 0
        previous: int | None = None
        for _ in range(MAX_PAGES):
            answer = self.daraja.post(
                QUERY_PATH,
                {
                    "ShortCode": self.shortcode,
                    "StartDate": self._when(starts_at),
                    "EndDate": self._when(ends_at, up=True),
                    "OffSetValue": str(offset),
                },
                "the pull query",
            )
            records = page_records(answer)
            if not records:
                return
            yield Page(offset, records)
            offset += len(records)
            if previous is not None and len(records) < previous:
                return
            previous = len(records)
        raise NoAnswer(
            "mpesa",
            f"the pull of {self._when(starts_at)} to {self._when(ends_at)} was still "
            f"answering after {MAX_PAGES} pages; pull shorter spans",
        )


def page_records(answer: Mapping[str, Any]) -> list[Any]:
    """The records of a query's answer: its list nested in a list. An answer of "nothing"
    (1001, ``[[]]``, written as a list or as its text) is an empty page; any other code,
    or a shape that is not Daraja's, is NoAnswer naming what came."""
    fields = _keys(answer)
    code = str(fields.get("responsecode", "")).strip()
    nested = fields.get("response", fields.get("transaction"))
    if isinstance(nested, str):
        with contextlib.suppress(ValueError, RecursionError):
            nested = STRICT.decode(nested)  # "[[]]" written as text
    if code == NOTHING:
        return []
    if code != OK:
        words = fields.get("responsemessage") or "(no message)"
        raise NoAnswer("mpesa", f"the pull query answered code {code or '(none)'}: {words}")
    if nested in (None, [], [[]]):
        return []
    if not isinstance(nested, list) or not all(isinstance(inner, list) for inner in nested):
        raise NoAnswer(
            "mpesa", f"the pull query's Response is not a list of lists: {_show(nested)}"
        )
    return [record for inner in nested for record in inner]


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_MAX else shown[: _SHOWN_MAX - 3] + "..."
