"""A payment entered by hand meets the provider's own record of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from core.runtime import Runtime
from ingest.providers import receipt_owner
from matcher.check import check_invariants
from matcher.ledger import Ledger
from matcher.models import AuditEvent, LedgerEntry, Payment
from matcher.notifications import Msisdn, PaymentNotification
from matcher.payments import CONFLICT, DUPLICATE, record_manual_payment, record_payment
from matcher.revenue import between, day_of
from tasks.work import drain_inbox
from tests.conftest import add_customer, assert_problem, sample_bytes
from tests.unit.test_pipeline import balance, confirmation, put

RECEIPT = "TKQ4A91B2C"
PAID = datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)


def enter_by_hand(runtime: Runtime, amount: int = 150000, reference: str = RECEIPT) -> int:
    with runtime.sessions.begin() as session:
        moved = record_manual_payment(
            session,
            account_number="ACC1042",
            amount=amount,
            currency="KES",
            reference=reference,
            note=None,
            actor="op",
            receipt_owner=receipt_owner,
        )
        return moved.payment.id


def stored(runtime: Runtime, payment_id: int) -> Payment:
    with runtime.sessions.begin() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        session.expunge(payment)
        return payment


def revenue_on(runtime: Runtime, moment: datetime) -> tuple[int, int]:
    start = day_of(moment)
    with runtime.sessions.begin() as session:
        return between(session, [start, start + timedelta(days=1)])[0]


def notification(amount: int = 150000, source: str = "callback") -> PaymentNotification:
    return PaymentNotification(
        provider="mpesa",
        channel="c2b",
        code=RECEIPT,
        amount=amount,
        currency="KES",
        paid_at=PAID,
        msisdn=Msisdn(
            raw="254712345678",
            kind="phone",
            e164="+254712345678",
            sha256="f" * 64,
        ),
        payer_name="WANJIKU A KAMAU",
        account_reference="ACC1042",
        source=source,
    )


def assert_confirmed(runtime: Runtime, payment_id: int, by: str) -> Payment:
    payment = stored(runtime, payment_id)
    assert payment.confirmed_by == by
    assert payment.confirmed_at is not None
    assert payment.phone == "+254712345678"
    assert payment.msisdn_kind == "phone"
    assert payment.payer_name is not None and "WANJIKU" in payment.payer_name
    assert payment.paid_at == PAID
    assert payment.channel == "manual"
    assert payment.status == "associated"
    assert balance(runtime, "ACC1042") == 150000
    with runtime.sessions.begin() as session:
        credits = session.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id == payment_id)
        ).all()
        assert [e.amount_minor for e in credits] == [150000]
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_id == str(payment_id), AuditEvent.action == "payment.confirmed"
            )
        ).all()
        assert len(events) == 1
        assert events[0].before["phone"] is None
        assert events[0].after["phone"] == "+254712345678"
    return payment


class TestACallbackConfirmsAManualEntry:
    def test_the_batch_path_gives_it_the_payers_phone_name_and_time(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [], name="Shop 42")
        payment_id = enter_by_hand(runtime)
        entered = stored(runtime, payment_id)
        assert entered.confirmed_at is None and entered.phone is None
        put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json"))
        assert drain_inbox(runtime).outcomes == {"duplicate": 1}
        payment = assert_confirmed(runtime, payment_id, "callback")
        assert payment.customer_id == entered.customer_id

    def test_the_single_row_path_agrees(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [], name="Shop 42")
        payment_id = enter_by_hand(runtime)
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            outcome = record_payment(
                session, ledger, notification(source="statement"), region="KE", actor="mpesa"
            )
        assert (outcome.outcome, outcome.payment_id) == (DUPLICATE, payment_id)
        assert_confirmed(runtime, payment_id, "statement")

    def test_its_revenue_moves_to_the_day_it_was_paid(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [])
        payment_id = enter_by_hand(runtime)
        entered_at = stored(runtime, payment_id).paid_at
        assert revenue_on(runtime, entered_at) == (150000, 1)
        assert revenue_on(runtime, PAID) == (0, 0)
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            record_payment(session, ledger, notification(), region="KE", actor="mpesa")
        assert revenue_on(runtime, entered_at) == (0, 0)
        assert revenue_on(runtime, PAID) == (150000, 1)
        with runtime.sessions.begin() as session:
            assert check_invariants(session, stuck_after=timedelta(minutes=5)) == []

    def test_a_second_record_changes_nothing_more(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [])
        payment_id = enter_by_hand(runtime)
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            record_payment(session, ledger, notification(), region="KE", actor="mpesa")
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            again = record_payment(
                session, ledger, notification(source="pull"), region="KE", actor="mpesa"
            )
        assert again.outcome == DUPLICATE
        assert_confirmed(runtime, payment_id, "callback")
        assert revenue_on(runtime, PAID) == (150000, 1)


class TestWhatIsNotConfirmed:
    def test_a_different_amount_stays_a_conflict_and_unconfirmed(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [])
        payment_id = enter_by_hand(runtime, amount=140000)
        put(runtime, "c2b/confirmation", confirmation())
        assert drain_inbox(runtime).outcomes == {"conflict": 1}
        with runtime.sessions.begin() as session, Ledger(session) as ledger:
            single = record_payment(session, ledger, notification(), region="KE", actor="mpesa")
        assert single.outcome == CONFLICT
        payment = stored(runtime, payment_id)
        assert payment.confirmed_at is None and payment.confirmed_by is None
        assert payment.phone is None
        assert payment.paid_at != PAID
        assert balance(runtime, "ACC1042") == 140000

    def test_a_callback_first_then_the_manual_entry_is_as_before(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [])
        put(runtime, "c2b/confirmation", confirmation())
        assert drain_inbox(runtime).outcomes == {"credited": 1}
        payment_id = enter_by_hand(runtime)
        payment = stored(runtime, payment_id)
        assert payment.channel == "c2b"
        assert payment.confirmed_at is None
        assert balance(runtime, "ACC1042") == 150000


class TestTheUnconfirmedList:
    def test_lists_unconfirmed_manual_entries_oldest_first_in_pages(
        self, runtime: Runtime, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC7", ["0799000111"])
        confirmed = enter_by_hand(runtime)
        put(runtime, "c2b/confirmation", confirmation())  # confirms the first entry
        put(runtime, "c2b/confirmation", confirmation(TransID="TKQ4A91B2D", BillRefNumber="ACC7"))
        assert drain_inbox(runtime).outcomes == {"duplicate": 1, "credited": 1}
        typed = [enter_by_hand(runtime, amount=1000 * n, reference=None) for n in (1, 2, 3)]
        seen: list[int] = []
        cursor = None
        for _ in range(3):
            query = {"confirmed": "false", "limit": "2", **({"cursor": cursor} if cursor else {})}
            response = client.get("/api/v1/payments", query_string=query, headers=viewer_headers)
            assert response.status_code == 200, response.get_data(as_text=True)
            body = response.get_json()
            seen += [item["id"] for item in body["items"]]
            assert all(item["confirmed_at"] is None for item in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == typed
        assert confirmed not in seen

    def test_a_value_other_than_false_is_refused_with_what_to_give(
        self, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        for query in ({"confirmed": "true"}, {"confirmed": "false", "status": "associated"}):
            response = client.get("/api/v1/payments", query_string=query, headers=viewer_headers)
            assert_problem(response, 400, "invalid_confirmed")

    def test_a_confirmed_entry_is_found_by_the_payers_phone(
        self, runtime: Runtime, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        payment_id = enter_by_hand(runtime)

        def found() -> list[int]:
            response = client.get(
                "/api/v1/payments", query_string={"q": "0712345678"}, headers=viewer_headers
            )
            assert response.status_code == 200
            return [item["id"] for item in response.get_json()["items"]]

        assert found() == []
        put(runtime, "c2b/confirmation", confirmation())
        drain_inbox(runtime)
        assert found() == [payment_id]
        item = client.get(f"/api/v1/payments/{payment_id}", headers=viewer_headers).get_json()
        assert item["confirmed_by"] == "callback"
        assert item["phone"] == "+254712345678"
        assert item["account_number"] == "ACC1042"
