"""Auto-association: which customer a payment belongs to, in ARCHITECTURE.md's order.

1. The account reference equals a customer's account number (trimmed, any case).
2. The account reference is itself a phone number of exactly one customer.
3. The payer's phone (or its provider hash) belongs to exactly one customer.
4. The phone belongs to several customers: unassociated, ``shared_phone``, candidates listed.
5. Otherwise unassociated: ``no_match``, or ``invalid_phone`` when the number was unusable,
   or ``invalid_reference`` when the account reference cannot be an account number or a phone.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Integer, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from matcher.db import one_of
from matcher.errors import NotFound
from matcher.models import Customer, CustomerPhone
from matcher.notifications import Msisdn
from matcher.phones import normalise_msisdn
from matcher.text import REPLACEMENT, column_length, fits

BY_ACCOUNT = "account_number"
BY_ACCOUNT_PHONE = "account_phone"
BY_PHONE = "phone"
BY_PHONE_HASH = "phone_hash"
BY_OPERATOR = "manual"

NO_MATCH = "no_match"
SHARED_PHONE = "shared_phone"
INVALID_PHONE = "invalid_phone"
INVALID_REFERENCE = "invalid_reference"
DISASSOCIATED = "disassociated"
#: the provider gave the money back to the payer: never associated again
REVERSED = "reversed"


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


def unusable_reference(account_reference: str | None) -> bool:
    """Whether a reference was given that cannot be an account number nor a phone: longer
    than any account number, or holding characters the database refuses or had to replace.
    Such a reference is never looked up; the payer's phone may still match."""
    reference = (account_reference or "").strip()
    return bool(reference) and (
        not fits(reference, column_length(Customer.account_number)) or REPLACEMENT in reference
    )


def usable_reference(account_reference: str | None) -> str | None:
    """The account reference as the rules read it (trimmed), or None when there is none to
    read: empty, or unusable."""
    if unusable_reference(account_reference):
        return None
    return (account_reference or "").strip() or None


#: the first key of the PostgreSQL advisory locks taken per phone ("MOMP"); the second is
#: 32 bits hashed from the phone's SHA-256 (two phones that share them only wait longer)
PHONE_LOCK = 0x4D4F4D50


#: where a session keeps the phone locks its current transaction holds
_HELD = "momo.held_phones"


def _phone_key(sha256: str) -> int:
    return int.from_bytes(hashlib.sha256(sha256.lower().encode()).digest()[:4], signed=True)


def hold_phones(session: Session, sha256s: Iterable[str | None]) -> None:
    """Until the transaction ends, be the only one matching payments from these phones
    or giving them to customers (phones named by the SHA-256 that both carry).

    Storing a payment as ``no_match`` and a customer gaining its phone must each see
    the other: otherwise each misses the other's uncommitted row, both commit, and the
    payment stays unmatched though its phone now has one owner. Both take these locks
    before they look, in one order (so two takers never deadlock); whoever comes second
    waits for the first to commit, then sees its row. SQLite lets one writer in at a
    time already.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    # Locks this transaction already holds are not asked for again (the worker holds a
    # whole batch's phones, then records it). Only locks taken outside any savepoint are
    # remembered: a savepoint rolled back gives its locks up.
    transaction = session.get_transaction()
    held: set[int] = session.info.get(_HELD, (None, set()))[1]
    if session.info.get(_HELD, (None,))[0] is not transaction:
        held = set()
    keys = sorted({_phone_key(d) for d in sha256s if d} - held)
    if not keys:
        return
    ordered = (
        select(func.unnest(bindparam("keys", keys, type_=ARRAY(Integer))).label("key"))
        .order_by("key")
        .subquery()
    )
    # the subquery's order is the order the locks are taken in
    session.execute(select(func.count(func.pg_advisory_xact_lock(PHONE_LOCK, ordered.c.key))))
    if not session.in_nested_transaction():
        session.info[_HELD] = (transaction, held | set(keys))


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


class Directory(Protocol):
    """Who owns an account number or a phone: what the matching rules look up."""

    def by_account(self, key: str) -> tuple[int, str] | None:
        """(customer id, account number) for an account key, if any."""
        ...

    def owners(
        self, *, e164: str | None = None, sha256: str | None = None
    ) -> list[tuple[int, str]]:
        """(customer id, account number) of every customer with this phone, by account."""
        ...


def _owner_rows(session: Session, column: Any, values: Iterable[str]) -> list[tuple[str, int, str]]:
    rows = session.execute(
        select(column, Customer.id, Customer.account_number)
        .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
        .where(one_of(session, column, values))
        .distinct()
        .order_by(Customer.account_number)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


class LiveDirectory:
    """Looks each question up in the database as it is asked (one payment at a time)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def by_account(self, key: str) -> tuple[int, str] | None:
        row = self.session.execute(
            select(Customer.id, Customer.account_number).where(Customer.account_key == key)
        ).first()
        return (row[0], row[1]) if row else None

    def owners(
        self, *, e164: str | None = None, sha256: str | None = None
    ) -> list[tuple[int, str]]:
        column = CustomerPhone.e164 if e164 is not None else CustomerPhone.sha256
        value = e164 if e164 is not None else (sha256 or "")
        return [
            (ident, account) for _, ident, account in _owner_rows(self.session, column, [value])
        ]


class LoadedDirectory:
    """Answers for a whole batch, loaded in three queries up front."""

    def __init__(
        self, session: Session, *, keys: set[str], e164s: set[str], sha256s: set[str]
    ) -> None:
        self.accounts: dict[str, tuple[int, str]] = {}
        if keys:
            for key, ident, account in session.execute(
                select(Customer.account_key, Customer.id, Customer.account_number).where(
                    one_of(session, Customer.account_key, keys)
                )
            ):
                self.accounts[key] = (ident, account)
        self.by_e164: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.by_sha256: dict[str, list[tuple[int, str]]] = defaultdict(list)
        if e164s:
            for value, ident, account in _owner_rows(session, CustomerPhone.e164, e164s):
                self.by_e164[value].append((ident, account))
        if sha256s:
            for value, ident, account in _owner_rows(session, CustomerPhone.sha256, sha256s):
                self.by_sha256[value].append((ident, account))

    def by_account(self, key: str) -> tuple[int, str] | None:
        return self.accounts.get(key)

    def owners(
        self, *, e164: str | None = None, sha256: str | None = None
    ) -> list[tuple[int, str]]:
        if e164 is not None:
            return self.by_e164.get(e164, [])
        return self.by_sha256.get(sha256 or "", [])

    @classmethod
    def for_payments(
        cls, session: Session, payments: Iterable[tuple[str | None, Msisdn]], *, region: str
    ) -> LoadedDirectory:
        """Everything the rules could ask about these (account reference, payer) pairs."""
        keys: set[str] = set()
        e164s: set[str] = set()
        sha256s: set[str] = set()
        for given, msisdn in payments:
            reference = usable_reference(given)
            if reference:
                keys.add(account_key(reference))
                typed = normalise_msisdn(reference, region)
                if typed:
                    e164s.add(typed)
            if msisdn.kind == "phone" and msisdn.e164:
                e164s.add(msisdn.e164)
            elif msisdn.kind == "hashed" and msisdn.sha256:
                sha256s.add(msisdn.sha256)
        return cls(session, keys=keys, e164s=e164s, sha256s=sha256s)


def decide(
    directory: Directory, *, account_reference: str | None, msisdn: Msisdn, region: str
) -> Match:
    """Find the one customer a payment belongs to, or say why there is none."""
    candidates: list[str] = []
    reference = usable_reference(account_reference)
    if reference:
        customer = directory.by_account(account_key(reference))
        if customer is not None:
            return Match(customer[0], BY_ACCOUNT)
        typed_phone = normalise_msisdn(reference, region)
        if typed_phone is not None:
            owners = directory.owners(e164=typed_phone)
            if len(owners) == 1:
                return Match(owners[0][0], BY_ACCOUNT_PHONE)
            candidates.extend(account for _, account in owners)

    if msisdn.kind == "phone" and msisdn.e164:
        owners, method = directory.owners(e164=msisdn.e164), BY_PHONE
    elif msisdn.kind == "hashed" and msisdn.sha256:
        owners, method = directory.owners(sha256=msisdn.sha256), BY_PHONE_HASH
    else:
        owners, method = [], BY_PHONE
    if len(owners) == 1:
        return Match(owners[0][0], method)
    candidates.extend(account for _, account in owners if account not in candidates)
    if candidates:
        return Match(None, reason=SHARED_PHONE, candidates=tuple(candidates))
    if msisdn.kind == "invalid":
        return Match(None, reason=INVALID_PHONE)
    if unusable_reference(account_reference):
        return Match(None, reason=INVALID_REFERENCE)
    return Match(None, reason=NO_MATCH)


def match_payment(
    session: Session, *, account_reference: str | None, msisdn: Msisdn, region: str
) -> Match:
    """The rules for one payment, looking up as they go."""
    return decide(
        LiveDirectory(session), account_reference=account_reference, msisdn=msisdn, region=region
    )
