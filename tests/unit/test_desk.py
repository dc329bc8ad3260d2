"""The operator's Payments desk over HTTP on SQLite: Make Payment, associate, disassociate,
search, customers, plans and vouchers, the transaction log, revenue and tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

import matcher.plans
from api.auth import hash_token
from core.runtime import Runtime
from matcher.ledger import ledger_sum
from matcher.models import (
    ApiToken,
    Customer,
    IdempotencyRecord,
    InboxItem,
    LedgerEntry,
    Payment,
    Purchase,
)
from matcher.plans import VOUCHER_ALPHABET, VOUCHER_LENGTH
from tasks.work import drain_inbox
from tests.conftest import (
    add_customer,
    assert_problem,
    make_token,
    sample_bytes,
    webhook_url,
)
from tests.conftest import post_confirmation as callback

API = "/api/v1"

Headers = dict[str, str]


# --- helpers ------------------------------------------------------------------------------


def bearer(runtime: Runtime, role: str, name: str) -> Headers:
    return {"Authorization": f"Bearer {make_token(runtime, role, name=name)}"}


@pytest.fixture
def admin_headers(runtime: Runtime) -> Headers:
    return bearer(runtime, "admin", "test-admin")


def cancelled_stk(client: FlaskClient) -> None:
    response = client.post(
        webhook_url("stk"),
        data=sample_bytes("stk_callback_cancelled.json"),
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def make_payment(client: FlaskClient, headers: Headers, key: str | None = None, **body: Any) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"{API}/payments", json=body, headers=headers | extra)


def associate(client: FlaskClient, headers: Headers, ident: int, account: str) -> Any:
    return client.post(
        f"{API}/payments/{ident}/associate", json={"account_number": account}, headers=headers
    )


def disassociate(
    client: FlaskClient, headers: Headers, ident: int, reason: str | None = None
) -> Any:
    return client.post(
        f"{API}/payments/{ident}/disassociate",
        json={"reason": reason} if reason else {},
        headers=headers,
    )


def list_payments(client: FlaskClient, headers: Headers, **params: str) -> Any:
    return client.get(f"{API}/payments", query_string=params, headers=headers)


def codes(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["code"] for item in response.get_json()["items"]]


def payment_id(runtime: Runtime, code: str) -> int:
    with runtime.sessions() as session:
        found = session.scalar(select(Payment.id).where(Payment.code == code))
        assert found is not None, code
        return found


def payment_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Payment)) or 0)


def balance_minor(runtime: Runtime, account: str) -> int:
    """The stored balance, after checking it equals the sum of the ledger entries."""
    with runtime.sessions() as session:
        customer = session.scalar(select(Customer).where(Customer.account_number == account))
        assert customer is not None, account
        assert customer.balance_minor == ledger_sum(session, customer.id)
        return customer.balance_minor


def entries_of(runtime: Runtime, ident: int) -> list[tuple[str, int]]:
    with runtime.sessions() as session:
        rows = session.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id == ident).order_by(LedgerEntry.id)
        ).all()
        return [(e.kind, e.amount_minor) for e in rows]


def walk(client: FlaskClient, headers: Headers, path: str, **params: str) -> list[list[Any]]:
    """Every page of a list endpoint, following next_cursor."""
    pages: list[list[Any]] = []
    cursor: str | None = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = client.get(path, query_string=query, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


# --- POST /api/v1/payments ----------------------------------------------------------------


class TestMakePayment:
    def test_a_manual_payment_answers_201_with_an_associated_item_and_credits_the_balance(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"], name="Wanjiku Kamau")
        headers = bearer(runtime, "operator", "alice")

        response = make_payment(
            client, headers, account_number="acc1042", amount="1500", note="cash at the counter"
        )

        assert response.status_code == 201, response.get_data(as_text=True)
        item = response.get_json()
        assert item["status"] == "associated"
        assert item["match_method"] == "manual"
        assert item["account_number"] == "ACC1042"
        assert item["amount"] == "1500.00"
        assert item["currency"] == "KES"
        assert item["balance"] == "1500.00"
        assert item["channel"] == "manual"
        assert item["id"] == payment_id(runtime, item["code"])
        assert balance_minor(runtime, "ACC1042") == 150000
        assert entries_of(runtime, item["id"]) == [("manual_payment", 150000)]
        shown = client.get(f"{API}/payments/{item['id']}", headers=headers).get_json()
        assert shown["note"] == "cash at the counter"
        assert shown["created_by"] == "token:alice"

    def test_two_manual_payments_add_up(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        first = make_payment(client, operator_headers, account_number="ACC1042", amount="100")
        second = make_payment(client, operator_headers, account_number="ACC1042", amount="0.05")

        assert (first.status_code, second.status_code) == (201, 201)
        assert first.get_json()["code"] != second.get_json()["code"]
        assert second.get_json()["balance"] == "100.05"
        assert balance_minor(runtime, "ACC1042") == 10005

    @pytest.mark.parametrize(
        "amount",
        [
            pytest.param(0, id="zero"),
            pytest.param("0.00", id="zero-text"),
            pytest.param(-5, id="negative"),
            pytest.param("-5.00", id="negative-text"),
            pytest.param("1.005", id="three-decimals"),
            pytest.param("abc", id="not-a-number"),
            pytest.param("", id="empty"),
            pytest.param("NaN", id="nan"),
            pytest.param("Infinity", id="infinity"),
            pytest.param("100000000.01", id="over-maximum"),
            pytest.param(10**12, id="huge-integer"),
            pytest.param(None, id="missing"),
            pytest.param(True, id="boolean"),
            pytest.param([1500], id="list"),
        ],
    )
    def test_an_invalid_amount_answers_400_and_books_nothing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers, amount: Any
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = make_payment(client, operator_headers, account_number="ACC1042", amount=amount)

        assert_problem(response, 400, "invalid_amount")
        assert payment_count(runtime) == 0
        assert balance_minor(runtime, "ACC1042") == 0

    @pytest.mark.parametrize(
        ("raw", "shown"),
        [("10.5", "10.50"), ("0.1", "0.10"), ("1e3", "1000.00"), ("99.99", "99.99")],
    )
    def test_a_json_number_with_a_fraction_is_taken_exactly(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: Headers,
        raw: str,
        shown: str,
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = client.post(
            f"{API}/payments",
            data=f'{{"account_number": "ACC1042", "amount": {raw}}}',
            content_type="application/json",
            headers=operator_headers,
        )

        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["amount"] == shown
        assert response.get_json()["balance"] == shown

    def test_the_largest_amount_allowed_is_accepted(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100000000.00"
        )

        assert response.status_code == 201
        assert response.get_json()["amount"] == "100000000.00"

    def test_an_unknown_account_answers_404_and_books_nothing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        response = make_payment(client, operator_headers, account_number="NOPE9", amount="100")

        body = assert_problem(response, 404, "customer_not_found")
        assert "NOPE9" in body["detail"]
        assert payment_count(runtime) == 0

    @pytest.mark.parametrize("account", [None, "", "   ", 1042])
    def test_a_missing_account_number_answers_400(
        self, client: FlaskClient, operator_headers: Headers, account: Any
    ) -> None:
        response = make_payment(client, operator_headers, account_number=account, amount="100")

        assert_problem(response, 400, "invalid_account_number")

    def test_a_viewer_may_not_record_a_payment(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = make_payment(client, viewer_headers, account_number="ACC1042", amount="100")

        assert_problem(response, 403, "forbidden")
        assert payment_count(runtime) == 0

    def test_without_a_token_answers_401(self, client: FlaskClient, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [])

        response = make_payment(client, {}, account_number="ACC1042", amount="100")

        assert_problem(response, 401, "unauthorized")


class TestMakePaymentIdempotencyKey:
    def test_the_same_key_and_body_twice_books_one_payment_and_replays_the_answer(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        body = {"account_number": "ACC1042", "amount": "250.00", "note": "cash"}

        first = make_payment(client, operator_headers, key="k-1", **body)
        second = make_payment(client, operator_headers, key="k-1", **body)

        assert first.status_code == second.status_code == 201
        assert second.get_json() == first.get_json()
        assert second.headers.get("Idempotent-Replayed") == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert payment_count(runtime) == 1
        assert balance_minor(runtime, "ACC1042") == 25000

    def test_the_same_key_with_a_different_body_answers_422_and_books_nothing_more(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        make_payment(client, operator_headers, key="k-1", account_number="ACC1042", amount="250")

        response = make_payment(
            client, operator_headers, key="k-1", account_number="ACC1042", amount="300"
        )

        assert_problem(response, 422, "idempotency_key_reused")
        assert payment_count(runtime) == 1
        assert balance_minor(runtime, "ACC1042") == 25000

    def test_different_tokens_may_use_the_same_key_independently(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        alice = bearer(runtime, "operator", "alice")
        bob = bearer(runtime, "operator", "bob")
        body = {"account_number": "ACC1042", "amount": "100"}

        by_alice = make_payment(client, alice, key="shared", **body)
        by_bob = make_payment(client, bob, key="shared", **body)

        assert by_alice.status_code == by_bob.status_code == 201
        assert "Idempotent-Replayed" not in by_bob.headers
        assert by_alice.get_json()["id"] != by_bob.get_json()["id"]
        assert payment_count(runtime) == 2
        assert balance_minor(runtime, "ACC1042") == 20000

    def test_a_refused_request_does_not_use_up_its_key(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        refused = make_payment(
            client, operator_headers, key="k-1", account_number="ACC1042", amount="1.005"
        )
        assert refused.status_code == 400

        corrected = make_payment(
            client, operator_headers, key="k-1", account_number="ACC1042", amount="1.00"
        )

        assert corrected.status_code == 201
        assert "Idempotent-Replayed" not in corrected.headers
        assert balance_minor(runtime, "ACC1042") == 100

    @pytest.mark.parametrize("key", ["   ", "x" * 201, "tab\there"])
    def test_a_malformed_key_answers_400(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers, key: str
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = make_payment(
            client, operator_headers, key=key, account_number="ACC1042", amount="1"
        )

        assert_problem(response, 400, "invalid_idempotency_key")
        assert payment_count(runtime) == 0


class TestMakePaymentWithAReceiptReference:
    def test_recorded_by_hand_first_then_its_callback_credits_once(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        manual = make_payment(
            client,
            operator_headers,
            account_number="ACC1042",
            amount="1500.00",
            reference="TKQ4A91B2C",
        )
        assert manual.status_code == 201
        assert manual.get_json()["code"] == "TKQ4A91B2C"

        callback(client, code="TKQ4A91B2C", ref="ACC1042", amount="1500.00")
        drain_inbox(runtime)

        assert payment_count(runtime) == 1
        assert balance_minor(runtime, "ACC1042") == 150000
        assert entries_of(runtime, manual.get_json()["id"]) == [("manual_payment", 150000)]
        with runtime.sessions() as session:
            [reason] = session.scalars(select(InboxItem.reason)).all()
            assert reason == "duplicate"

    def test_a_callback_disagreeing_with_a_receipt_recorded_by_hand_credits_nothing_more(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC2000", [])
        make_payment(
            client,
            operator_headers,
            account_number="ACC1042",
            amount="1400.00",
            reference="TKQ4A91B2C",
        )

        callback(client, code="TKQ4A91B2C", ref="ACC2000", amount="1500.00")
        drain_inbox(runtime)

        assert payment_count(runtime) == 1
        assert balance_minor(runtime, "ACC1042") == 140000
        assert balance_minor(runtime, "ACC2000") == 0

    def test_a_lower_case_receipt_is_the_same_receipt(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        manual = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100", reference="tkq4a91b2c"
        )

        callback(client, code="TKQ4A91B2C", ref="ACC1042", amount="100.00")
        drain_inbox(runtime)

        assert manual.get_json()["code"] == "TKQ4A91B2C"
        assert payment_count(runtime) == 1
        assert balance_minor(runtime, "ACC1042") == 10000

    def test_an_unmatched_callback_first_is_associated_by_the_manual_payment_with_200(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKQ4A91B2C", msisdn="254799000222", ref="", amount="1500.00")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKQ4A91B2C")

        response = make_payment(
            client,
            operator_headers,
            account_number="ACC1042",
            amount="1500.00",
            reference="TKQ4A91B2C",
        )

        assert response.status_code == 200, response.get_data(as_text=True)
        item = response.get_json()
        assert item["id"] == ident
        assert item["status"] == "associated"
        assert item["account_number"] == "ACC1042"
        assert item["match_method"] == "manual"
        assert item["balance"] == "1500.00"
        assert payment_count(runtime) == 1
        assert entries_of(runtime, ident) == [("payment_credit", 150000)]
        assert codes(list_payments(client, operator_headers, status="unassociated")) == []

    def test_a_callback_already_credited_to_the_same_customer_answers_200_and_adds_nothing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKQ4A91B2C", ref="ACC1042", amount="1500.00")
        drain_inbox(runtime)

        response = make_payment(
            client,
            operator_headers,
            account_number="ACC1042",
            amount="1500.00",
            reference="TKQ4A91B2C",
        )

        assert response.status_code == 200
        assert response.get_json()["id"] == payment_id(runtime, "TKQ4A91B2C")
        assert response.get_json()["balance"] == "1500.00"
        assert balance_minor(runtime, "ACC1042") == 150000
        assert payment_count(runtime) == 1

    def test_a_callback_credited_to_another_customer_answers_409_naming_it(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC2000", [])
        callback(client, code="TKQ4A91B2C", ref="ACC2000", amount="1500.00")
        drain_inbox(runtime)

        response = make_payment(
            client,
            operator_headers,
            account_number="ACC1042",
            amount="1500.00",
            reference="TKQ4A91B2C",
        )

        body = assert_problem(response, 409, "already_associated")
        assert "ACC2000" in body["detail"]
        assert balance_minor(runtime, "ACC1042") == 0
        assert balance_minor(runtime, "ACC2000") == 150000

    def test_a_receipt_known_with_another_amount_answers_409_reference_conflict(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKQ4A91B2C", msisdn="254799000222", ref="", amount="1500.00")
        drain_inbox(runtime)

        response = make_payment(
            client,
            operator_headers,
            account_number="ACC1042",
            amount="1400.00",
            reference="TKQ4A91B2C",
        )

        body = assert_problem(response, 409, "reference_conflict")
        assert "1500.00" in body["detail"]
        assert balance_minor(runtime, "ACC1042") == 0
        [item] = list_payments(client, operator_headers, status="unassociated").get_json()["items"]
        assert item["code"] == "TKQ4A91B2C"

    @pytest.mark.parametrize("reference", ["CASH-42", "invoice 2025/11/03", "TKQ4A91B2", "A1"])
    def test_a_reference_that_is_not_a_receipt_is_kept_and_the_code_generated(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers, reference: str
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100", reference=reference
        )

        assert response.status_code == 201
        item = response.get_json()
        assert item["reference"] == reference
        assert item["code"] != reference.upper()
        assert item["code"].startswith("MAN")
        assert item["provider"] == "manual"

    def test_two_payments_with_the_same_non_receipt_reference_are_both_booked(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        first = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100", reference="CASH"
        )
        second = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100", reference="CASH"
        )

        assert (first.status_code, second.status_code) == (201, 201)
        assert balance_minor(runtime, "ACC1042") == 20000

    def test_a_phone_number_as_reference_is_not_taken_for_a_receipt(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])

        first = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100", reference="0712345678"
        )
        second = make_payment(
            client, operator_headers, account_number="ACC1042", amount="100", reference="0712345678"
        )

        assert (first.status_code, second.status_code) == (201, 201)
        assert balance_minor(runtime, "ACC1042") == 20000
        assert first.get_json()["provider"] == "manual"


# --- POST /api/v1/payments/{id}/associate -------------------------------------------------


class TestAssociate:
    def test_an_unassociated_payment_moves_to_the_customer_and_is_credited(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKA0000001", msisdn="254799000222", ref="", amount="700.00")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKA0000001")
        headers = bearer(runtime, "operator", "alice")

        response = associate(client, headers, ident, "acc1042")

        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["balance"] == "700.00"
        assert body["payment"]["id"] == ident
        assert body["payment"]["status"] == "associated"
        assert body["payment"]["account_number"] == "ACC1042"
        assert body["payment"]["match_method"] == "manual"
        assert "reason" not in body["payment"]
        assert balance_minor(runtime, "ACC1042") == 70000
        assert entries_of(runtime, ident) == [("payment_credit", 70000)]
        assert codes(list_payments(client, headers)) == ["TKA0000001"]
        assert codes(list_payments(client, headers, status="unassociated")) == []

    def test_a_shared_phone_payment_can_be_given_to_one_of_its_candidates(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1", ["0722000000"])
        add_customer(runtime, "ACC2", ["0722000000"])
        callback(client, code="TKA0000002", msisdn="254722000000", ref="", amount="50.00")
        drain_inbox(runtime)

        response = associate(client, operator_headers, payment_id(runtime, "TKA0000002"), "ACC2")

        assert response.status_code == 200
        assert (balance_minor(runtime, "ACC1"), balance_minor(runtime, "ACC2")) == (0, 5000)

    def test_an_associated_payment_answers_409_naming_its_customer(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC2000", [])
        callback(client, code="TKA0000003", ref="ACC1042")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKA0000003")

        response = associate(client, operator_headers, ident, "ACC2000")

        body = assert_problem(response, 409, "already_associated")
        assert "ACC1042" in body["detail"]
        assert (balance_minor(runtime, "ACC1042"), balance_minor(runtime, "ACC2000")) == (
            150000,
            0,
        )

    def test_associating_to_the_same_customer_again_answers_409_and_credits_nothing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKA0000004", msisdn="254799000222", ref="")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKA0000004")
        assert associate(client, operator_headers, ident, "ACC1042").status_code == 200

        again = associate(client, operator_headers, ident, "ACC1042")

        assert_problem(again, 409, "already_associated")
        assert balance_minor(runtime, "ACC1042") == 150000

    @pytest.mark.parametrize("ident", ["999999", "abc", "0", "-1", "99999999999999999999"])
    def test_an_unknown_payment_answers_404(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers, ident: str
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = client.post(
            f"{API}/payments/{ident}/associate",
            json={"account_number": "ACC1042"},
            headers=operator_headers,
        )

        assert_problem(response, 404, "payment_not_found")

    def test_an_unknown_account_answers_404_and_leaves_the_payment_unassociated(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        callback(client, code="TKA0000005", msisdn="254799000222", ref="")
        drain_inbox(runtime)

        response = associate(client, operator_headers, payment_id(runtime, "TKA0000005"), "NOPE")

        assert_problem(response, 404, "customer_not_found")
        [item] = list_payments(client, operator_headers, status="unassociated").get_json()["items"]
        assert (item["code"], item["reason"]) == ("TKA0000005", "no_match")

    def test_a_missing_account_number_answers_400_naming_it(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        callback(client, code="TKA0000006", msisdn="254799000222", ref="")
        drain_inbox(runtime)

        response = client.post(
            f"{API}/payments/{payment_id(runtime, 'TKA0000006')}/associate",
            json={},
            headers=operator_headers,
        )

        body = assert_problem(response, 400, "missing_field")
        assert body["fields"] == ["account_number"]
        assert body["detail"].startswith("account_number is missing")

    def test_a_viewer_may_not_associate(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKA0000007", msisdn="254799000222", ref="")
        drain_inbox(runtime)

        response = associate(client, viewer_headers, payment_id(runtime, "TKA0000007"), "ACC1042")

        assert_problem(response, 403, "forbidden")
        assert balance_minor(runtime, "ACC1042") == 0


# --- POST /api/v1/payments/{id}/disassociate ----------------------------------------------


class TestDisassociate:
    def test_the_balance_is_debited_and_the_payment_listed_as_disassociated(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        callback(client, code="TKD0000001", ref="ACC1042", amount="1500.00")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKD0000001")

        response = disassociate(client, operator_headers, ident, reason="wrong account")

        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["balance"] == "0.00"
        assert body["payment"]["status"] == "unassociated"
        assert body["payment"]["reason"] == "disassociated"
        assert body["payment"]["account_number"] is None
        assert "negative_balance" not in body
        assert balance_minor(runtime, "ACC1042") == 0
        assert entries_of(runtime, ident) == [
            ("payment_credit", 150000),
            ("disassociation", -150000),
        ]
        [item] = list_payments(client, operator_headers, status="unassociated").get_json()["items"]
        assert (item["code"], item["reason"]) == ("TKD0000001", "disassociated")
        assert codes(list_payments(client, operator_headers)) == []

    def test_an_empty_body_is_allowed(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKD0000002", ref="ACC1042")
        drain_inbox(runtime)

        response = client.post(
            f"{API}/payments/{payment_id(runtime, 'TKD0000002')}/disassociate",
            headers=operator_headers,
        )

        assert response.status_code == 200
        assert balance_minor(runtime, "ACC1042") == 0

    def test_a_spent_credit_leaves_a_negative_balance_and_the_answer_says_so(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: Headers,
        admin_headers: Headers,
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        create_plan(client, admin_headers, code="DAY", price="1000.00")
        callback(client, code="TKD0000003", ref="ACC1042", amount="1500.00")
        drain_inbox(runtime)
        assert buy(client, operator_headers, "ACC1042", "DAY").status_code == 201

        response = disassociate(client, operator_headers, payment_id(runtime, "TKD0000003"))

        assert response.status_code == 200
        body = response.get_json()
        assert body["balance"] == "-1000.00"
        assert body["negative_balance"] is True
        assert "-1000.00" in body["message"]
        assert "ACC1042" in body["message"]
        assert balance_minor(runtime, "ACC1042") == -100000

    def test_a_payment_that_is_not_associated_answers_409(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        callback(client, code="TKD0000004", msisdn="254799000222", ref="")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKD0000004")

        response = disassociate(client, operator_headers, ident)

        assert_problem(response, 409, "not_associated")
        assert entries_of(runtime, ident) == []

    def test_disassociating_twice_debits_once(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKD0000005", ref="ACC1042")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKD0000005")
        assert disassociate(client, operator_headers, ident).status_code == 200

        assert_problem(disassociate(client, operator_headers, ident), 409, "not_associated")
        assert balance_minor(runtime, "ACC1042") == 0

    def test_an_unknown_payment_answers_404(
        self, client: FlaskClient, operator_headers: Headers
    ) -> None:
        assert_problem(disassociate(client, operator_headers, 424242), 404, "payment_not_found")

    def test_a_new_customer_with_the_payers_phone_does_not_take_a_disassociated_payment(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKD0000006", msisdn="254712345678", ref="ACC1042")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKD0000006")
        assert disassociate(client, operator_headers, ident).status_code == 200

        created = client.post(
            f"{API}/customers",
            json={"account_number": "NEW1", "name": "New One", "phones": ["0712345678"]},
            headers=operator_headers,
        )
        patched = client.patch(
            f"{API}/customers/ACC1042", json={"phones": ["0712345678"]}, headers=operator_headers
        )

        assert created.get_json()["rematched_payments"] == []
        assert patched.get_json()["rematched_payments"] == []
        assert balance_minor(runtime, "NEW1") == 0
        assert balance_minor(runtime, "ACC1042") == 0
        [item] = list_payments(client, operator_headers, status="unassociated").get_json()["items"]
        assert (item["code"], item["reason"]) == ("TKD0000006", "disassociated")

    def test_a_later_callback_from_the_payer_is_still_matched_while_the_old_one_is_not(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        callback(client, code="TKD0000007", msisdn="254712345678", ref="")
        drain_inbox(runtime)
        assert (
            disassociate(client, operator_headers, payment_id(runtime, "TKD0000007")).status_code
            == 200
        )

        callback(client, code="TKD0000008", msisdn="254712345678", ref="", amount="20.00")
        drain_inbox(runtime)

        assert codes(list_payments(client, operator_headers)) == ["TKD0000008"]
        assert balance_minor(runtime, "ACC1042") == 2000

    def test_associating_by_hand_again_credits_again_and_the_net_effect_is_the_amount(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC2000", [])
        callback(client, code="TKD0000009", ref="ACC1042", amount="1500.00")
        drain_inbox(runtime)
        ident = payment_id(runtime, "TKD0000009")
        assert disassociate(client, operator_headers, ident).status_code == 200

        to_other = associate(client, operator_headers, ident, "ACC2000")
        assert to_other.status_code == 200
        assert disassociate(client, operator_headers, ident).status_code == 200
        back = associate(client, operator_headers, ident, "ACC1042")

        assert back.status_code == 200
        assert back.get_json()["balance"] == "1500.00"
        assert (balance_minor(runtime, "ACC1042"), balance_minor(runtime, "ACC2000")) == (
            150000,
            0,
        )
        entries = entries_of(runtime, ident)
        assert [kind for kind, _ in entries] == [
            "payment_credit",
            "disassociation",
            "payment_credit",
            "disassociation",
            "payment_credit",
        ]
        assert sum(amount for _, amount in entries) == 150000


# --- GET /api/v1/payments/{id} ------------------------------------------------------------


class TestShowPayment:
    def test_the_history_shows_every_action_with_its_actor_and_before_and_after(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC2000", [])
        alice = bearer(runtime, "operator", "alice")
        bob = bearer(runtime, "operator", "bob")
        made = make_payment(client, alice, account_number="ACC1042", amount="300")
        ident = made.get_json()["id"]
        assert disassociate(client, bob, ident, reason="typo").status_code == 200
        assert associate(client, alice, ident, "ACC2000").status_code == 200

        response = client.get(f"{API}/payments/{ident}", headers=bob)

        assert response.status_code == 200
        shown = response.get_json()
        assert shown["account_number"] == "ACC2000"
        assert shown["created_by"] == "token:alice"
        ledger = shown["history"]["ledger"]
        assert [(e["kind"], e["account_number"], e["amount"], e["created_by"]) for e in ledger] == [
            ("manual_payment", "ACC1042", "300.00", "token:alice"),
            ("disassociation", "ACC1042", "-300.00", "token:bob"),
            ("payment_credit", "ACC2000", "300.00", "token:alice"),
        ]
        assert ledger[1]["note"] == "typo"
        events = shown["history"]["events"]
        assert [(e["action"], e["actor"]) for e in events] == [
            ("payment.record", "token:alice"),
            ("payment.disassociate", "token:bob"),
            ("payment.associate", "token:alice"),
        ]
        assert events[0]["after"]["account_number"] == "ACC1042"
        assert events[1]["before"]["status"] == "associated"
        assert events[1]["before"]["account_number"] == "ACC1042"
        assert events[1]["after"]["status"] == "unassociated"
        assert events[1]["after"]["reason"] == "disassociated"
        assert events[2]["before"]["reason"] == "disassociated"
        assert events[2]["after"]["account_number"] == "ACC2000"
        for event in events:
            assert datetime.fromisoformat(event["at"]).utcoffset() is not None

    def test_a_callback_payment_shows_the_provider_as_the_one_who_credited_it(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKS0000001", ref="ACC1042")
        drain_inbox(runtime)

        shown = client.get(
            f"{API}/payments/{payment_id(runtime, 'TKS0000001')}", headers=viewer_headers
        ).get_json()

        assert [(e["kind"], e["created_by"]) for e in shown["history"]["ledger"]] == [
            ("payment_credit", "mpesa")
        ]
        assert shown["history"]["events"] == []
        assert shown["msisdn"] == "254712345678"

    @pytest.mark.parametrize("ident", ["424242", "x", "0"])
    def test_an_unknown_payment_answers_404(
        self, client: FlaskClient, viewer_headers: Headers, ident: str
    ) -> None:
        assert_problem(
            client.get(f"{API}/payments/{ident}", headers=viewer_headers),
            404,
            "payment_not_found",
        )


# --- GET /api/v1/payments?q= --------------------------------------------------------------


@pytest.fixture
def searchable(client: FlaskClient, runtime: Runtime) -> None:
    """Three payments: two associated to different customers, one unassociated."""
    add_customer(runtime, "ACC1042", ["0712345678"], name="Wanjiku Kamau")
    add_customer(runtime, "ACC2000", ["0733000111"], name="Otieno")
    callback(client, code="TKS0000001", msisdn="254712345678", ref="", amount="1500.00")
    callback(client, code="TKS0000002", msisdn="254733000111", ref="ACC2000", amount="200.00")
    callback(client, code="TKS0000003", msisdn="254799000222", ref="", amount="1500.00")
    drain_inbox(runtime)


@pytest.mark.usefixtures("searchable")
class TestSearchPayments:
    @pytest.mark.parametrize("q", ["ACC1042", "acc1042", " Acc1042 "])
    def test_by_account_number_in_any_case(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        assert codes(list_payments(client, viewer_headers, q=q)) == ["TKS0000001"]

    @pytest.mark.parametrize(
        "q",
        [
            "0712345678",
            "+254 712 345 678",
            "254712345678",
            "+254712345678",
            "712-345-678",
            "0712 345 678",
        ],
    )
    def test_by_phone_in_any_spelling(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        assert codes(list_payments(client, viewer_headers, q=q)) == ["TKS0000001"]

    @pytest.mark.parametrize("q", ["712345", "0712345", "2345678"])
    def test_by_a_partial_run_of_phone_digits(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        assert codes(list_payments(client, viewer_headers, q=q)) == ["TKS0000001"]

    def test_a_partial_phone_finds_unassociated_payments_too(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        found = list_payments(client, viewer_headers, q="0799000", status="unassociated")

        assert codes(found) == ["TKS0000003"]

    @pytest.mark.parametrize("q", ["tks0000002", "TKS0000002", "Tks0000002"])
    def test_by_code_in_any_case(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        assert codes(list_payments(client, viewer_headers, q=q)) == ["TKS0000002"]

    @pytest.mark.parametrize("q", ["1500", "1500.00", "1500.0", "1,500.00"])
    def test_by_amount(self, client: FlaskClient, viewer_headers: Headers, q: str) -> None:
        assert codes(list_payments(client, viewer_headers, q=q)) == ["TKS0000001"]
        assert codes(list_payments(client, viewer_headers, q=q, status="unassociated")) == [
            "TKS0000003"
        ]

    def test_an_amount_with_a_decimal_point_is_not_read_as_phone_digits(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        # a payer whose number holds the digits 150000, paying another amount
        callback(client, code="TKS0000004", msisdn="254715000099", ref="", amount="20.00")
        drain_inbox(runtime)

        dotted = list_payments(client, viewer_headers, q="1500.00", status="unassociated")
        bare = list_payments(client, viewer_headers, q="1500", status="unassociated")

        assert codes(dotted) == ["TKS0000003"]
        assert sorted(codes(bare)) == ["TKS0000003", "TKS0000004"]

    @pytest.mark.parametrize("q", ["nothing-here", "0799999999", "999.99", "TKS0000009"])
    def test_a_q_that_matches_nothing_gives_no_items(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        body = list_payments(client, viewer_headers, q=q).get_json()

        assert body == {"items": [], "next_cursor": None}

    def test_an_empty_q_lists_everything(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        assert sorted(codes(list_payments(client, viewer_headers, q="  "))) == [
            "TKS0000001",
            "TKS0000002",
        ]

    def test_a_q_over_100_characters_answers_400(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        assert_problem(list_payments(client, viewer_headers, q="x" * 101), 400, "invalid_q")


class TestSearchPaymentsWithStatusAndPages:
    def test_q_status_and_cursor_walk_the_matches_exactly_once(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        for n in range(1, 6):
            callback(client, code=f"TKP000000{n}", when=f"2025110{n}100000", ref="ACC1042")
            callback(client, code=f"TKU000000{n}", when=f"2025110{n}110000", msisdn="254799000222")
        callback(client, code="TKO0000001", msisdn="254733000111", ref="")
        drain_inbox(runtime)

        pages = walk(
            client,
            viewer_headers,
            f"{API}/payments",
            q="0799 000 222",
            status="unassociated",
            limit="2",
        )

        assert [len(page) for page in pages] == [2, 2, 1]
        walked = [item["code"] for page in pages for item in page]
        assert walked == [f"TKU000000{n}" for n in range(5, 0, -1)]
        associated = walk(client, viewer_headers, f"{API}/payments", q="acc1042", limit="3")
        assert [item["code"] for page in associated for item in page] == [
            f"TKP000000{n}" for n in range(5, 0, -1)
        ]


# --- GET and PATCH /api/v1/customers ------------------------------------------------------


def customer_accounts(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["account_number"] for item in response.get_json()["items"]]


class TestFindCustomers:
    @pytest.fixture(autouse=True)
    def customers(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"], name="Wanjiku Kamau")
        add_customer(runtime, "ACC1043", ["0722000000"], name="Brian Otieno")
        add_customer(runtime, "BIZ7", ["0733000111", "0712345678"], name="Kamau Hardware")

    @pytest.mark.parametrize("q", ["ACC10", "acc10", "Acc104"])
    def test_by_account_number_prefix(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        found = client.get(f"{API}/customers", query_string={"q": q}, headers=viewer_headers)

        assert customer_accounts(found) == ["ACC1042", "ACC1043"]

    @pytest.mark.parametrize("q", ["kamau", "KAMAU", "Kam"])
    def test_by_part_of_the_name_in_any_case(
        self, client: FlaskClient, viewer_headers: Headers, q: str
    ) -> None:
        found = client.get(f"{API}/customers", query_string={"q": q}, headers=viewer_headers)

        assert customer_accounts(found) == ["ACC1042", "BIZ7"]

    @pytest.mark.parametrize("q", ["0733000111", "+254 733 000 111", "254733000111", "000111"])
    def test_by_phone(self, client: FlaskClient, viewer_headers: Headers, q: str) -> None:
        found = client.get(f"{API}/customers", query_string={"q": q}, headers=viewer_headers)

        assert customer_accounts(found) == ["BIZ7"]

    def test_a_phone_two_customers_share_finds_both(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        found = client.get(
            f"{API}/customers", query_string={"q": "0712 345 678"}, headers=viewer_headers
        )

        assert customer_accounts(found) == ["ACC1042", "BIZ7"]

    def test_nothing_matching_gives_no_items(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        found = client.get(f"{API}/customers", query_string={"q": "zzz"}, headers=viewer_headers)

        assert customer_accounts(found) == []

    def test_without_q_pages_through_every_customer_by_account_number(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        pages = walk(client, viewer_headers, f"{API}/customers", limit="2")

        assert [[c["account_number"] for c in page] for page in pages] == [
            ["ACC1042", "ACC1043"],
            ["BIZ7"],
        ]


class TestFindCustomersEdgeCases:
    def test_pages_walk_past_an_account_number_with_a_bar(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        for account in ("ACC|1", "ACC|2", "BIZ7"):
            add_customer(runtime, account, [])

        pages = walk(client, viewer_headers, f"{API}/customers", limit="1")

        assert [c["account_number"] for page in pages for c in page] == ["ACC|1", "ACC|2", "BIZ7"]

    def test_a_name_with_sharp_s_is_found_by_its_own_spelling(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1", [], name="Weiß Hardware")

        found = client.get(f"{API}/customers", query_string={"q": "Weiß"}, headers=viewer_headers)

        assert customer_accounts(found) == ["ACC1"]

    def test_an_underscore_or_percent_in_q_is_taken_literally(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "A_1", [], name="Under Score")
        add_customer(runtime, "AB1", [], name="Percent 100%")

        underscore = client.get(
            f"{API}/customers", query_string={"q": "a_"}, headers=viewer_headers
        )
        percent = client.get(f"{API}/customers", query_string={"q": "0%"}, headers=viewer_headers)

        assert customer_accounts(underscore) == ["A_1"]
        assert customer_accounts(percent) == ["AB1"]


class TestEditCustomer:
    def test_name_and_phones_are_changed(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"], name="Old Name")

        response = client.patch(
            f"{API}/customers/acc1042",
            json={"name": "  New Name ", "phones": ["0722 000 000", "+254733000111"]},
            headers=operator_headers,
        )

        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["account_number"] == "ACC1042"
        assert body["name"] == "New Name"
        assert body["phones"] == ["+254722000000", "+254733000111"]
        shown = client.get(f"{API}/customers/ACC1042", headers=operator_headers).get_json()
        assert (shown["name"], shown["phones"]) == ("New Name", body["phones"])

    def test_only_the_name_leaves_the_phones_alone(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"], name="Old Name")

        response = client.patch(
            f"{API}/customers/ACC1042", json={"name": "Renamed"}, headers=operator_headers
        )

        assert response.get_json()["phones"] == ["+254712345678"]
        assert response.get_json()["name"] == "Renamed"

    @pytest.mark.parametrize(
        "body",
        [{"account_number": "ACC9"}, {"balance": "1000.00"}, {"name": "x", "email": "a@b"}],
    )
    def test_an_unknown_field_answers_422_naming_it_and_changes_nothing(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: Headers,
        body: dict[str, Any],
    ) -> None:
        add_customer(runtime, "ACC1042", [], name="Same")

        response = client.patch(f"{API}/customers/ACC1042", json=body, headers=operator_headers)

        problem = assert_problem(response, 422, "unknown_field")
        assert problem["fields"] == [key for key in body if key != "name"]
        shown = client.get(f"{API}/customers/ACC1042", headers=operator_headers).get_json()
        assert (shown["name"], shown["balance"]) == ("Same", "0.00")

    def test_an_invalid_phone_answers_400(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])

        response = client.patch(
            f"{API}/customers/ACC1042", json={"phones": ["12345"]}, headers=operator_headers
        )

        assert_problem(response, 400, "invalid_phone")
        assert balance_minor(runtime, "ACC1042") == 0

    def test_an_unknown_customer_answers_404(
        self, client: FlaskClient, operator_headers: Headers
    ) -> None:
        response = client.patch(
            f"{API}/customers/NOPE", json={"name": "x"}, headers=operator_headers
        )

        assert_problem(response, 404, "customer_not_found")

    def test_a_viewer_may_not_edit(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = client.patch(
            f"{API}/customers/ACC1042", json={"name": "x"}, headers=viewer_headers
        )

        assert_problem(response, 403, "forbidden")

    def test_gaining_a_phone_credits_its_no_match_payments(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        callback(client, code="TKR0000001", msisdn="254799000222", ref="", amount="100.00")
        callback(client, code="TKR0000002", msisdn="254799000222", ref="", amount="50.00")
        callback(client, code="TKR0000003", msisdn="254733000111", ref="", amount="10.00")
        drain_inbox(runtime)

        response = client.patch(
            f"{API}/customers/ACC1042",
            json={"phones": ["0712345678", "0799 000 222"]},
            headers=operator_headers,
        )

        body = response.get_json()
        assert sorted(body["rematched_payments"]) == sorted(
            [payment_id(runtime, "TKR0000001"), payment_id(runtime, "TKR0000002")]
        )
        assert body["balance"] == "150.00"
        assert codes(list_payments(client, operator_headers, status="unassociated")) == [
            "TKR0000003"
        ]
        items = list_payments(client, operator_headers).get_json()["items"]
        assert {(i["code"], i["account_number"], i["match_method"]) for i in items} == {
            ("TKR0000001", "ACC1042", "phone"),
            ("TKR0000002", "ACC1042", "phone"),
        }

    def test_keeping_a_phone_rematches_nothing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        add_customer(runtime, "ACC2000", ["0712345678"])
        callback(client, code="TKR0000004", msisdn="254712345678", ref="")
        drain_inbox(runtime)

        response = client.patch(
            f"{API}/customers/ACC1042", json={"name": "Renamed"}, headers=operator_headers
        )

        assert response.get_json()["rematched_payments"] == []
        [item] = list_payments(client, operator_headers, status="unassociated").get_json()["items"]
        assert item["reason"] == "shared_phone"


# --- /api/v1/plans ------------------------------------------------------------------------


def create_plan(
    client: FlaskClient,
    headers: Headers,
    *,
    code: str = "DAY-1GB",
    name: str = "Day, 1 GB",
    price: Any = "100.00",
    validity_minutes: Any = 1440,
) -> Any:
    response = client.post(
        f"{API}/plans",
        json={"code": code, "name": name, "price": price, "validity_minutes": validity_minutes},
        headers=headers,
    )
    return response


class TestPlans:
    def test_an_admin_creates_a_plan(self, client: FlaskClient, admin_headers: Headers) -> None:
        response = create_plan(client, admin_headers, price="99.5", validity_minutes=60)

        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json() == {
            "code": "DAY-1GB",
            "name": "Day, 1 GB",
            "price": "99.50",
            "validity_minutes": 60,
            "active": True,
            "currency": "KES",
        }

    def test_an_operator_may_not_create_a_plan(
        self, client: FlaskClient, operator_headers: Headers, viewer_headers: Headers
    ) -> None:
        body = assert_problem(create_plan(client, operator_headers), 403, "forbidden")

        assert "admin" in body["detail"]
        assert client.get(f"{API}/plans", headers=viewer_headers).get_json()["items"] == []

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"code": ""}, "invalid_code"),
            ({"code": "has space"}, "invalid_code"),
            ({"code": "x" * 33}, "invalid_code"),
            ({"code": 7}, "invalid_code"),
            ({"name": ""}, "invalid_name"),
            ({"name": "   "}, "invalid_name"),
            ({"price": "0"}, "invalid_amount"),
            ({"price": "-1"}, "invalid_amount"),
            ({"price": "1.001"}, "invalid_amount"),
            ({"price": "free"}, "invalid_amount"),
            ({"validity_minutes": 0}, "invalid_validity"),
            ({"validity_minutes": "1440"}, "invalid_validity"),
            ({"validity_minutes": True}, "invalid_validity"),
            ({"validity_minutes": 366 * 24 * 60 + 1}, "invalid_validity"),
        ],
    )
    def test_invalid_fields_answer_400(
        self, client: FlaskClient, admin_headers: Headers, change: dict[str, Any], code: str
    ) -> None:
        response = create_plan(client, admin_headers, **change)

        assert_problem(response, 400, code)
        assert client.get(f"{API}/plans", headers=admin_headers).get_json()["items"] == []

    def test_a_fractional_validity_answers_400(
        self, client: FlaskClient, admin_headers: Headers
    ) -> None:
        response = client.post(
            f"{API}/plans",
            data='{"code": "X", "name": "X", "price": "1", "validity_minutes": 1.5}',
            content_type="application/json",
            headers=admin_headers,
        )

        assert_problem(response, 400, "invalid_validity")

    def test_a_duplicate_code_answers_409(
        self, client: FlaskClient, admin_headers: Headers
    ) -> None:
        assert create_plan(client, admin_headers).status_code == 201

        response = create_plan(client, admin_headers, name="Another", price="5")

        assert_problem(response, 409, "plan_exists")
        [plan] = client.get(f"{API}/plans", headers=admin_headers).get_json()["items"]
        assert plan["price"] == "100.00"

    def test_everyone_lists_plans_cheapest_first(
        self, client: FlaskClient, admin_headers: Headers, viewer_headers: Headers
    ) -> None:
        create_plan(client, admin_headers, code="WEEK", price="500")
        create_plan(client, admin_headers, code="HOUR", price="10")
        create_plan(client, admin_headers, code="DAY", price="100")

        body = client.get(f"{API}/plans", headers=viewer_headers).get_json()

        assert [(p["code"], p["price"]) for p in body["items"]] == [
            ("HOUR", "10.00"),
            ("DAY", "100.00"),
            ("WEEK", "500.00"),
        ]
        assert body["next_cursor"] is None

    def test_an_admin_changes_a_plan_and_inactive_ones_can_be_filtered(
        self, client: FlaskClient, admin_headers: Headers, viewer_headers: Headers
    ) -> None:
        create_plan(client, admin_headers, code="DAY")
        create_plan(client, admin_headers, code="WEEK", price="500")

        response = client.patch(
            f"{API}/plans/DAY",
            json={"price": "120", "name": "Day+", "validity_minutes": 1500, "active": False},
            headers=admin_headers,
        )

        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json() == {
            "code": "DAY",
            "name": "Day+",
            "price": "120.00",
            "validity_minutes": 1500,
            "active": False,
            "currency": "KES",
        }
        shown = client.get(f"{API}/plans/DAY", headers=viewer_headers).get_json()
        assert shown["price"] == "120.00"
        active = client.get(f"{API}/plans", query_string={"active": "true"}, headers=viewer_headers)
        assert [p["code"] for p in active.get_json()["items"]] == ["WEEK"]

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"price": "0"}, "invalid_amount"),
            ({"active": "no"}, "invalid_active"),
            ({"validity_minutes": -5}, "invalid_validity"),
        ],
    )
    def test_an_invalid_change_answers_400_and_changes_nothing(
        self, client: FlaskClient, admin_headers: Headers, body: dict[str, Any], code: str
    ) -> None:
        create_plan(client, admin_headers, code="DAY")

        response = client.patch(f"{API}/plans/DAY", json=body, headers=admin_headers)

        assert_problem(response, 400, code)
        shown = client.get(f"{API}/plans/DAY", headers=admin_headers).get_json()
        assert (shown["price"], shown["active"], shown["validity_minutes"]) == (
            "100.00",
            True,
            1440,
        )

    def test_changing_an_unknown_plan_answers_404(
        self, client: FlaskClient, admin_headers: Headers
    ) -> None:
        response = client.patch(f"{API}/plans/NOPE", json={"name": "x"}, headers=admin_headers)

        assert_problem(response, 404, "plan_not_found")

    def test_an_operator_may_not_change_a_plan(
        self, client: FlaskClient, admin_headers: Headers, operator_headers: Headers
    ) -> None:
        create_plan(client, admin_headers, code="DAY")

        response = client.patch(f"{API}/plans/DAY", json={"price": "1"}, headers=operator_headers)

        assert_problem(response, 403, "forbidden")


# --- /api/v1/customers/{account}/purchases ------------------------------------------------


def buy(client: FlaskClient, headers: Headers, account: str, plan: Any) -> Any:
    return client.post(f"{API}/customers/{account}/purchases", json={"plan": plan}, headers=headers)


def fund(client: FlaskClient, headers: Headers, account: str, amount: str) -> None:
    response = make_payment(client, headers, account_number=account, amount=amount)
    assert response.status_code == 201, response.get_data(as_text=True)


class TestPurchases:
    @pytest.fixture(autouse=True)
    def plans(self, client: FlaskClient, admin_headers: Headers, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", [])
        assert create_plan(client, admin_headers, code="DAY", price="100.00").status_code == 201
        assert create_plan(client, admin_headers, code="HOUR", price="10.00").status_code == 201

    def test_buying_a_plan_answers_201_with_a_voucher_and_the_new_balance(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        fund(client, operator_headers, "ACC1042", "150.00")
        before = datetime.now(UTC)

        response = buy(client, operator_headers, "acc1042", "DAY")

        assert response.status_code == 201, response.get_data(as_text=True)
        body = response.get_json()
        assert body["plan"] == "DAY"
        assert body["price"] == "100.00"
        assert body["balance"] == "50.00"
        assert body["account_number"] == "ACC1042"
        assert len(body["voucher_code"]) == VOUCHER_LENGTH
        assert set(body["voucher_code"]) <= set(VOUCHER_ALPHABET)
        valid_until = datetime.fromisoformat(body["valid_until"])
        assert before + timedelta(minutes=1439) < valid_until < before + timedelta(minutes=1441)
        assert balance_minor(runtime, "ACC1042") == 5000

    def test_a_short_balance_answers_409_with_available_and_required(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        fund(client, operator_headers, "ACC1042", "50.00")

        response = buy(client, operator_headers, "ACC1042", "DAY")

        body = assert_problem(response, 409, "insufficient_balance")
        assert body["detail"] == "Insufficient balance: available 50.00, required 100.00"
        assert balance_minor(runtime, "ACC1042") == 5000
        with runtime.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Purchase)) == 0

    def test_the_exact_balance_is_enough(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        fund(client, operator_headers, "ACC1042", "100.00")

        response = buy(client, operator_headers, "ACC1042", "DAY")

        assert response.status_code == 201
        assert response.get_json()["balance"] == "0.00"
        assert_problem(
            buy(client, operator_headers, "ACC1042", "HOUR"), 409, "insufficient_balance"
        )

    def test_a_negative_balance_cannot_buy(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        made = make_payment(client, operator_headers, account_number="ACC1042", amount="100")
        assert buy(client, operator_headers, "ACC1042", "DAY").status_code == 201
        assert disassociate(client, operator_headers, made.get_json()["id"]).status_code == 200

        response = buy(client, operator_headers, "ACC1042", "HOUR")

        body = assert_problem(response, 409, "insufficient_balance")
        assert body["detail"] == "Insufficient balance: available -100.00, required 10.00"
        assert balance_minor(runtime, "ACC1042") == -10000

    def test_an_inactive_plan_answers_409(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: Headers,
        admin_headers: Headers,
    ) -> None:
        fund(client, operator_headers, "ACC1042", "500.00")
        client.patch(f"{API}/plans/DAY", json={"active": False}, headers=admin_headers)

        response = buy(client, operator_headers, "ACC1042", "DAY")

        assert_problem(response, 409, "plan_inactive")
        assert balance_minor(runtime, "ACC1042") == 50000

    def test_an_unknown_plan_answers_404(
        self, client: FlaskClient, operator_headers: Headers
    ) -> None:
        assert_problem(buy(client, operator_headers, "ACC1042", "NOPE"), 404, "plan_not_found")

    @pytest.mark.parametrize("plan", [None, "", 7])
    def test_a_missing_plan_answers_400(
        self, client: FlaskClient, operator_headers: Headers, plan: Any
    ) -> None:
        assert_problem(buy(client, operator_headers, "ACC1042", plan), 400, "invalid_plan")

    def test_an_unknown_customer_answers_404(
        self, client: FlaskClient, operator_headers: Headers
    ) -> None:
        assert_problem(buy(client, operator_headers, "NOPE", "DAY"), 404, "customer_not_found")

    def test_a_viewer_may_not_buy(
        self, client: FlaskClient, operator_headers: Headers, viewer_headers: Headers
    ) -> None:
        fund(client, operator_headers, "ACC1042", "100.00")

        assert_problem(buy(client, viewer_headers, "ACC1042", "DAY"), 403, "forbidden")

    def test_voucher_codes_are_unique_across_many_purchases_and_all_listed(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        fund(client, operator_headers, "ACC1042", "400.00")

        bought = [buy(client, operator_headers, "ACC1042", "HOUR") for _ in range(40)]

        assert {r.status_code for r in bought} == {201}
        vouchers = [r.get_json()["voucher_code"] for r in bought]
        assert len(set(vouchers)) == 40
        assert bought[-1].get_json()["balance"] == "0.00"
        assert balance_minor(runtime, "ACC1042") == 0
        pages = walk(client, operator_headers, f"{API}/customers/ACC1042/purchases", limit="15")
        assert [len(page) for page in pages] == [15, 15, 10]
        listed = [p["voucher_code"] for page in pages for p in page]
        assert listed == list(reversed(vouchers))
        assert {(p["plan"], p["price"]) for page in pages for p in page} == {("HOUR", "10.00")}

    def test_a_voucher_code_drawn_twice_is_drawn_again(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: Headers,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        fund(client, operator_headers, "ACC1042", "20.00")
        draws = iter(["AAAAAAAAAA", "AAAAAAAAAA", "BBBBBBBBBB"])
        monkeypatch.setattr(matcher.plans, "_voucher_code", lambda: next(draws))

        first = buy(client, operator_headers, "ACC1042", "HOUR")
        second = buy(client, operator_headers, "ACC1042", "HOUR")

        assert (first.status_code, second.status_code) == (201, 201)
        assert first.get_json()["voucher_code"] == "AAAAAAAAAA"
        assert second.get_json()["voucher_code"] == "BBBBBBBBBB"
        assert second.get_json()["balance"] == "0.00"
        assert balance_minor(runtime, "ACC1042") == 0

    def test_a_purchase_with_an_idempotency_key_is_bought_once(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        fund(client, operator_headers, "ACC1042", "300.00")
        headers = operator_headers | {"Idempotency-Key": "buy-1"}

        first = buy(client, headers, "ACC1042", "DAY")
        second = buy(client, headers, "ACC1042", "DAY")

        assert first.status_code == second.status_code == 201
        assert first.get_json()["voucher_code"] == second.get_json()["voucher_code"]
        assert balance_minor(runtime, "ACC1042") == 20000

    def test_a_customer_sees_only_its_own_purchases(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC2000", [])
        fund(client, operator_headers, "ACC1042", "100.00")
        fund(client, operator_headers, "ACC2000", "100.00")
        mine = buy(client, operator_headers, "ACC1042", "DAY").get_json()["voucher_code"]
        buy(client, operator_headers, "ACC2000", "HOUR")

        listed = client.get(f"{API}/customers/ACC1042/purchases", headers=operator_headers)

        assert [p["voucher_code"] for p in listed.get_json()["items"]] == [mine]
        assert listed.get_json()["items"][0]["created_by"] == "token:test-operator"


# --- GET /api/v1/transactions -------------------------------------------------------------


@pytest.fixture
def log_rows(client: FlaskClient, runtime: Runtime, admin_headers: Headers) -> dict[str, int]:
    """One of each kind: payment credit, manual payment, disassociation, purchase, attempt."""
    add_customer(runtime, "ACC1042", ["0712345678"])
    add_customer(runtime, "ACC2000", [])
    callback(client, code="TKT0000001", msisdn="254712345678", ref="", amount="1500.00")
    drain_inbox(runtime)
    manual = make_payment(client, admin_headers, account_number="ACC2000", amount="300.00")
    assert manual.status_code == 201
    assert create_plan(client, admin_headers, code="DAY", price="100.00").status_code == 201
    assert buy(client, admin_headers, "ACC1042", "DAY").status_code == 201
    assert disassociate(client, admin_headers, manual.get_json()["id"]).status_code == 200
    cancelled_stk(client)
    drain_inbox(runtime)
    return {"manual": manual.get_json()["id"], "callback": payment_id(runtime, "TKT0000001")}


def transactions(client: FlaskClient, headers: Headers, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/transactions", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items


def kinds(items: list[dict[str, Any]]) -> list[str]:
    return [item["kind"] for item in items]


class TestTransactions:
    def test_every_movement_and_the_failed_attempt_are_listed_newest_first(
        self, client: FlaskClient, viewer_headers: Headers, log_rows: dict[str, int]
    ) -> None:
        items = transactions(client, viewer_headers)

        assert [(i["kind"], i["status"], i["account_number"], i["amount"]) for i in items] == [
            ("failed_attempt", "cancelled", None, "0.00"),
            ("disassociation", "completed", "ACC2000", "-300.00"),
            ("purchase", "completed", "ACC1042", "-100.00"),
            ("manual_payment", "completed", "ACC2000", "300.00"),
            ("payment_credit", "completed", "ACC1042", "1500.00"),
        ]
        attempt, reversal, bought, manual, credit = items
        assert attempt["result_code"] == 1032
        assert attempt["result_desc"] == "Request cancelled by user"
        assert attempt["code"] == "ws_CO_191220191020363926"
        assert attempt["payment_id"] is None
        assert reversal["payment_id"] == manual["payment_id"] == log_rows["manual"]
        assert reversal["created_by"] == "token:test-admin"
        assert bought["voucher_code"] and bought["payment_id"] is None
        assert credit["code"] == "TKT0000001"
        assert credit["phone"] == "+254712345678"
        assert credit["created_by"] == "mpesa"
        assert len({i["id"] for i in items}) == 5
        ats = [datetime.fromisoformat(i["at"]) for i in items]
        assert ats == sorted(ats, reverse=True)

    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            ("payment_credit", ["payment_credit"]),
            ("manual_payment", ["manual_payment"]),
            ("disassociation", ["disassociation"]),
            ("purchase", ["purchase"]),
            ("failed_attempt", ["failed_attempt"]),
        ],
    )
    @pytest.mark.usefixtures("log_rows")
    def test_by_kind(
        self, client: FlaskClient, viewer_headers: Headers, kind: str, expected: list[str]
    ) -> None:
        assert kinds(transactions(client, viewer_headers, kind=kind)) == expected

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("completed", ["disassociation", "purchase", "manual_payment", "payment_credit"]),
            ("cancelled", ["failed_attempt"]),
            ("failed", []),
        ],
    )
    @pytest.mark.usefixtures("log_rows")
    def test_by_status(
        self, client: FlaskClient, viewer_headers: Headers, status: str, expected: list[str]
    ) -> None:
        assert kinds(transactions(client, viewer_headers, status=status)) == expected

    @pytest.mark.usefixtures("log_rows")
    def test_by_account_in_any_case(self, client: FlaskClient, viewer_headers: Headers) -> None:
        items = transactions(client, viewer_headers, account="acc1042")

        assert kinds(items) == ["purchase", "payment_credit"]
        assert {i["account_number"] for i in items} == {"ACC1042"}

    @pytest.mark.usefixtures("log_rows")
    def test_by_time_range(self, client: FlaskClient, viewer_headers: Headers) -> None:
        everything = transactions(client, viewer_headers)
        middle = everything[2]["at"]  # the purchase

        since = transactions(client, viewer_headers, **{"from": middle})
        until = transactions(client, viewer_headers, to=middle)

        assert kinds(since) == ["failed_attempt", "disassociation", "purchase"]
        assert kinds(until) == ["manual_payment", "payment_credit"]
        tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        assert transactions(client, viewer_headers, **{"from": tomorrow}) == []
        assert len(transactions(client, viewer_headers, to=tomorrow)) == 5

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("tkt0000001", ["payment_credit"]),
            ("0712345678", ["payment_credit"]),
            ("ACC2000", ["disassociation", "manual_payment"]),
            ("300", ["disassociation", "manual_payment"]),
            ("ws_CO_191220191020363926", ["failed_attempt"]),
            ("nothing", []),
        ],
    )
    @pytest.mark.usefixtures("log_rows")
    def test_by_q(
        self, client: FlaskClient, viewer_headers: Headers, q: str, expected: list[str]
    ) -> None:
        assert kinds(transactions(client, viewer_headers, q=q)) == expected

    @pytest.mark.usefixtures("log_rows")
    def test_by_voucher_code(self, client: FlaskClient, viewer_headers: Headers) -> None:
        [bought] = transactions(client, viewer_headers, kind="purchase")

        found = transactions(client, viewer_headers, q=bought["voucher_code"].lower())

        assert kinds(found) == ["purchase"]

    @pytest.mark.usefixtures("log_rows")
    def test_filters_combine(self, client: FlaskClient, viewer_headers: Headers) -> None:
        assert kinds(
            transactions(client, viewer_headers, account="ACC2000", kind="manual_payment")
        ) == ["manual_payment"]
        assert transactions(client, viewer_headers, account="ACC1042", kind="failed_attempt") == []

    @pytest.mark.parametrize("limit", ["1", "2", "3", "4"])
    @pytest.mark.usefixtures("log_rows")
    def test_pages_walk_every_row_exactly_once(
        self, client: FlaskClient, viewer_headers: Headers, limit: str
    ) -> None:
        everything = transactions(client, viewer_headers)

        pages = walk(client, viewer_headers, f"{API}/transactions", limit=limit)

        walked = [item["id"] for page in pages for item in page]
        assert walked == [item["id"] for item in everything]
        assert all(len(page) <= int(limit) for page in pages)

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"kind": "refund"}, "invalid_kind"),
            ({"status": "done"}, "invalid_status"),
            ({"from": "yesterday"}, "invalid_from"),
            ({"to": "2025-11-03T10:00:00"}, "invalid_to"),
            ({"from": "2025-11-04", "to": "2025-11-03"}, "invalid_range"),
            ({"from": "2025-11-03", "to": "2025-11-03"}, "invalid_range"),
            ({"from": "2025-11-03T10:00:00+03:00", "to": "2025-11-03T07:00:00Z"}, "invalid_range"),
            ({"cursor": "garbage"}, "invalid_cursor"),
        ],
    )
    def test_invalid_filters_answer_400(
        self, client: FlaskClient, viewer_headers: Headers, params: dict[str, str], code: str
    ) -> None:
        response = client.get(f"{API}/transactions", query_string=params, headers=viewer_headers)

        assert_problem(response, 400, code)


class TestCustomerTransactions:
    @pytest.mark.usefixtures("log_rows")
    def test_only_the_customers_own_ledger_is_shown(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        response = client.get(f"{API}/customers/acc2000/transactions", headers=viewer_headers)

        assert response.status_code == 200
        items = response.get_json()["items"]
        assert [(i["kind"], i["amount"]) for i in items] == [
            ("disassociation", "-300.00"),
            ("manual_payment", "300.00"),
        ]
        assert {i["account_number"] for i in items} == {"ACC2000"}

    @pytest.mark.usefixtures("log_rows")
    def test_its_entries_add_up_to_its_balance(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        items = client.get(
            f"{API}/customers/ACC1042/transactions", headers=viewer_headers
        ).get_json()["items"]
        shown = client.get(f"{API}/customers/ACC1042", headers=viewer_headers).get_json()

        assert kinds(items) == ["purchase", "payment_credit"]
        total = sum(int(i["amount"].replace(".", "")) for i in items)
        assert total == 140000
        assert shown["balance"] == "1400.00"

    def test_an_unknown_customer_answers_404(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        response = client.get(f"{API}/customers/NOPE/transactions", headers=viewer_headers)

        assert_problem(response, 404, "customer_not_found")


# --- GET /api/v1/dashboard/revenue --------------------------------------------------------


def revenue(client: FlaskClient, headers: Headers, **params: str) -> dict[str, Any]:
    response = client.get(f"{API}/dashboard/revenue", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def series(body: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(b["start"], b["amount"], b["count"]) for b in body["series"]]


class TestRevenue:
    def test_the_totals_count_associated_payments_only(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKV0000001", when="20240115100000", ref="ACC1042", amount="1500")
        callback(client, code="TKV0000002", when="20240115110000", msisdn="254799000222")
        callback(
            client, code="TKV0000003", when="20240116100000", msisdn="254799000222", amount="7"
        )
        drain_inbox(runtime)
        fund(client, operator_headers, "ACC1042", "250.00")

        body = revenue(client, operator_headers)

        assert body["all_time"] == "1750.00"
        assert body["today"] == body["this_week"] == body["this_month"] == "250.00"
        assert body["unassociated_total"] == "1507.00"
        assert body["currency"] == "KES"
        assert body["timezone"] == "Africa/Nairobi"

    def test_a_disassociated_payment_is_not_counted(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        fund(client, operator_headers, "ACC1042", "250.00")
        made = make_payment(client, operator_headers, account_number="ACC1042", amount="40")
        assert revenue(client, operator_headers)["today"] == "290.00"

        assert disassociate(client, operator_headers, made.get_json()["id"]).status_code == 200

        body = revenue(client, operator_headers)
        assert (body["today"], body["this_week"], body["this_month"], body["all_time"]) == (
            "250.00",
            "250.00",
            "250.00",
            "250.00",
        )
        today = datetime.now(UTC).astimezone(runtime.settings.zone).date().isoformat()
        [bucket] = revenue(client, operator_headers, period="day", **{"from": today, "to": today})[
            "series"
        ]
        assert (bucket["amount"], bucket["count"]) == ("250.00", 1)

    def test_purchases_from_balance_are_not_counted_again(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: Headers,
        admin_headers: Headers,
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        fund(client, operator_headers, "ACC1042", "250.00")
        create_plan(client, admin_headers, code="DAY", price="100.00")
        before = revenue(client, operator_headers)

        assert buy(client, operator_headers, "ACC1042", "DAY").status_code == 201

        after = revenue(client, operator_headers)
        assert after == before
        assert after["all_time"] == "250.00"

    def test_today_includes_a_payment_recorded_now(
        self,
        client: FlaskClient,
        runtime: Runtime,
        viewer_headers: Headers,
        operator_headers: Headers,
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        assert revenue(client, viewer_headers)["today"] == "0.00"

        fund(client, operator_headers, "ACC1042", "12.34")

        body = revenue(client, viewer_headers)
        assert body["today"] == "12.34"
        assert body["series"][-1]["amount"] == "12.34"
        assert body["series"][-1]["count"] == 1
        assert len(body["series"]) == 30

    @pytest.fixture
    def around_midnight(self, client: FlaskClient, runtime: Runtime) -> None:
        """Sunday 23:59:59 and Monday 00:00:00 in Nairobi (20:59:59Z and 21:00:00Z)."""
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKN0000001", when="20251102235959", ref="ACC1042", amount="100")
        callback(client, code="TKN0000002", when="20251103000000", ref="ACC1042", amount="200")
        callback(client, code="TKN0000003", when="20251103000001", ref="ACC1042", amount="0.50")
        drain_inbox(runtime)

    @pytest.mark.usefixtures("around_midnight")
    def test_days_turn_at_nairobi_midnight(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        with runtime.sessions() as session:
            paid = {code: at for code, at in session.execute(select(Payment.code, Payment.paid_at))}
        assert paid["TKN0000001"] == datetime(2025, 11, 2, 20, 59, 59, tzinfo=UTC)
        assert paid["TKN0000002"] == datetime(2025, 11, 2, 21, 0, 0, tzinfo=UTC)

        body = revenue(
            client, viewer_headers, period="day", **{"from": "2025-11-02", "to": "2025-11-03"}
        )

        assert series(body) == [
            ("2025-11-02T00:00:00+03:00", "100.00", 1),
            ("2025-11-03T00:00:00+03:00", "200.50", 2),
        ]
        assert [b["end"] for b in body["series"]] == [
            "2025-11-03T00:00:00+03:00",
            "2025-11-04T00:00:00+03:00",
        ]

    @pytest.mark.usefixtures("around_midnight")
    def test_weeks_turn_at_monday_midnight_in_nairobi(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        body = revenue(
            client, viewer_headers, period="week", **{"from": "2025-11-02", "to": "2025-11-03"}
        )

        assert series(body) == [
            ("2025-10-27T00:00:00+03:00", "100.00", 1),
            ("2025-11-03T00:00:00+03:00", "200.50", 2),
        ]

    @pytest.mark.usefixtures("around_midnight")
    def test_weeks_up_to_a_day_start_on_mondays(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        body = revenue(client, viewer_headers, period="week", to="2025-11-09")

        assert len(body["series"]) == 12
        assert series(body)[-2:] == [
            ("2025-10-27T00:00:00+03:00", "100.00", 1),
            ("2025-11-03T00:00:00+03:00", "200.50", 2),
        ]
        for bucket in body["series"]:
            assert datetime.fromisoformat(bucket["start"]).weekday() == 0

    def test_months_turn_at_nairobi_midnight(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: Headers
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        callback(client, code="TKM0000001", when="20251031235959", ref="ACC1042", amount="5")
        callback(client, code="TKM0000002", when="20251101000000", ref="ACC1042", amount="7")
        callback(client, code="TKM0000003", when="20251130120000", ref="ACC1042", amount="1")
        drain_inbox(runtime)

        body = revenue(
            client, viewer_headers, period="month", **{"from": "2025-10-15", "to": "2025-11-30"}
        )

        assert series(body) == [
            ("2025-10-01T00:00:00+03:00", "5.00", 1),
            ("2025-11-01T00:00:00+03:00", "8.00", 2),
        ]
        assert body["series"][-1]["end"] == "2025-12-01T00:00:00+03:00"

    def test_an_empty_range_gives_zero_buckets_not_missing_ones(
        self, client: FlaskClient, viewer_headers: Headers
    ) -> None:
        body = revenue(
            client, viewer_headers, period="day", **{"from": "2025-01-01", "to": "2025-01-03"}
        )

        assert [(amount, count) for _, amount, count in series(body)] == [("0.00", 0)] * 3

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"period": "year"}, "invalid_period"),
            ({"from": "2025-11-04", "to": "2025-11-03"}, "invalid_range"),
            ({"from": "03/11/2025"}, "invalid_from"),
            ({"from": "2000-01-01", "to": "2025-01-01", "period": "day"}, "range_too_long"),
        ],
    )
    def test_invalid_parameters_answer_400(
        self, client: FlaskClient, viewer_headers: Headers, params: dict[str, str], code: str
    ) -> None:
        response = client.get(
            f"{API}/dashboard/revenue", query_string=params, headers=viewer_headers
        )

        assert_problem(response, 400, code)


# --- /api/v1/tokens -----------------------------------------------------------------------


class TestTokens:
    def test_an_admin_creates_a_token_that_works_and_is_shown_once(
        self, client: FlaskClient, runtime: Runtime, admin_headers: Headers
    ) -> None:
        response = client.post(
            f"{API}/tokens", json={"name": "carol", "role": "viewer"}, headers=admin_headers
        )

        assert response.status_code == 201, response.get_data(as_text=True)
        body = response.get_json()
        assert (body["name"], body["role"], body["revoked_at"]) == ("carol", "viewer", None)
        raw = body["token"]
        assert raw.startswith("momo_")
        carol = {"Authorization": f"Bearer {raw}"}
        assert client.get(f"{API}/payments", headers=carol).status_code == 200
        add_customer(runtime, "ACC1042", [])
        assert_problem(
            make_payment(client, carol, account_number="ACC1042", amount="1"), 403, "forbidden"
        )
        listed = client.get(f"{API}/tokens", headers=admin_headers)
        assert raw not in listed.get_data(as_text=True)

    def test_a_token_made_with_an_idempotency_key_keeps_no_secret_and_a_repeat_shows_none(
        self, client: FlaskClient, runtime: Runtime, admin_headers: Headers
    ) -> None:
        order = {"name": "erin", "role": "operator"}
        key = {"Idempotency-Key": "token-erin-1"}

        first = client.post(f"{API}/tokens", json=order, headers=admin_headers | key)
        again = client.post(f"{API}/tokens", json=order, headers=admin_headers | key)

        assert first.status_code == 201, first.get_data(as_text=True)
        raw, ident = first.get_json()["token"], first.get_json()["id"]
        with runtime.sessions() as session:
            [record] = session.scalars(select(IdempotencyRecord)).all()
            stored = json.dumps([record.response, record.request_hash, record.key])
            secret_hashes = session.scalars(select(ApiToken.token_hash)).all()
        assert raw not in stored
        assert record.response == {k: v for k, v in first.get_json().items() if k != "token"}
        assert hash_token(raw) in secret_hashes  # kept the one way it may be: hashed
        problem = assert_problem(again, 409, "token_secret_shown_once")
        assert raw not in again.get_data(as_text=True)
        assert f"token {ident} ('erin', operator)" in problem["detail"]
        assert f"DELETE /api/v1/tokens/{ident}" in problem["detail"]
        with runtime.sessions() as session:
            assert session.scalar(select(func.count()).where(ApiToken.name == "erin")) == 1
        erin = {"Authorization": f"Bearer {raw}"}
        assert client.get(f"{API}/payments", headers=erin).status_code == 200

    def test_the_list_never_shows_secrets_or_their_hashes(
        self, client: FlaskClient, runtime: Runtime, admin_headers: Headers
    ) -> None:
        raw = make_token(runtime, "operator", name="dave")

        response = client.get(f"{API}/tokens", headers=admin_headers)

        assert response.status_code == 200
        text = response.get_data(as_text=True)
        assert raw not in text
        assert hash_token(raw) not in text
        items = response.get_json()["items"]
        assert {i["name"] for i in items} == {"test-admin", "dave"}
        for item in items:
            assert set(item) == {"id", "name", "role", "created_at", "last_used_at", "revoked_at"}

    def test_a_deleted_token_answers_401_from_then_on(
        self, client: FlaskClient, runtime: Runtime, admin_headers: Headers
    ) -> None:
        created = client.post(
            f"{API}/tokens", json={"name": "leaver", "role": "operator"}, headers=admin_headers
        ).get_json()
        leaver = {"Authorization": f"Bearer {created['token']}"}
        assert client.get(f"{API}/payments", headers=leaver).status_code == 200

        response = client.delete(f"{API}/tokens/{created['id']}", headers=admin_headers)

        assert response.status_code == 200
        assert response.get_json()["revoked_at"] is not None
        assert_problem(client.get(f"{API}/payments", headers=leaver), 401, "unauthorized")
        again = client.delete(f"{API}/tokens/{created['id']}", headers=admin_headers)
        assert again.status_code == 200
        assert again.get_json()["revoked_at"] == response.get_json()["revoked_at"]
        assert client.get(f"{API}/payments", headers=admin_headers).status_code == 200

    def test_deleting_an_unknown_token_answers_404(
        self, client: FlaskClient, admin_headers: Headers
    ) -> None:
        assert_problem(
            client.delete(f"{API}/tokens/424242", headers=admin_headers), 404, "token_not_found"
        )

    @pytest.mark.parametrize(
        ("method", "path"),
        [("post", "/tokens"), ("get", "/tokens"), ("delete", "/tokens/1")],
    )
    def test_an_operator_may_not_manage_tokens(
        self, client: FlaskClient, operator_headers: Headers, method: str, path: str
    ) -> None:
        kwargs: dict[str, Any] = {"headers": operator_headers}
        if method == "post":
            kwargs["json"] = {"name": "sneaky", "role": "admin"}

        response = getattr(client, method)(f"{API}{path}", **kwargs)

        assert_problem(response, 403, "forbidden")

    def test_an_operators_token_keeps_working_after_a_refused_delete(
        self, client: FlaskClient, runtime: Runtime, operator_headers: Headers
    ) -> None:
        with runtime.sessions() as session:
            own = session.scalar(select(ApiToken.id).where(ApiToken.name == "test-operator"))

        assert client.delete(f"{API}/tokens/{own}", headers=operator_headers).status_code == 403
        assert client.get(f"{API}/payments", headers=operator_headers).status_code == 200

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"name": "", "role": "viewer"}, "invalid_name"),
            ({"name": "x", "role": "root"}, "invalid_role"),
            ({"role": "viewer"}, "missing_field"),
        ],
    )
    def test_an_invalid_token_request_answers_400(
        self, client: FlaskClient, admin_headers: Headers, body: dict[str, Any], code: str
    ) -> None:
        response = client.post(f"{API}/tokens", json=body, headers=admin_headers)

        assert_problem(response, 400, code)
