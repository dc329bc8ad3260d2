"""Auto-association: which customer a payment belongs to, in ARCHITECTURE.md's order.

1. The account reference equals a customer's account number (trimmed, any case).
2. The account reference is itself a phone number of exactly one customer.
3. The payer's phone (or its provider hash) belongs to exactly one customer.
4. The phone belongs to several customers: unassociated, ``shared_phone``, candidates listed.
5. Otherwise unassociated: ``no_match``, or ``invalid_phone`` when the number was unusable.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.errors import NotFound
from matcher.models import Customer, CustomerPhone
from matcher.notifications import Msisdn
from matcher.phones import normalise_msisdn

BY_ACCOUNT = "account_number"
BY_ACCOUNT_PHONE = "account_phone"
BY_PHONE = "phone"
BY_PHONE_HASH = "phone_hash"
BY_OPERATOR = "manual"

NO_MATCH = "no_match"
SHARED_PHONE = "shared_phone"
INVALID_PHONE = "invalid_phone"
DISASSOCIATED = "disassociated"


@dataclass(frozen=True)
class Match:
    customer_id: int | None
    method: str | None = None
    reason: str | None = None
    candidates: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return self.customer_id is not None


def account_key(account_number: str) -> str:
    """The form account numbers are compared in: trimmed, case-folded."""
    return account_number.strip().casefold()


def _owners(
    session: Session, *, e164: str | None = None, sha256: str | None = None
) -> list[tuple[int, str]]:
    column = CustomerPhone.e164 if e164 is not None else CustomerPhone.sha256
    value = e164 if e164 is not None else sha256
    rows = session.execute(
        select(Customer.id, Customer.account_number)
        .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
        .where(column == value)
        .distinct()
        .order_by(Customer.account_number)
    ).all()
    return [(row[0], row[1]) for row in rows]


def find_customer_by_account(session: Session, account_number: str) -> Customer | None:
    key = account_key(account_number)
    if not key:
        return None
    return session.scalar(select(Customer).where(Customer.account_key == key))


def get_customer(session: Session, account_number: str, *, lock: bool = False) -> Customer:
    query = select(Customer).where(Customer.account_key == account_key(account_number))
    if lock:
        query = query.with_for_update()
    customer = session.scalar(query)
    if customer is None:
        raise NotFound(
            f"no customer has account number {account_number.strip()!r}", "customer_not_found"
        )
    return customer


def match_payment(
    session: Session, *, account_reference: str | None, msisdn: Msisdn, region: str
) -> Match:
    """Find the one customer a payment belongs to, or say why there is none."""
    candidates: list[str] = []
    reference = (account_reference or "").strip()
    if reference:
        customer = find_customer_by_account(session, reference)
        if customer is not None:
            return Match(customer.id, BY_ACCOUNT)
        typed_phone = normalise_msisdn(reference, region)
        if typed_phone is not None:
            owners = _owners(session, e164=typed_phone)
            if len(owners) == 1:
                return Match(owners[0][0], BY_ACCOUNT_PHONE)
            candidates.extend(account for _, account in owners)

    if msisdn.kind == "phone" and msisdn.e164:
        owners, method = _owners(session, e164=msisdn.e164), BY_PHONE
    elif msisdn.kind == "hashed" and msisdn.sha256:
        owners, method = _owners(session, sha256=msisdn.sha256), BY_PHONE_HASH
    else:
        owners, method = [], BY_PHONE
    if len(owners) == 1:
        return Match(owners[0][0], method)
    candidates.extend(account for _, account in owners if account not in candidates)
    if candidates:
        return Match(None, reason=SHARED_PHONE, candidates=tuple(candidates))
    if msisdn.kind == "invalid":
        return Match(None, reason=INVALID_PHONE)
    return Match(None, reason=NO_MATCH)
