"""M-PESA callbacks over HTTP to credited balances, on PostgreSQL + Redis + a Celery worker."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from matcher.ledger import ledger_sum
from matcher.models import Customer, InboxItem, LedgerEntry, Payment
from tasks.celery_app import PROCESS_INBOX, make_producer
from tests.conftest import sample, sample_bytes
from tests.integration.conftest import (
    PATH_TOKEN,
    VENV_BIN,
    Stack,
    ambiguous_post,
    free_port,
    raw_request,
    wait_until,
)

pytestmark = pytest.mark.integration

_codes = iter(range(1, 10**6))
_lock = threading.Lock()


def new_code(prefix: str = "IT") -> str:
    with _lock:
        return f"{prefix}{next(_codes):06d}"


def confirmation(**changes: object) -> dict:
    body = sample("c2b_confirmation_paybill_plain.json")
    body["TransID"] = new_code()
    body.update(changes)
    return body


def create_customer(stack: Stack, account: str, phones: list[str]) -> None:
    response = stack.api(
        "POST", "/customers", json={"account_number": account, "name": account, "phones": phones}
    )
    assert response.status_code == 201, response.text


def processed(stack: Stack, code: str) -> bool:
    with stack.runtime.sessions.begin() as session:
        return bool(
            session.scalar(
                select(func.count())
                .select_from(InboxItem)
                .where(InboxItem.code == code, InboxItem.status != "pending")
            )
        )


def payment_rows(stack: Stack, code: str) -> list[Payment]:
    with stack.runtime.sessions.begin() as session:
        return list(session.scalars(select(Payment).where(Payment.code == code)))


def credits_for(stack: Stack, code: str) -> int:
    with stack.runtime.sessions.begin() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .join(Payment, Payment.id == LedgerEntry.payment_id)
                .where(Payment.code == code)
            )
            or 0
        )


def all_processed(stack: Stack) -> bool:
    with stack.runtime.sessions.begin() as session:
        return not session.scalar(
            select(func.count()).select_from(InboxItem).where(InboxItem.status == "pending")
        )


def test_each_sample_callback_over_http_ends_in_the_right_balance(stack: Stack) -> None:
    create_customer(stack, "ACC1042", ["0712 345 678"])
    create_customer(stack, "OT-22", ["+254722000000"])
    create_customer(stack, "TILL-9", ["0110-123-456"])
    posts = [
        ("c2b/confirmation", "c2b_confirmation_paybill_plain.json"),  # 1500.00 by account
        ("c2b/confirmation", "c2b_confirmation_masked_msisdn.json"),  # 50.00 by account
        ("c2b/confirmation", "c2b_confirmation_hashed_msisdn.json"),  # 250.00 by hash
        ("c2b/confirmation", "c2b_confirmation_buy_goods.json"),  # 100.00 by phone
        ("stk", "stk_callback_success.json"),  # 20.00 by phone
        ("stk", "stk_callback_cancelled.json"),  # nothing
    ]
    for kind, name in posts:
        response = stack.post(kind, sample_bytes(name))
        assert response.status_code == 200, response.text
        assert response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    validation = stack.post("c2b/validation", sample_bytes("c2b_validation.json"))
    assert validation.json() == {"ResultCode": "0", "ResultDesc": "Accepted"}

    wait_until(lambda: all_processed(stack))
    assert stack.balance("ACC1042") == "1570.00"
    assert stack.balance("OT-22") == "250.00"
    assert stack.balance("TILL-9") == "100.00"
    listed = stack.api("GET", "/payments", params={"limit": 100}).json()["items"]
    by_code = {item["code"]: item for item in listed}
    assert by_code["TKQ4A91B2C"]["paid_at"] == "2025-11-03T11:30:15+00:00"
    assert by_code["TKQ4A91B2C"]["amount"] == "1500.00"
    assert by_code["TKS2M55VLA"]["phone"] is None  # a mask is never a phone
    assert by_code["TKR7Z01XQP"]["match_method"] == "phone_hash"
    assert "ws_CO_191220191020363926" not in json.dumps(listed)


def test_sequential_duplicates_give_one_payment_and_one_credit(stack: Stack) -> None:
    create_customer(stack, "DUP-SEQ", [])
    body = confirmation(BillRefNumber="DUP-SEQ", TransAmount="10.00")
    for _ in range(5):
        assert stack.post("c2b/confirmation", body).status_code == 200
    wait_until(lambda: all_processed(stack))
    assert len(payment_rows(stack, body["TransID"])) == 1
    assert credits_for(stack, body["TransID"]) == 1
    assert stack.balance("DUP-SEQ") == "10.00"


def test_twenty_concurrent_duplicates_give_one_payment_and_one_credit(stack: Stack) -> None:
    create_customer(stack, "DUP-CON", [])
    body = confirmation(BillRefNumber="DUP-CON", TransAmount="33.00")
    barrier = threading.Barrier(20)

    def send(_: int) -> int:
        barrier.wait()
        return stack.post("c2b/confirmation", body).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(send, range(20)))
    assert statuses == [200] * 20
    wait_until(lambda: all_processed(stack))
    assert len(payment_rows(stack, body["TransID"])) == 1
    assert credits_for(stack, body["TransID"]) == 1
    assert stack.balance("DUP-CON") == "33.00"


def test_a_shared_phone_leaves_the_payment_unassociated_with_both_candidates(stack: Stack) -> None:
    create_customer(stack, "SH-HOME", ["0798 111 222"])
    create_customer(stack, "SH-SHOP", ["254798111222"])
    body = confirmation(BillRefNumber="", MSISDN="254798111222")
    stack.post("c2b/confirmation", body)
    wait_until(lambda: processed(stack, body["TransID"]))
    items = stack.api("GET", "/payments", params={"status": "unassociated", "limit": 100}).json()
    [item] = [i for i in items["items"] if i["code"] == body["TransID"]]
    assert item["reason"] == "shared_phone"
    assert item["candidates"] == ["SH-HOME", "SH-SHOP"]
    assert item["account_number"] is None
    assert stack.balance("SH-HOME") == stack.balance("SH-SHOP") == "0.00"


def test_a_masked_number_never_matches_a_customer(stack: Stack) -> None:
    create_customer(stack, "MASK-1", ["0712 999 678"])
    body = confirmation(BillRefNumber="", MSISDN="2547 ***** 678")
    stack.post("c2b/confirmation", body)
    wait_until(lambda: processed(stack, body["TransID"]))
    [payment] = payment_rows(stack, body["TransID"])
    assert (payment.status, payment.phone, payment.reason) == ("unassociated", None, "no_match")
    assert stack.balance("MASK-1") == "0.00"


def test_a_stranded_inbox_row_is_picked_up_by_the_sweeper(stack: Stack) -> None:
    """A row committed but never announced (lost nudge, broker down) is still credited."""
    create_customer(stack, "SWEPT-1", [])
    body = confirmation(BillRefNumber="SWEPT-1", TransAmount="77.00")
    with stack.runtime.sessions.begin() as session:
        session.add(
            InboxItem(
                provider="mpesa",
                kind="c2b/confirmation",
                body=json.dumps(body).encode(),
                headers={},
                code=body["TransID"],
                attempts=0,
                received_at=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
    wait_until(lambda: processed(stack, body["TransID"]), timeout=30)
    assert stack.balance("SWEPT-1") == "77.00"
    assert "stranded" in stack.log("worker")


def test_a_task_run_twice_credits_once(stack: Stack) -> None:
    create_customer(stack, "TWICE-1", [])
    body = confirmation(BillRefNumber="TWICE-1", TransAmount="5.00")
    stack.post("c2b/confirmation", body)
    wait_until(lambda: processed(stack, body["TransID"]))
    # Put the row back as if the first run's acknowledgement were lost, then deliver twice.
    with stack.runtime.sessions.begin() as session:
        session.execute(
            update(InboxItem).where(InboxItem.code == body["TransID"]).values(status="pending")
        )
    producer = make_producer(stack.runtime.settings)
    producer.send_task(PROCESS_INBOX)
    producer.send_task(PROCESS_INBOX)
    wait_until(lambda: processed(stack, body["TransID"]))
    assert credits_for(stack, body["TransID"]) == 1
    assert stack.balance("TWICE-1") == "5.00"


def test_a_burst_over_two_worker_processes_credits_every_payment_exactly_once(
    stack: Stack,
) -> None:
    stack.start_worker("worker2", concurrency=1)
    try:
        accounts = [f"BURST-{n}" for n in range(10)]
        for account in accounts:
            create_customer(stack, account, [])
        bodies = [
            confirmation(BillRefNumber=accounts[n % 10], TransAmount=f"{n % 7 + 1}.50")
            for n in range(300)
        ]
        # every fourth body is sent twice
        sends = bodies + bodies[::4]
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(lambda b: stack.post("c2b/confirmation", b).status_code, sends)
            )
        assert set(statuses) == {200}
        wait_until(lambda: all_processed(stack), timeout=60)
        expected: dict[str, int] = {a: 0 for a in accounts}
        for n, body in enumerate(bodies):
            expected[body["BillRefNumber"]] += (n % 7 + 1) * 100 + 50
        with stack.runtime.sessions.begin() as session:
            for account in accounts:
                customer = session.scalar(
                    select(Customer).where(Customer.account_number == account)
                )
                assert customer is not None
                assert customer.balance_minor == expected[account]
                assert ledger_sum(session, customer.id) == expected[account]
        assert "momo.process_inbox" in stack.log("worker2")
    finally:
        stack.stop("worker2")


def test_the_worker_registers_its_tasks_by_name(stack: Stack) -> None:
    out = subprocess.run(
        [str(VENV_BIN / "celery"), "-A", "tasks", "inspect", "registered", "--timeout", "10"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
        cwd=stack.workdir,
    ).stdout
    assert "momo.process_inbox" in out
    assert "momo.sweep_inbox" in out


def test_flower_shows_the_processing_task_by_name(stack: Stack) -> None:
    port = free_port()
    stack.env["FLOWER_UNAUTHENTICATED_API"] = "true"
    stack.start(
        "flower",
        [
            str(VENV_BIN / "celery"),
            "-A",
            "tasks",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
    )
    try:

        def workers() -> bool:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=5)
                return r.status_code == 200 and bool(r.json())
            except requests.ConnectionError:
                return False

        wait_until(workers, timeout=60, interval=0.5)
        stack.post("c2b/confirmation", confirmation())

        def seen() -> set[str]:
            tasks = requests.get(f"http://127.0.0.1:{port}/api/tasks", timeout=5).json()
            return {task.get("name") for task in tasks.values()}

        assert "momo.process_inbox" in wait_until(
            lambda: "momo.process_inbox" in seen() and seen(), timeout=30, interval=0.5
        )
    finally:
        stack.stop("flower")
        stack.env.pop("FLOWER_UNAUTHENTICATED_API", None)


def test_an_oversized_body_is_refused_before_it_is_read(stack: Stack) -> None:
    """The server answers 413 from the Content-Length alone, without waiting for the body."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(stack.base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(
            f"POST /webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation HTTP/1.1\r\n"
            f"Host: {url.hostname}\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n\r\n".encode()
        )
        head = conn.recv(4096).decode(errors="replace")  # no body was ever sent
    assert head.startswith("HTTP/1.1 413"), head


def test_a_body_framed_by_both_content_length_and_chunked_is_refused_400_and_not_stored(
    stack: Stack,
) -> None:
    """gunicorn refuses it itself, before momo sees it; nothing reaches the inbox."""

    def inbox_count() -> int:
        with stack.runtime.sessions.begin() as session:
            return int(session.scalar(select(func.count()).select_from(InboxItem)) or 0)

    body = confirmation()
    before = inbox_count()

    answer = raw_request(
        stack.base,
        ambiguous_post(f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation", json.dumps(body).encode()),
    )

    assert answer.startswith("HTTP/1.1 400"), answer
    assert payment_rows(stack, body["TransID"]) == []
    assert inbox_count() == before


def test_momo_check_finds_the_books_in_order_after_everything_above(stack: Stack) -> None:
    """Runs last in this module: whatever the tests above did, every promise still holds."""
    wait_until(lambda: all_processed(stack))
    result = subprocess.run(
        [str(VENV_BIN / "momo"), "check"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
        cwd=stack.workdir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")
