"""Customers: who pays, under which account number and phones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.audit import audit
from matcher.errors import Conflict, InvalidInput
from matcher.ledger import Ledger
from matcher.matching import account_key, get_customer, hold_phones
from matcher.models import Customer, CustomerPhone
from matcher.payments import rematch_phones
from matcher.phones import msisdn_sha256, normalise_msisdn

__all__ = ["UNCHANGED", "CustomerChange", "get_customer", "save_customer"]

MAX_ACCOUNT_LENGTH = 64
MAX_NAME_LENGTH = 200
MAX_PHONES = 20
#: ``save_customer(name=UNCHANGED)`` keeps an existing customer's name as it is
UNCHANGED: Final = object()


@dataclass(frozen=True)
class CustomerChange:
    customer: Customer
    created: bool
    rematched: list[int]


def clean_account_number(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(
            "account_number is required: give the customer's account number as text, e.g. ACC1042",
            "invalid_account_number",
        )
    account = raw.strip()
    if (
        len(account) > MAX_ACCOUNT_LENGTH
        or len(account_key(account)) > MAX_ACCOUNT_LENGTH
        or not account.isprintable()
    ):
        raise InvalidInput(
            f"account_number must be printable text of at most {MAX_ACCOUNT_LENGTH} characters",
            "invalid_account_number",
        )
    return account


def clean_name(raw: object) -> str:
    """A customer's name: every customer has one, so an operator can tell them apart."""
    if not isinstance(raw, str) or not raw.strip() or len(raw.strip()) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"a customer needs a name: text of 1 to {MAX_NAME_LENGTH} characters, "
            'e.g. "Wanjiku Kamau"',
            "invalid_name",
        )
    return raw.strip()


def clean_phones(raw: object, region: str) -> list[str]:
    """Every phone normalised to E.164, duplicates folded; a bad one is named in the error."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_PHONES:
        raise InvalidInput(
            f'phones must be a list of at most {MAX_PHONES} phone numbers, e.g. ["0712345678"]',
            "invalid_phones",
        )
    phones: list[str] = []
    for value in raw:
        e164 = normalise_msisdn(value, region) if isinstance(value, str | int) else None
        if e164 is None or isinstance(value, bool):
            raise InvalidInput(
                f"phone {value!r} is not a valid mobile number for region {region}; "
                "write it as e.g. 0712345678 or +254712345678",
                "invalid_phone",
            )
        if e164 not in phones:
            phones.append(e164)
    return phones


def snapshot(customer: Customer) -> dict[str, object]:
    return {
        "account_number": customer.account_number,
        "name": customer.name,
        "phones": [p.e164 for p in customer.phones],
    }


def _set_phones(customer: Customer, phones: list[str]) -> list[str]:
    """Replace the customer's phones; return the ones it did not have before."""
    current = {p.e164: p for p in customer.phones}
    added = [e164 for e164 in phones if e164 not in current]
    customer.phones = [
        current.get(e164) or CustomerPhone(e164=e164, sha256=msisdn_sha256(e164)) for e164 in phones
    ]
    return added


def save_customer(
    session: Session,
    *,
    account_number: str,
    name: object,
    phones: object,
    region: str,
    actor: str,
    create_only: bool = False,
) -> CustomerChange:
    """Create a customer, or update name and phones of an existing one.

    A customer is created with a name; ``name=UNCHANGED`` keeps an existing one's.

    A customer that gains a phone gets the ``no_match`` payments from that
    phone matched again, in the same transaction, including one a worker is storing
    at that moment (``hold_phones``).
    """
    account = clean_account_number(account_number)
    clean = None if name is UNCHANGED else clean_name(name)
    numbers = clean_phones(phones, region)
    # before any row lock, as the worker takes them: see hold_phones
    hold_phones(session, [msisdn_sha256(e164) for e164 in numbers])
    key = account_key(account)
    customer = session.scalar(select(Customer).where(Customer.account_key == key).with_for_update())
    created = customer is None
    if customer is None:
        customer = Customer(
            account_number=account,
            account_key=key,
            name=clean_name(name),  # UNCHANGED is no name for a new customer
            balance_minor=0,
        )
        session.add(customer)
        before = None
    elif create_only:
        raise Conflict(
            f"a customer with account number {customer.account_number!r} already exists; "
            f"change it with PATCH /api/v1/customers/{customer.account_number}",
            "customer_exists",
        )
    else:
        before = snapshot(customer)
        if clean is not None:
            customer.name = clean
    added = _set_phones(customer, numbers)
    session.flush()
    audit(
        session,
        actor=actor,
        action="customer.create" if created else "customer.update",
        subject_type="customer",
        subject_id=customer.account_number,
        before=before,
        after=snapshot(customer),
    )
    with Ledger(session) as ledger:
        rematched = rematch_phones(
            session,
            ledger,
            e164s=added,
            sha256s=[msisdn_sha256(e164) for e164 in added],
            region=region,
            actor=actor,
        )
    return CustomerChange(customer, created, rematched)
