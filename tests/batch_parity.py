"""The batch path and the row-by-row path must come to the same books.

Shared by the SQLite unit test and the PostgreSQL integration test: one varied batch
of payments (every matching rule, repeats inside the batch and of stored payments,
conflicts, a payment entered by hand that its receipt confirms) is recorded once by
``record_payments`` and, on another database seeded the same way, row by row by
``record_payment`` in a savepoint each, as the worker's fallback does. Everything the
books hold afterwards is compared.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from core.runtime import Runtime
from matcher.customers import save_customer
from matcher.ledger import Ledger
from matcher.matching import hold_phones
from matcher.models import Customer, LedgerEntry, Payment, RevenueDay, RevenueSlice
from matcher.notifications import Msisdn, PaymentNotification
from matcher.payments import Recorded, record_manual_payment, record_payment, record_payments
from matcher.phones import classify_msisdn, msisdn_sha256

REGION = "KE"
PAID = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

#: records (inbox id, notification) pairs in one transaction's ledger
Recorder = Callable[[Any, Ledger, list[tuple[int | None, PaymentNotification]]], list[Recorded]]


def by_batch(
    session: Any, ledger: Ledger, batch: list[tuple[int | None, PaymentNotification]]
) -> list[Recorded]:
    hold_phones(session, (n.msisdn.sha256 for _, n in batch))
    with ledger.savepoint():
        return record_payments(session, ledger, batch, region=REGION)


def row_by_row(
    session: Any, ledger: Ledger, batch: list[tuple[int | None, PaymentNotification]]
) -> list[Recorded]:
    hold_phones(session, (n.msisdn.sha256 for _, n in batch))
    outcomes = []
    for inbox_id, n in batch:
        with ledger.savepoint():
            outcomes.append(
                record_payment(
                    session, ledger, n, region=REGION, inbox_id=inbox_id, actor=n.provider
                )
            )
    return outcomes


def _payment(code: str, *, amount: int = 100_00, msisdn: object = None, **fields: Any) -> Any:
    return PaymentNotification(
        provider="mpesa",
        channel="c2b",
        code=code,
        amount=amount,
        currency="KES",
        paid_at=fields.pop("paid_at", PAID),
        msisdn=msisdn if isinstance(msisdn, Msisdn) else classify_msisdn(msisdn, REGION),
        payer_name=fields.pop("payer_name", "PAYER"),
        account_reference=fields.pop("account_reference", None),
        **fields,
    )


def seed(runtime: Runtime) -> None:
    """Customers, two payments already stored, and one entered by hand with its receipt."""
    with runtime.sessions.begin() as session:
        for account, phones in (
            ("ACC1", ["0711000001"]),
            ("ACC2", ["0711000002"]),
            ("SHARED1", ["0722000000"]),
            ("SHARED2", ["0722000000"]),
            ("ACC5", []),
        ):
            save_customer(
                session,
                account_number=account,
                name=account,
                phones=phones,
                region=REGION,
                actor="test",
            )
    with runtime.sessions.begin() as session, Ledger(session) as ledger:
        for n in (
            _payment("STORED1", msisdn="0711000001"),
            _payment("STORED2", msisdn="0733000000", account_reference="ACC2"),
        ):
            record_payment(session, ledger, n, region=REGION, actor="mpesa")
    with runtime.sessions.begin() as session:
        record_manual_payment(
            session,
            account_number="ACC5",
            amount=250_00,
            currency="KES",
            reference="MANUAL1",
            note=None,
            actor="operator",
            receipt_owner=lambda reference: ("mpesa", reference),
        )


def batch() -> list[tuple[int | None, PaymentNotification]]:
    hashed = Msisdn(raw="h", kind="hashed", sha256=msisdn_sha256("+254711000002"))
    notifications = [
        _payment("REF1", account_reference=" acc1 ", msisdn="0799000000"),
        _payment("PHONEREF", account_reference="0711000002", msisdn="0799000001"),
        _payment("PAYER1", msisdn="+254711000001", amount=120_00),
        _payment("HASHED", msisdn=hashed, amount=130_00),
        _payment("SHARED", msisdn="0722000000"),
        _payment("SHAREDREF", account_reference="0722000000", msisdn="0711000001"),
        _payment("NOMATCH", msisdn="0799000002", account_reference="NOBODY"),
        _payment("INVALID", msisdn="12"),
        _payment("BADREF", msisdn="0711000002", account_reference="X" * 200),
        _payment("REF1", account_reference=" acc1 ", msisdn="0799000000"),
        _payment("REF1", account_reference="ACC1", msisdn="0799000000", amount=1_00),
        _payment("STORED1", msisdn="0711000001"),
        _payment("STORED2", msisdn="0733000000", account_reference="ACC2", amount=7_00),
        _payment(
            "MANUAL1",
            amount=250_00,
            msisdn="0744000000",
            paid_at=PAID - timedelta(days=2),
            source="pull",
        ),
        _payment("LATE", msisdn="0711000002", paid_at=PAID + timedelta(hours=5)),
    ]
    return [(None, n) for n in notifications]


def books(runtime: Runtime) -> dict[str, Any]:
    """Everything recording can change, with database ids replaced by what they name."""
    with runtime.sessions.begin() as session:
        accounts = dict(session.execute(select(Customer.id, Customer.account_number)).all())
        payments = list(session.scalars(select(Payment).order_by(Payment.code)))
        codes = {p.id: p.code for p in payments}
        return {
            "payments": [
                (
                    p.provider,
                    p.code,
                    p.status,
                    accounts.get(p.customer_id) if p.customer_id else None,
                    p.reason,
                    sorted(p.candidates or []),
                    p.match_method,
                    p.amount_minor,
                    p.phone,
                    p.msisdn_kind,
                    p.paid_at,
                    p.confirmed_at is not None,
                    p.confirmed_by,
                    p.account_reference,
                    p.payer_name,
                )
                for p in payments
            ],
            "ledger": sorted(
                (
                    accounts[e.customer_id],
                    codes.get(e.payment_id or 0),
                    e.amount_minor,
                    e.kind,
                    e.idempotency_key.replace(str(e.payment_id), codes.get(e.payment_id or 0, "")),
                    e.created_by,
                )
                for e in session.scalars(select(LedgerEntry))
            ),
            "balances": sorted(
                session.execute(select(Customer.account_number, Customer.balance_minor)).all()
            ),
            "slices": sorted(
                session.execute(
                    select(
                        RevenueSlice.slice_start,
                        RevenueSlice.amount_minor,
                        RevenueSlice.payments,
                        RevenueSlice.received_minor,
                    )
                ).all()
            ),
            "days": sorted(
                session.execute(
                    select(
                        RevenueDay.day_start,
                        RevenueDay.amount_minor,
                        RevenueDay.payments,
                        RevenueDay.received_minor,
                    )
                ).all()
            ),
        }


def recorded(runtime: Runtime, record: Recorder) -> tuple[list[tuple[str, str | None]], dict]:
    """Seed, record the batch with ``record`` in one transaction; the outcomes (with the
    payment's code instead of its id) and the books."""
    seed(runtime)
    with runtime.sessions.begin() as session, Ledger(session) as ledger:
        outcomes = record(session, ledger, batch())
        codes = dict(session.execute(select(Payment.id, Payment.code)).all())
        named = [(o.outcome, codes.get(o.payment_id or 0)) for o in outcomes]
    return named, books(runtime)


#: what the batch comes to, row for row (the parity tests also check it is not vacuous)
EXPECTED_OUTCOMES = [
    ("credited", "REF1"),
    ("credited", "PHONEREF"),
    ("credited", "PAYER1"),
    ("credited", "HASHED"),
    ("unassociated", "SHARED"),
    ("credited", "SHAREDREF"),
    ("unassociated", "NOMATCH"),
    ("unassociated", "INVALID"),
    ("credited", "BADREF"),
    ("duplicate", "REF1"),
    ("conflict", "REF1"),
    ("duplicate", "STORED1"),
    ("conflict", "STORED2"),
    ("duplicate", "MANUAL1"),
    ("credited", "LATE"),
]


def check_parity(batch_runtime: Runtime, row_runtime: Runtime) -> None:
    batch_outcomes, batch_books = recorded(batch_runtime, by_batch)
    row_outcomes, row_books = recorded(row_runtime, row_by_row)
    assert row_outcomes == EXPECTED_OUTCOMES
    assert batch_outcomes == row_outcomes
    for part in ("payments", "ledger", "balances", "slices", "days"):
        assert batch_books[part] == row_books[part], part
    payments = {p[1]: p for p in batch_books["payments"]}
    # the cases are what their codes say (so the comparison is not of two empty books)
    assert payments["SHARED"][4] == "shared_phone"
    assert payments["SHARED"][5] == ["SHARED1", "SHARED2"]
    assert payments["INVALID"][4] == "invalid_phone"
    assert payments["HASHED"][6] == "phone_hash"
    assert payments["PHONEREF"][6] == "account_phone"
    assert payments["MANUAL1"][11] is True
    assert len(batch_books["slices"]) >= 3
