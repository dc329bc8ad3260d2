"""The operator's desk over HTTP on PostgreSQL: search, double clicks, revenue, the log."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from matcher.models import Payment
from tests.conftest import sample
from tests.integration.conftest import Stack, wait_until
from tests.integration.test_pipeline import all_processed, confirmation, create_customer

pytestmark = pytest.mark.integration


def test_a_double_clicked_make_payment_books_one_payment(stack: Stack) -> None:
    account = f"DBL-{uuid.uuid4().hex[:6]}"
    create_customer(stack, account, [])
    key = str(uuid.uuid4())
    barrier = threading.Barrier(10)

    def submit(_: int) -> tuple[int, dict]:
        barrier.wait()
        r = stack.api(
            "POST",
            "/payments",
            json={"account_number": account, "amount": "250.00", "note": "cash at the counter"},
            headers={"Idempotency-Key": key},
        )
        return r.status_code, r.json()

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(submit, range(10)))
    assert {status for status, _ in answers} == {201}
    assert len({body["id"] for _, body in answers}) == 1
    assert stack.balance(account) == "250.00"
    changed = stack.api(
        "POST",
        "/payments",
        json={"account_number": account, "amount": "300.00"},
        headers={"Idempotency-Key": key},
    )
    assert changed.status_code == 422
    assert changed.json()["code"] == "idempotency_key_reused"


def test_search_finds_payments_by_every_field_on_postgresql(stack: Stack) -> None:
    account = f"SRCH-{uuid.uuid4().hex[:6]}"
    create_customer(stack, account, [])
    body = confirmation(BillRefNumber=account, MSISDN="254733918273", TransAmount="1234.00")
    stack.post("c2b/confirmation", body)
    wait_until(lambda: all_processed(stack))
    code = body["TransID"]

    def found(q: str) -> bool:
        r = stack.api("GET", "/payments", params={"q": q, "limit": 500})
        assert r.status_code == 200, r.text
        return code in {item["code"] for item in r.json()["items"]}

    for q in [
        account.lower(),
        code.lower(),
        "0733918273",
        "+254 733 918 273",
        "254733918273",
        "733-918-273",
        "918273",
        "0733918",
        "1234",
        "1234.00",
    ]:
        assert found(q), q
    assert not found("0799999999")
    assert not found("999.99")


def test_the_partial_phone_search_has_its_trigram_index(stack: Stack) -> None:
    with stack.runtime.sessions.begin() as session:
        names = session.scalars(
            text("SELECT indexname FROM pg_indexes WHERE tablename = 'payments'")
        ).all()
    assert "ix_payments_phone_trgm" in names


def test_revenue_days_and_weeks_turn_at_nairobi_midnight_on_postgresql(stack: Stack) -> None:
    account = f"REV-{uuid.uuid4().hex[:6]}"
    create_customer(stack, account, [])
    # Sunday 23:59:59 and Monday 00:00:00 in Nairobi, a year no other test uses
    late = confirmation(BillRefNumber=account, TransTime="20201101235959", TransAmount="10.00")
    early = confirmation(BillRefNumber=account, TransTime="20201102000000", TransAmount="32.00")
    stack.post("c2b/confirmation", late)
    stack.post("c2b/confirmation", early)
    wait_until(lambda: all_processed(stack))
    days = stack.api(
        "GET",
        "/dashboard/revenue",
        params={"period": "day", "from": "2020-11-01", "to": "2020-11-02"},
    ).json()
    assert [(b["start"], b["amount"], b["count"]) for b in days["series"]] == [
        ("2020-11-01T00:00:00+03:00", "10.00", 1),
        ("2020-11-02T00:00:00+03:00", "32.00", 1),
    ]
    weeks = stack.api(
        "GET",
        "/dashboard/revenue",
        params={"period": "week", "from": "2020-10-26", "to": "2020-11-08"},
    ).json()
    assert [(b["start"], b["amount"]) for b in weeks["series"]] == [
        ("2020-10-26T00:00:00+03:00", "10.00"),
        ("2020-11-02T00:00:00+03:00", "32.00"),
    ]
    months = stack.api(
        "GET",
        "/dashboard/revenue",
        params={"period": "month", "from": "2020-11-01", "to": "2020-11-30"},
    ).json()
    assert [(b["amount"], b["count"]) for b in months["series"]] == [("42.00", 2)]
    # Disassociating takes the payment out of revenue.
    with stack.runtime.sessions.begin() as session:
        pid = session.scalar(select(Payment.id).where(Payment.code == early["TransID"]))
    r = stack.api("POST", f"/payments/{pid}/disassociate", json={"reason": "wrong account"})
    assert r.status_code == 200, r.text
    months = stack.api(
        "GET",
        "/dashboard/revenue",
        params={"period": "month", "from": "2020-11-01", "to": "2020-11-30"},
    ).json()
    assert [(b["amount"], b["count"]) for b in months["series"]] == [("10.00", 1)]


def test_the_transaction_log_shows_credits_reversals_purchases_and_failed_attempts(
    stack: Stack,
) -> None:
    account = f"LOG-{uuid.uuid4().hex[:6]}"
    create_customer(stack, account, [])
    plan = f"P{uuid.uuid4().hex[:6]}"
    assert (
        stack.api(
            "POST",
            "/plans",
            json={"code": plan, "name": "Day", "price": "40.00", "validity_minutes": 1440},
        ).status_code
        == 201
    )
    paid = stack.api("POST", "/payments", json={"account_number": account, "amount": "100.00"})
    assert paid.status_code == 201
    body = confirmation(BillRefNumber=account, TransAmount="60.00")
    stack.post("c2b/confirmation", body)
    wait_until(lambda: all_processed(stack))
    bought = stack.api("POST", f"/customers/{account}/purchases", json={"plan": plan})
    assert bought.status_code == 201, bought.text
    assert bought.json()["balance"] == "120.00"
    undone = stack.api("POST", f"/payments/{paid.json()['id']}/disassociate", json={})
    assert undone.json()["balance"] == "20.00"
    short = stack.api("POST", f"/customers/{account}/purchases", json={"plan": plan})
    assert short.status_code == 409
    assert short.json()["detail"] == "Insufficient balance: available 20.00, required 40.00"

    log = stack.api("GET", "/transactions", params={"account": account}).json()["items"]
    assert [(i["kind"], i["amount"]) for i in log] == [
        ("disassociation", "-100.00"),
        ("purchase", "-40.00"),
        ("payment_credit", "60.00"),
        ("manual_payment", "100.00"),
    ]
    cancelled = sample("stk_callback_cancelled.json")
    reference = f"ws_CO_{uuid.uuid4().hex[:12]}"
    cancelled["Body"]["stkCallback"]["CheckoutRequestID"] = reference
    stack.post("stk", cancelled)
    wait_until(lambda: all_processed(stack))
    failed = stack.api(
        "GET", "/transactions", params={"kind": "failed_attempt", "q": reference}
    ).json()["items"]
    assert [(i["status"], i["result_code"], i["amount"]) for i in failed] == [
        ("cancelled", 1032, "0.00")
    ]


def test_the_whole_transaction_log_pages_through_both_parts_on_postgresql(stack: Stack) -> None:
    """Ledger entries and failed attempts merged, newest first, each row exactly once."""
    account = f"PAGE-{uuid.uuid4().hex[:6]}"
    create_customer(stack, account, [])
    for _ in range(3):
        stack.api("POST", "/payments", json={"account_number": account, "amount": "1.00"})
        cancelled = sample("stk_callback_cancelled.json")
        cancelled["Body"]["stkCallback"]["CheckoutRequestID"] = f"ws_CO_{uuid.uuid4().hex[:12]}"
        stack.post("stk", cancelled)
    wait_until(lambda: all_processed(stack))
    seen: list[str] = []
    stamps: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = stack.api("GET", "/transactions", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen.extend(item["id"] for item in body["items"])
        stamps.extend(item["at"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert {i[0] for i in seen} == {"L", "A"}
    assert stamps == sorted(stamps, reverse=True)
