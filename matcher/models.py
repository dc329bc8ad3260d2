"""momo's tables. Money is integer minor units; times are aware UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from matcher.db import Base, BigId, UTCDateTime, utcnow

# Inbox row states. pending -> processed | conflict | dead (an error that would recur);
# rejected rows were never the provider's shape. Dead and rejected rows can be replayed.
INBOX_PENDING = "pending"
INBOX_PROCESSED = "processed"
INBOX_REJECTED = "rejected"
INBOX_DEAD = "dead"
INBOX_CONFLICT = "conflict"
INBOX_STATUSES = (INBOX_PENDING, INBOX_PROCESSED, INBOX_REJECTED, INBOX_DEAD, INBOX_CONFLICT)

ASSOCIATED = "associated"
UNASSOCIATED = "unassociated"


class InboxItem(Base):
    """A provider callback exactly as it arrived, committed before the provider is answered."""

    __tablename__ = "inbox"
    __table_args__ = (
        Index("ix_inbox_status_id", "status", "id"),
        UniqueConstraint("spool_id", name="uq_inbox_spool_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_addr: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=INBOX_PENDING)
    #: machine-readable reason for rejected/failed rows, or the outcome of processed ones
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("payments.id", name="fk_inbox_payment")
    )
    #: set for callbacks that waited in a web host's spool while the database was down
    spool_id: Mapped[str | None] = mapped_column(String(36))
    #: a row is not claimed before this (rows that older versions left retrying with backoff)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("account_key", name="uq_customers_account_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: as the operator wrote it (trimmed); ``account_key`` is what matching compares
    account_number: Mapped[str] = mapped_column(String(64))
    account_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    #: always equal to the sum of this customer's ledger entries (same transaction)
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    phones: Mapped[list[CustomerPhone]] = relationship(
        back_populates="customer",
        cascade="all, delete-orphan",
        order_by="CustomerPhone.id",
    )


class CustomerPhone(Base):
    __tablename__ = "customer_phones"
    __table_args__ = (
        UniqueConstraint("customer_id", "e164", name="uq_customer_phones_customer_e164"),
        Index("ix_customer_phones_e164", "e164"),
        Index("ix_customer_phones_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", name="fk_customer_phones_customer", ondelete="CASCADE")
    )
    e164: Mapped[str] = mapped_column(String(20))
    #: SHA-256 of the digits without "+", so providers' hashed MSISDNs match
    sha256: Mapped[str] = mapped_column(String(64))

    customer: Mapped[Customer] = relationship(back_populates="phones")


class Payment(Base):
    """Money that moved. (provider, code) is its identity: a repeat changes nothing."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "code", name="uq_payments_provider_code"),
        Index("ix_payments_status_paid_at_id", "status", "paid_at", "id"),
        # each search probe reads its newest matches straight off one of these
        Index("ix_payments_customer_paid", "customer_id", "paid_at", "id"),
        Index("ix_payments_phone_paid", "phone", "paid_at", "id"),
        Index("ix_payments_msisdn_sha256", "msisdn_sha256"),
        Index("ix_payments_code", "code"),
        Index("ix_payments_amount_paid", "amount_minor", "paid_at", "id"),
        Index("ix_payments_request_reference", "provider", "request_reference"),
        # the unconfirmed manual entries, oldest first
        Index("ix_payments_channel_confirmed", "channel", "confirmed_at", "created_at", "id"),
        # ix_payments_phone_trgm (PostgreSQL only, made by migration 0002) finds partial
        # phone digits such as "712345".
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    msisdn_raw: Mapped[str | None] = mapped_column(String(128))
    msisdn_kind: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(20))
    msisdn_sha256: Mapped[str | None] = mapped_column(String(64))
    payer_name: Mapped[str | None] = mapped_column(String(200))
    account_reference: Mapped[str | None] = mapped_column(String(128))
    business_short_code: Mapped[str | None] = mapped_column(String(32))
    transaction_type: Mapped[str | None] = mapped_column(String(64))
    #: the provider's id of the payment request this payment answered, when it said
    request_reference: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", name="fk_payments_customer")
    )
    #: how the customer was found: account_number, account_phone, phone, phone_hash, manual
    match_method: Mapped[str | None] = mapped_column(String(32))
    #: why an unassociated payment is unassociated: no_match, shared_phone, invalid_phone,
    #: invalid_reference, ...
    reason: Mapped[str | None] = mapped_column(String(32))
    candidates: Mapped[list[str]] = mapped_column(JSON, default=list)
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    #: what the operator typed as reference for a manual payment, and their note
    reference: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    #: the provider for callbacks, ``token:<name>`` for payments recorded by hand
    created_by: Mapped[str | None] = mapped_column(String(100))
    #: when a provider's own record of a payment entered by hand arrived, and which kind
    #: of record it was (callback, pull, statement, lookup); None while unconfirmed
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_by: Mapped[str | None] = mapped_column(String(16))
    #: when the provider undid the payment (its money went back to the payer), and the
    #: provider's receipt of that reversal; None while it stands. Set once: a second
    #: record of the same reversal changes nothing
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversal_receipt: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    customer: Mapped[Customer | None] = relationship()


class PaymentAttempt(Base):
    """An attempt that moved no money (a phone prompt cancelled, unreachable, ...)."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        UniqueConstraint("provider", "reference", name="uq_payment_attempts_provider_reference"),
        Index("ix_payment_attempts_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(128))
    merchant_reference: Mapped[str | None] = mapped_column(String(128))
    result_code: Mapped[int] = mapped_column(Integer)
    result_desc: Mapped[str] = mapped_column(String(500))
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(Base):
    """An append-only balance movement. Entries are never edited or deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_ledger_entries_idempotency_key"),
        Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
        Index("ix_ledger_entries_payment_id", "payment_id"),
        Index("ix_ledger_entries_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", name="fk_ledger_customer"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # signed: credit > 0, debit < 0
    kind: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("payments.id", name="fk_ledger_payment")
    )
    purchase_id: Mapped[int | None] = mapped_column(
        ForeignKey("purchases.id", name="fk_ledger_purchase")
    )
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Plan(Base):
    """An internet plan customers buy from their balance."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("code", name="uq_plans_code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    validity_minutes: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Purchase(Base):
    """A plan bought from a balance; its voucher code is what the customer types in."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("voucher_code", name="uq_purchases_voucher_code"),
        Index("ix_purchases_customer_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", name="fk_purchases_customer")
    )
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", name="fk_purchases_plan"))
    plan_code: Mapped[str] = mapped_column(String(32))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    voucher_code: Mapped[str] = mapped_column(String(32))
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed to repeats."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("actor", "key", name="uq_idempotency_keys_actor_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RevenueSlice(Base):
    """Per UTC quarter hour of time paid: associated payments' amounts and count, net, and
    the amount of every payment received (so unassociated money = received - revenue)."""

    __tablename__ = "revenue_slices"

    slice_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    payments: Mapped[int] = mapped_column(Integer, default=0)
    received_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RevenueDay(Base):
    """The revenue slices of one UTC day added up, kept beside them by the same writers.

    UTC days are no business's days, but any long range is whole UTC days plus
    a few slices at each end, so a year is ~365 of these and ~200 slices.
    """

    __tablename__ = "revenue_days"

    day_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    payments: Mapped[int] = mapped_column(Integer, default=0)
    received_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiToken(Base):
    """An operator's bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who changed what, when, with the before and after."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Payment request states. pending -> paid | failed | cancelled | expired; a success that
# arrives later still makes any of them paid (money that moved is never ignored).
REQUEST_PENDING = "pending"
REQUEST_PAID = "paid"
REQUEST_FAILED = "failed"
REQUEST_CANCELLED = "cancelled"
REQUEST_EXPIRED = "expired"
REQUEST_STATUSES = (
    REQUEST_PENDING,
    REQUEST_PAID,
    REQUEST_FAILED,
    REQUEST_CANCELLED,
    REQUEST_EXPIRED,
)


class PaymentRequest(Base):
    """momo asked a customer to pay (a prompt on their phone); the provider's answer, by
    callback or by query, settles it once."""

    __tablename__ = "payment_requests"
    __table_args__ = (
        UniqueConstraint(
            "provider", "provider_reference", name="uq_payment_requests_provider_reference"
        ),
        Index("ix_payment_requests_status_id", "status", "id"),
        Index("ix_payment_requests_customer_id", "customer_id", "id"),
        Index("ix_payment_requests_status_query_at", "status", "query_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=REQUEST_PENDING)
    #: the provider's id of the request (ours where the provider takes our id); None until
    #: the provider answered the request
    provider_reference: Mapped[str | None] = mapped_column(String(128))
    #: a second id some providers give (kept for the transaction log)
    merchant_reference: Mapped[str | None] = mapped_column(String(128))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", name="fk_payment_requests_customer")
    )
    account_number: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: the provider's result code and words, as it gave them (a code, a status, a reason)
    result_code: Mapped[str | None] = mapped_column(String(64))
    result_description: Mapped[str | None] = mapped_column(Text)
    payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("payments.id", name="fk_payment_requests_payment")
    )
    #: when the provider is next asked how the request went (None: not to be asked)
    query_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: how often the provider was asked
    queries: Mapped[int] = mapped_column(Integer, default=0)
    #: after this, a request nobody answered is expired
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    customer: Mapped[Customer] = relationship()


class ProviderRecord(Base):
    """A line of a provider's own record of money that moved (from a pull, a statement or
    a lookup), kept so momo's books can be compared with the provider's."""

    __tablename__ = "provider_records"
    __table_args__ = (
        UniqueConstraint("provider", "kind", "code", name="uq_provider_records_kind_code"),
        Index("ix_provider_records_provider_paid", "provider", "paid_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: "payment" (money in), or "reversal" (a payment undone)
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the kind of record it was first seen in: pull, statement or lookup
    source: Mapped[str] = mapped_column(String(16))
    msisdn_raw: Mapped[str | None] = mapped_column(String(128))
    account_reference: Mapped[str | None] = mapped_column(String(128))
    #: for a reversal: the receipt it undid
    reverses: Mapped[str | None] = mapped_column(String(64))
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProviderCoverage(Base):
    """A span of time a provider's record was read in full (a pull that finished, a
    statement imported): within it, a payment momo has and the provider has not is
    unexplained."""

    __tablename__ = "provider_coverage"
    __table_args__ = (Index("ix_provider_coverage_provider_ends", "provider", "ends_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: how many records the span held
    records: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Lookup states. pending (stored, the provider not asked yet or its answer lost) -> sent
# (the provider took the question) -> found | not_found | failed | timed_out; a refused
# question is failed at once.
LOOKUP_PENDING = "pending"
LOOKUP_SENT = "sent"
LOOKUP_FOUND = "found"
LOOKUP_NOT_FOUND = "not_found"
LOOKUP_FAILED = "failed"
LOOKUP_TIMED_OUT = "timed_out"
LOOKUP_STATUSES = (
    LOOKUP_PENDING,
    LOOKUP_SENT,
    LOOKUP_FOUND,
    LOOKUP_NOT_FOUND,
    LOOKUP_FAILED,
    LOOKUP_TIMED_OUT,
)


class Lookup(Base):
    """An operator asked a provider about one transaction code; its answer arrives later,
    and a payment it finds is recorded like a callback's."""

    __tablename__ = "lookups"
    __table_args__ = (
        Index("ix_lookups_provider_conversation", "provider", "conversation_id"),
        Index("ix_lookups_provider_originator", "provider", "originator_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=LOOKUP_PENDING)
    #: the ids the provider gave the question, which its answer names
    originator_id: Mapped[str | None] = mapped_column(String(128))
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    result_code: Mapped[str | None] = mapped_column(String(64))
    result_description: Mapped[str | None] = mapped_column(Text)
    payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("payments.id", name="fk_lookups_payment")
    )
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# Reversal states. requested (stored, the provider not asked yet or its answer lost) ->
# sent -> reversed | failed | timed_out; a refused request is failed at once.
REVERSAL_REQUESTED = "requested"
REVERSAL_SENT = "sent"
REVERSAL_DONE = "reversed"
REVERSAL_FAILED = "failed"
REVERSAL_TIMED_OUT = "timed_out"
#: a reversal request still open: no second one is made for the same payment meanwhile
REVERSAL_OPEN = (REVERSAL_REQUESTED, REVERSAL_SENT)


class Reversal(Base):
    """An admin asked the provider to give a payment's money back to its payer. One row
    per request (a refused one may be asked again); the payment itself keeps the fact
    that it was reversed, whoever reported it."""

    __tablename__ = "reversals"
    __table_args__ = (
        Index("ix_reversals_payment_id", "payment_id", "id"),
        Index("ix_reversals_provider_conversation", "provider", "conversation_id"),
        Index("ix_reversals_provider_originator", "provider", "originator_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", name="fk_reversals_payment"))
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=REVERSAL_REQUESTED)
    originator_id: Mapped[str | None] = mapped_column(String(128))
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    result_code: Mapped[str | None] = mapped_column(String(64))
    result_description: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WorkerHeartbeat(Base):
    """When a worker last finished a task (a Celery worker's node name, or the embedded
    worker of ``momo serve`` on its host): ``/readyz`` asks whether any did so recently."""

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CheckRun(Base):
    """A finished ``momo check``: when, on which host, and how many violations it found.
    Kept in the database so that every api shows the last one on ``/metrics``, wherever
    the check ran (a timer on one host, a Kubernetes CronJob)."""

    __tablename__ = "check_runs"
    __table_args__ = (Index("ix_check_runs_finished_at", "finished_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    violations: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
