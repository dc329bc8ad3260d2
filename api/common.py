"""What every operator endpoint shares: the blueprint, body and paging helpers, item shapes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.runtime import Runtime
from core.web import problem
from ingest.providers.outbound import ProviderError, ProviderRefused
from matcher.errors import Conflict, DomainError, InvalidInput, NotFound
from matcher.models import UNASSOCIATED, Customer, CustomerPhone, IdempotencyRecord, Payment
from matcher.money import format_minor
from matcher.text import unstorable_character

bp = Blueprint("api", __name__, url_prefix="/api/v1")

STATUS_FOR: dict[type[DomainError], int] = {InvalidInput: 400, NotFound: 404, Conflict: 409}
TITLES = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Content"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_IDEMPOTENCY_KEY = 200


class Unprocessable(DomainError):
    code = "unprocessable"


class FieldsRefused(DomainError):
    """A body's fields refused by name; the names go in the problem's ``fields``."""

    def __init__(self, message: str, code: str, fields: list[str]) -> None:
        super().__init__(message, code)
        self.fields = fields


class UnknownFields(FieldsRefused):
    code = "unknown_field"


class MissingFields(FieldsRefused):
    code = "missing_field"


STATUS_FOR[Unprocessable] = 422
STATUS_FOR[UnknownFields] = 422
STATUS_FOR[MissingFields] = 400


def runtime() -> Runtime:
    return current_app.extensions["momo"]


@contextmanager
def request_session() -> Iterator[Session]:
    """The request's session. Its transaction began with the token check (``require``) and
    is committed when the view answers, rolled back when it raises: the block ends nothing."""
    yield g.db


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Response:
    status = next((s for cls, s in STATUS_FOR.items() if isinstance(exc, cls)), 400)
    extra = {"fields": exc.fields} if isinstance(exc, FieldsRefused) else {}
    return problem(status, exc.code, TITLES[status], exc.message, **extra)


# --- what operators send: text a database can hold, and bodies with known fields ----------

_FIELD_NAME = re.compile(r"[a-z_]{1,40}")


def refuse_unstorable(text: str, where: str, code: str) -> None:
    """400 naming ``where`` when ``text`` holds a character no database can store."""
    what = unstorable_character(text)
    if what is not None:
        raise InvalidInput(
            f"{where} contains {what}, which is not text that can be stored or searched; "
            "send it again without that character",
            code,
        )


def _field_code(name: str) -> str:
    return f"invalid_{name}" if _FIELD_NAME.fullmatch(name) else "invalid_body"


def _refuse_unstorable_json(value: object, where: str, code: str) -> None:
    if isinstance(value, str):
        refuse_unstorable(value, where, code)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _refuse_unstorable_json(item, f"{where}[{n}]", code)
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_unstorable(key, f"the field name {key!r} in {where}", code)
            _refuse_unstorable_json(item, f"{where}.{key}", code)


@bp.before_request
def _refuse_unstorable_parameters() -> None:
    """Path and query parameters, every one: a NUL or lone surrogate is a 400, not a 5xx."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            refuse_unstorable(value, name, _field_code(name))
    for name, value in request.args.items(multi=True):
        refuse_unstorable(name, "a query parameter's name", "invalid_parameter")
        refuse_unstorable(value, name, _field_code(name))


@dataclass(frozen=True)
class Fields:
    """The fields a request body has to have and those it may have; no others."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


def _listed(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names) if names else "no fields"


def json_body(fields: Fields, *, may_be_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object with only ``fields`` in it, every required one present.

    Numbers with a fraction arrive as Decimal, never float. Text holding a NUL or a
    lone surrogate is 400; an unknown field is 422 and a missing one 400, each naming
    the fields (a field sent as null is there: its own check says what is wrong).
    ``may_be_empty``: no body at all reads as ``{}``.
    """
    raw = request.get_data(cache=True)
    if may_be_empty and not raw.strip():
        body: object = {}
    else:
        body = None
        if request.is_json:
            try:
                body = json.loads(raw or b"null", parse_float=Decimal)
            except (ValueError, RecursionError):
                body = None
    if not isinstance(body, dict):
        raise InvalidInput(
            "The body must be a JSON object sent with Content-Type: application/json.",
            "invalid_body",
        )
    for key, value in body.items():
        refuse_unstorable(key, f"the field name {key!r}", "invalid_body")
        _refuse_unstorable_json(value, key, _field_code(key))
    unknown = [key for key in body if key not in fields.names]
    if unknown:
        raise UnknownFields(
            f"unknown field{'s' if len(unknown) > 1 else ''} {_listed(unknown)}: this request "
            f"takes {_listed(fields.names)}. Nothing was changed; send it again without "
            f"{'them' if len(unknown) > 1 else 'it'}.",
            "unknown_field",
            unknown,
        )
    missing = [name for name in fields.required if name not in body]
    if missing:
        optional = f" (and may have {_listed(fields.optional)})" if fields.optional else ""
        raise MissingFields(
            f"{_listed(missing)} {'are' if len(missing) > 1 else 'is'} missing: this request "
            f"needs {_listed(fields.required)}{optional}",
            "missing_field",
            missing,
        )
    return body


def optional_text(body: dict[str, Any], field: str, limit: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(
            f"{field} must be text of at most {limit} characters", f"invalid_{field}"
        )
    return value.strip() or None


def path_id(raw: str, what: str, code: str) -> int:
    """A row id from the path: 1 to 2**63 - 1, written in ASCII digits; anything else is
    no such row (404 ``code``, saying ``what`` has no such id)."""
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**63:
        raise NotFound(f"no {what} has id {raw!r}", code)
    return int(raw)


def limit_arg() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}", "invalid_limit")
    return int(raw)


def q_arg() -> str | None:
    q = request.args.get("q")
    if q is None or not q.strip():
        return None
    if len(q) > 100:
        raise InvalidInput("q must be at most 100 characters", "invalid_q")
    return q.strip()


def encode_cursor(*parts: object) -> str:
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *kinds: type) -> tuple[Any, ...]:
    """Read back a cursor made by ``encode_cursor`` from values of ``kinds``; 400 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong number of parts")
        values: list[Any] = []
        for part, kind in zip(parts, kinds, strict=True):
            if kind is datetime:
                if not isinstance(part, str) or not part.endswith("+00:00"):
                    raise ValueError("not UTC")
                values.append(datetime.fromisoformat(part).astimezone(UTC))
            elif kind is int:
                if isinstance(part, bool) or not isinstance(part, int) or not 0 < part < 2**63:
                    raise ValueError("id out of range")
                values.append(part)
            elif isinstance(part, str) and unstorable_character(part) is None:
                values.append(part)
            else:
                raise ValueError("not text")
        return tuple(values)
    except (ValueError, OverflowError, RecursionError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not one this API gave out; pass next_cursor from the previous page",
            "invalid_cursor",
        ) from None


def time_arg(name: str) -> datetime | None:
    """An ISO 8601 time with offset, or a date meaning local midnight; None when absent."""
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return None
    zone = runtime().settings.zone
    try:
        if len(raw.strip()) == 10:
            day = date.fromisoformat(raw.strip())
            return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
        moment = datetime.fromisoformat(raw.strip())
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{name} must be a date (2025-11-03) or a time with offset (2025-11-03T14:30:00+03:00)",
            f"invalid_{name}",
        ) from None


def money(amount: int) -> str:
    return format_minor(amount)


def customer_json(customer: Customer) -> dict[str, Any]:
    return customer_item(customer, [phone.e164 for phone in customer.phones])


#: the columns a customer's JSON shows but its phones; lists read them as rows
CUSTOMER_COLUMNS = tuple(
    Customer.__table__.c[name]
    for name in (
        "id",
        "account_number",
        "account_key",
        "name",
        "balance_minor",
        "created_at",
        "updated_at",
    )
)


def customer_item(customer: Any, phones: list[str]) -> dict[str, Any]:
    """A customer's JSON from a ``Customer`` or a row of ``CUSTOMER_COLUMNS``."""
    return {
        "account_number": customer.account_number,
        "name": customer.name,
        "phones": phones,
        "balance": format_minor(customer.balance_minor),
        "currency": runtime().settings.currency,
        "created_at": customer.created_at.isoformat(),
        "updated_at": customer.updated_at.isoformat(),
    }


def phones_of(session: Session, customer_ids: list[int]) -> dict[int, list[str]]:
    """Customer id -> its phones, in the order they were added (as ``Customer.phones``)."""
    phones: dict[int, list[str]] = {ident: [] for ident in customer_ids}
    if customer_ids:
        phone = CustomerPhone.__table__.c
        rows = session.execute(
            select(phone.customer_id, phone.e164)
            .where(phone.customer_id.in_(customer_ids))
            .order_by(phone.customer_id, phone.id)
        )
        for customer_id, e164 in rows:
            phones[customer_id].append(e164)
    return phones


def payment_json(payment: Payment) -> dict[str, Any]:
    return payment_item(payment, payment.customer.account_number if payment.customer else None)


#: payments' and customers' table columns: a statement made of these alone runs as plain
#: SQL, without the ORM's compile and loading steps, and gives rows
PAYMENTS, CUSTOMERS = Payment.__table__.c, Customer.__table__.c

#: the columns a payment's JSON shows (``payment_item``), its customer's account number
#: among them, and the unconfirmed list's cursor: lists read rows, not objects
PAYMENT_COLUMNS = (
    *(
        PAYMENTS[name]
        for name in (
            "id",
            "code",
            "provider",
            "channel",
            "phone",
            "payer_name",
            "amount_minor",
            "currency",
            "paid_at",
            "status",
            "match_method",
            "account_reference",
            "reference",
            "confirmed_at",
            "confirmed_by",
            "reversed_at",
            "reversal_receipt",
            "reason",
            "candidates",
            "created_at",
        )
    ),
    CUSTOMERS.account_number,
)


def payments_with_accounts(*joins: tuple[Any, Any]) -> Any:
    """``select(*PAYMENT_COLUMNS)`` from payments (joined to ``joins``, each a target and
    its ON clause) and their customers, if any."""
    if not joins:
        return _PAYMENTS_WITH_ACCOUNTS  # built once: a list's request only adds its filters
    query: Any = select(*PAYMENT_COLUMNS).select_from(Payment.__table__)
    for target, on in joins:
        query = query.join(target, on)
    return query.outerjoin(Customer.__table__, CUSTOMERS.id == PAYMENTS.customer_id)


_PAYMENTS_WITH_ACCOUNTS = (
    select(*PAYMENT_COLUMNS)
    .select_from(Payment.__table__)
    .outerjoin(Customer.__table__, CUSTOMERS.id == PAYMENTS.customer_id)
)


def payment_item(payment: Any, account_number: str | None) -> dict[str, Any]:
    """A payment's JSON from a ``Payment`` or a row of ``PAYMENT_COLUMNS``."""
    confirmed_at, reversed_at = payment.confirmed_at, payment.reversed_at
    item: dict[str, Any] = {
        "id": payment.id,
        "code": payment.code,
        "provider": payment.provider,
        "channel": payment.channel,
        "account_number": account_number,
        "phone": payment.phone,
        "payer_name": payment.payer_name,
        "amount": format_minor(payment.amount_minor),
        "currency": payment.currency,
        "paid_at": payment.paid_at.isoformat(),
        "status": payment.status,
        "match_method": payment.match_method,
        "account_reference": payment.account_reference,
        "reference": payment.reference,
        "confirmed_at": confirmed_at.isoformat() if confirmed_at else None,
        "confirmed_by": payment.confirmed_by,
        "reversed_at": reversed_at.isoformat() if reversed_at else None,
        "reversal_receipt": payment.reversal_receipt,
    }
    if payment.status == UNASSOCIATED:
        item["reason"] = payment.reason
        item["candidates"] = list(payment.candidates or [])
    return item


# --- changes ------------------------------------------------------------------------------

Operation = Callable[[Session], tuple[dict[str, Any], int]]


@dataclass(frozen=True)
class ShownOnce:
    """A field of an answer that is a secret: it is in the first answer only.

    It is never stored with the answer for an Idempotency-Key; a repeat of the request
    gets the error ``replayed`` makes from what was stored (the answer without it).
    """

    field: str
    replayed: Callable[[dict[str, Any]], DomainError]


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b" ")
    digest.update(request.path.encode())
    digest.update(b"\n")
    try:
        body = json.loads(request.get_data(cache=True) or b"null", parse_float=Decimal)
        digest.update(json.dumps(body, sort_keys=True, default=str).encode())
    except (ValueError, RecursionError):
        digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def change(operation: Operation, *, secret: ShownOnce | None = None) -> tuple[Response, int]:
    """Run a change in the request's transaction (the token check's), honouring an
    ``Idempotency-Key`` header.

    The key is recorded (per token) in the same transaction as the change, before
    the change is made: a concurrent request with the same key waits for the
    first to commit, then replays its answer. The same key with a different body
    is 422. Errors are not recorded, so a corrected retry with the key goes through.
    An answer's ``secret`` is never recorded, so it is never replayed either.
    """
    done = _committed(operation, secret)
    if isinstance(done, tuple):
        body, status, _ = done
        return jsonify(body), status
    return done, done.status_code


PROBLEM_TYPE = "application/problem+json"
#: what happens after a change is committed: from its answer, the final answer
Afterwards = Callable[[dict[str, Any], int], tuple[dict[str, Any], int]]


def change_then(operation: Operation, afterwards: Afterwards) -> tuple[Response, int]:
    """``change``, then ``afterwards`` outside any transaction (a call to a provider,
    which must not hold locks while it waits); its answer is the one recorded for the
    Idempotency-Key. A repeat of the request that comes meanwhile gets the committed
    answer, and never runs ``afterwards`` again."""
    done = _committed(operation, None)
    if not isinstance(done, tuple):
        return done, done.status_code
    body, status, record_id = done
    body, status = afterwards(body, status)
    if record_id is not None:
        with runtime().sessions.begin() as session:
            record = session.get(IdempotencyRecord, record_id)
            if record is not None:
                record.status_code, record.response = status, body
    response = jsonify(body)
    if status >= 400:
        response.mimetype = PROBLEM_TYPE
    return response, status


def _committed(
    operation: Operation, secret: ShownOnce | None
) -> tuple[dict[str, Any], int, int | None] | Response:
    """The committed change's answer and its idempotency record's id, or the replayed
    answer of an earlier request with the same key."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and (
        not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable()
    ):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters, e.g. a UUID",
            "invalid_idempotency_key",
        )
    request_hash = _request_hash() if key else ""
    session: Session = g.db
    for attempt in (1, 2):
        try:
            record = None
            if key:
                seen = session.scalar(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.actor == g.token_scope,
                        IdempotencyRecord.key == key,
                    )
                )
                if seen is not None:
                    if seen.request_hash != request_hash:
                        raise Unprocessable(
                            "this Idempotency-Key was already used with a different "
                            "request; use a new key for a new request",
                            "idempotency_key_reused",
                        )
                    if secret is not None and seen.status_code < 300:
                        raise secret.replayed(seen.response)
                    response = jsonify(seen.response)
                    response.status_code = seen.status_code
                    if seen.status_code >= 400:
                        response.mimetype = PROBLEM_TYPE
                    response.headers["Idempotent-Replayed"] = "true"
                    return response
                record = IdempotencyRecord(
                    actor=g.token_scope,
                    key=key,
                    request_hash=request_hash,
                    status_code=0,
                    response={},
                )
                session.add(record)
                session.flush()
            body, status = operation(session)
            if record is not None:
                kept = {k: v for k, v in body.items() if secret is None or k != secret.field}
                record.status_code, record.response = status, kept
            record_id = record.id if record is not None else None
            # committed here, not when the view answers: what follows (a provider's call)
            # must see it done, and a twin's IntegrityError is caught below
            session.commit()
            return body, status, record_id
        except IntegrityError:
            # A twin request (same key, or the same receipt by callback) committed first:
            # look again, in a new transaction, now that its row is visible.
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def provider_problem(
    error: ProviderError, what: str, key: str, item: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The problem answer when a provider did not take what it was asked (``what``): 422
    when it refused, 502 when it could not be reached; ``item`` is kept under ``key``."""
    status = 422 if isinstance(error, ProviderRefused) and error.status < 500 else 502
    return {
        "type": "about:blank",
        "title": "Unprocessable Content" if status == 422 else "Bad Gateway",
        "status": status,
        "code": error.code,
        "detail": f"{error.provider} did not take the {what}: {error.message}",
        key: item,
    }, status
