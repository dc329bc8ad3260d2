"""The operator lists' JSON as the API has always written it, built here from ORM objects.

The lists read rows straight to JSON; these builders are the contract they must keep, byte
for byte (field names, order, formats), written out independently of the API's own code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.runtime import Runtime
from matcher.models import Customer, CustomerPhone, Payment
from matcher.phones import msisdn_sha256


def _money(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d}"


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def old_payment_json(payment: Payment) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": payment.id,
        "code": payment.code,
        "provider": payment.provider,
        "channel": payment.channel,
        "account_number": payment.customer.account_number if payment.customer else None,
        "phone": payment.phone,
        "payer_name": payment.payer_name,
        "amount": _money(payment.amount_minor),
        "currency": payment.currency,
        "paid_at": payment.paid_at.isoformat(),
        "status": payment.status,
        "match_method": payment.match_method,
        "account_reference": payment.account_reference,
        "reference": payment.reference,
        "confirmed_at": _when(payment.confirmed_at),
        "confirmed_by": payment.confirmed_by,
        "reversed_at": _when(payment.reversed_at),
        "reversal_receipt": payment.reversal_receipt,
    }
    if payment.status == "unassociated":
        item["reason"] = payment.reason
        item["candidates"] = list(payment.candidates or [])
    return item


def old_customer_json(customer: Customer, currency: str) -> dict[str, Any]:
    return {
        "account_number": customer.account_number,
        "name": customer.name,
        "phones": [phone.e164 for phone in customer.phones],
        "balance": _money(customer.balance_minor),
        "currency": currency,
        "created_at": customer.created_at.isoformat(),
        "updated_at": customer.updated_at.isoformat(),
    }


def seed_varied(runtime: Runtime) -> None:
    """Customers with none, one and several phones; payments associated and not, by hand
    and by callback, confirmed, reversed, with odd text and empty fields."""
    base = datetime(2026, 11, 3, 8, 30, 15, 123456, tzinfo=UTC)
    with runtime.sessions.begin() as session:
        customers = []
        for n, phones in enumerate([[], ["+254712000001"], ["+254712000002", "+254733000003"]]):
            customer = Customer(
                account_number=f"Acc-{n}",
                account_key=f"acc-{n}",
                name=["Wanjiku Kamau", 'Zoë "Z" Ödegaard', "名前 ☃"][n],
                balance_minor=[0, 150050, -5][n],
                phones=[CustomerPhone(e164=p, sha256=msisdn_sha256(p)) for p in phones],
            )
            session.add(customer)
            customers.append(customer)
        session.flush()
        variants: list[dict[str, Any]] = [
            {"status": "associated", "customer_id": customers[1].id, "match_method": "phone"},
            {
                "status": "associated",
                "customer_id": customers[2].id,
                "match_method": "manual",
                "channel": "manual",
                "reference": "REF 1/2",
                "note": "by hand",
                "created_by": "token:alice",
                "confirmed_at": base + timedelta(hours=1),
                "confirmed_by": "pull",
                "phone": None,
                "payer_name": None,
                "account_reference": None,
            },
            {
                "status": "unassociated",
                "reason": "shared_phone",
                "candidates": ["Acc-1", "Acc-2"],
                "customer_id": None,
            },
            {"status": "unassociated", "reason": "no_match", "candidates": [], "customer_id": None},
            {
                "status": "unassociated",
                "reason": "invalid_phone",
                "candidates": None,
                "customer_id": None,
                "phone": None,
            },
            {
                "status": "associated",
                "customer_id": customers[0].id,
                "match_method": "account_number",
                "reversed_at": base + timedelta(days=1, microseconds=1),
                "reversal_receipt": "RV123",
                "payer_name": "Ñandú <script>",
                "amount_minor": 1,
            },
            {
                "status": "associated",
                "customer_id": customers[2].id,
                "match_method": "account_phone",
                "channel": "manual",
                "created_by": "token:bob",
                "amount_minor": 99_999_999_99,
            },
        ]
        for n, variant in enumerate(variants * 3):
            fields: dict[str, Any] = {
                "provider": "mpesa",
                "channel": "c2b",
                "code": f"TX{n:08d}",
                "amount_minor": 1500_00 + n,
                "currency": "KES",
                # two share a time, so the id breaks the tie
                "paid_at": base - timedelta(minutes=n // 2 * 7, seconds=n % 3),
                "msisdn_raw": "254712000001",
                "msisdn_kind": "phone",
                "phone": "+254712000001",
                "payer_name": "JOHN DOE",
                "account_reference": "acc-1 ",
                "status": "associated",
                **variant,
            }
            session.add(Payment(**fields))


def expected_payments(
    runtime: Runtime, status: str, *, confirmed: bool = False
) -> list[dict[str, Any]]:
    query = select(Payment).options(selectinload(Payment.customer))
    if confirmed:
        query = query.where(Payment.channel == "manual", Payment.confirmed_at.is_(None))
        query = query.order_by(Payment.created_at, Payment.id)
    else:
        query = query.where(Payment.status == status)
        query = query.order_by(Payment.paid_at.desc(), Payment.id.desc())
    with runtime.sessions.begin() as session:
        return [old_payment_json(p) for p in session.scalars(query)]


def expected_customers(runtime: Runtime) -> list[dict[str, Any]]:
    query = select(Customer).options(selectinload(Customer.phones)).order_by(Customer.account_key)
    with runtime.sessions.begin() as session:
        return [old_customer_json(c, runtime.settings.currency) for c in session.scalars(query)]


def pages(client: FlaskClient, path: str, headers: dict[str, str], **params: str) -> list[bytes]:
    """Every page of a list, two items a page, as the bytes the API sent."""
    bodies, cursor = [], None
    while True:
        query = {"limit": "2", **params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, query_string=query, headers=headers)
        assert response.status_code == 200, response.get_data()
        bodies.append(response.get_data())
        cursor = response.get_json()["next_cursor"]
        if cursor is None:
            return bodies


def as_sent(client: FlaskClient, items: list[dict[str, Any]]) -> bytes:
    """``items`` encoded as the API encodes an answer."""
    app = client.application
    with app.app_context():
        return app.json.response({"items": items, "next_cursor": "-"}).get_data()


def items_bytes(body: bytes) -> bytes:
    """The ``items`` part of an answer's bytes, for comparing with ``as_sent``."""
    return body[: body.rindex(b',"next_cursor"')]


def joined(bodies: list[bytes]) -> list[Any]:
    return [item for body in bodies for item in json.loads(body)["items"]]
