"""The operator API under /api/v1: tokens, customers, payment lists, problem+json errors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from core.runtime import Runtime
from matcher.models import ApiToken, AuditEvent, Customer, LedgerEntry, Payment
from tasks.work import drain_inbox
from tests.conftest import add_customer, assert_problem, make_token
from tests.conftest import post_confirmation as post_payment
from tests.unit.contract import Operation, writes

# --- helpers ------------------------------------------------------------------------------


def payment_id(runtime: Runtime, code: str) -> int:
    with runtime.sessions() as session:
        found = session.scalar(select(Payment.id).where(Payment.code == code))
        assert found is not None, code
        return found


def list_payments(client: FlaskClient, headers: dict[str, str], **params: str) -> Any:
    return client.get("/api/v1/payments", query_string=params, headers=headers)


def create_customer(client: FlaskClient, headers: dict[str, str], **body: Any) -> Any:
    """POST /customers; a name is made up unless the test gives one."""
    body.setdefault("name", f"Customer {body.get('account_number')}")
    return client.post("/api/v1/customers", json=body, headers=headers)


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- api.auth.require: who may call -------------------------------------------------------


class TestAuthentication:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("get", "/api/v1/payments"),
            ("get", "/api/v1/customers/ACC1042"),
            ("post", "/api/v1/customers"),
        ],
    )
    def test_no_token_answers_401_problem_json(
        self, client: FlaskClient, method: str, path: str
    ) -> None:
        response = getattr(client, method)(path)

        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(
        "header",
        ["Bearer", "Bearer    ", "Token abc", "Basic dXNlcjpwYXNz", "momo_abc", ""],
    )
    def test_a_malformed_authorization_header_answers_401(
        self, client: FlaskClient, runtime: Runtime, header: str
    ) -> None:
        make_token(runtime, "admin")  # a real token exists; it is just not being sent
        response = client.get("/api/v1/payments", headers={"Authorization": header})

        assert_problem(response, 401, "unauthorized")

    def test_an_unknown_token_answers_401(self, client: FlaskClient) -> None:
        response = client.get("/api/v1/payments", headers={"Authorization": "Bearer momo_nope"})

        assert_problem(response, 401, "unauthorized")

    def test_a_revoked_token_answers_401(self, client: FlaskClient, runtime: Runtime) -> None:
        raw = make_token(runtime, "admin", name="leaver")
        headers = {"Authorization": f"Bearer {raw}"}
        assert client.get("/api/v1/payments", headers=headers).status_code == 200

        with runtime.sessions.begin() as session:
            session.execute(
                update(ApiToken)
                .where(ApiToken.name == "leaver")
                .values(revoked_at=datetime.now(UTC))
            )

        assert_problem(client.get("/api/v1/payments", headers=headers), 401, "unauthorized")

    def test_a_viewer_token_cannot_create_a_customer(
        self, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        response = create_customer(client, viewer_headers, account_number="ACC1042")

        body = assert_problem(response, 403, "forbidden")
        assert "operator" in body["detail"]

    def test_a_viewer_token_may_read(
        self, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        assert list_payments(client, viewer_headers).status_code == 200

    def test_an_admin_token_may_do_what_an_operator_may(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        headers = {"Authorization": f"Bearer {make_token(runtime, 'admin')}"}

        assert create_customer(client, headers, account_number="ACC1042").status_code == 201

    def test_the_bearer_scheme_is_matched_in_any_case(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        raw = make_token(runtime, "viewer")

        response = client.get("/api/v1/payments", headers={"Authorization": f"bearer {raw}"})

        assert response.status_code == 200


# --- POST /api/v1/customers ---------------------------------------------------------------


class TestCreateCustomer:
    def test_phones_in_several_spellings_are_stored_once_each_in_e164(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        response = create_customer(
            client,
            operator_headers,
            account_number="ACC1042",
            name="Wanjiku Kamau",
            phones=["0712345678", "+254 712 345 678", "254712345678", "712-345-678", "0722000000"],
        )

        assert response.status_code == 201
        body = response.get_json()
        assert body["account_number"] == "ACC1042"
        assert body["name"] == "Wanjiku Kamau"
        assert body["phones"] == ["+254712345678", "+254722000000"]
        assert body["balance"] == "0.00"
        assert body["currency"] == "KES"
        assert body["rematched_payments"] == []
        assert response.headers["Location"] == "/api/v1/customers/ACC1042"

    def test_the_location_header_leads_to_the_new_customer(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        created = create_customer(client, operator_headers, account_number=" acc-7 ", name="X")

        shown = client.get(created.headers["Location"], headers=operator_headers)

        assert shown.status_code == 200
        assert shown.get_json()["account_number"] == "acc-7"

    @pytest.mark.parametrize("account", ["ACC#12", "ACC?12"])
    def test_the_location_header_leads_to_the_new_customer_whatever_its_characters(
        self, client: FlaskClient, operator_headers: dict[str, str], account: str
    ) -> None:
        created = create_customer(client, operator_headers, account_number=account)
        assert created.status_code == 201

        shown = client.get(created.headers["Location"], headers=operator_headers)

        assert shown.status_code == 200
        assert shown.get_json()["account_number"] == account

    @pytest.mark.parametrize("again", ["ACC1042", "acc1042", "  Acc1042 "])
    def test_an_existing_account_number_in_any_case_answers_409(
        self, client: FlaskClient, operator_headers: dict[str, str], again: str
    ) -> None:
        create_customer(client, operator_headers, account_number="ACC1042", phones=["0712345678"])

        response = create_customer(client, operator_headers, account_number=again, phones=[])

        assert_problem(response, 409, "customer_exists")
        shown = client.get("/api/v1/customers/ACC1042", headers=operator_headers).get_json()
        assert shown["phones"] == ["+254712345678"]

    @pytest.mark.parametrize("phone", ["12345", "0201234567", "07** *** 678", "not a phone"])
    def test_an_invalid_phone_answers_400_naming_the_phone(
        self, client: FlaskClient, operator_headers: dict[str, str], phone: str
    ) -> None:
        response = create_customer(
            client, operator_headers, account_number="ACC1042", phones=["0712345678", phone]
        )

        body = assert_problem(response, 400, "invalid_phone")
        assert phone in body["detail"]
        missing = client.get("/api/v1/customers/ACC1042", headers=operator_headers)
        assert missing.status_code == 404

    @pytest.mark.parametrize("account", ["", "   ", 1042, None])
    def test_an_empty_account_number_answers_400(
        self, client: FlaskClient, operator_headers: dict[str, str], account: object
    ) -> None:
        response = create_customer(client, operator_headers, account_number=account)

        assert_problem(response, 400, "invalid_account_number")

    def test_a_missing_account_number_answers_400_naming_it(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        response = client.post(
            "/api/v1/customers", json={"name": "No Account"}, headers=operator_headers
        )

        body = assert_problem(response, 400, "missing_field")
        assert body["fields"] == ["account_number"]
        assert body["detail"].startswith("account_number is missing")

    @pytest.mark.parametrize(
        ("data", "content_type"),
        [
            ("not json", "application/json"),
            ('{"account_number": "ACC1042"}', "text/plain"),
            ('["ACC1042"]', "application/json"),
            ("", "application/json"),
        ],
    )
    def test_a_body_that_is_not_a_json_object_answers_400(
        self,
        client: FlaskClient,
        operator_headers: dict[str, str],
        data: str,
        content_type: str,
    ) -> None:
        response = client.post(
            "/api/v1/customers", data=data, content_type=content_type, headers=operator_headers
        )

        assert_problem(response, 400, "invalid_body")

    def test_phones_that_are_not_a_list_answer_400(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        response = create_customer(
            client, operator_headers, account_number="ACC1042", phones="0712345678"
        )

        assert_problem(response, 400, "invalid_phones")


# --- GET /api/v1/customers/{account_number} -----------------------------------------------


class TestShowCustomer:
    @pytest.mark.parametrize("asked", ["ACC1042", "acc1042", "Acc1042"])
    def test_the_account_number_is_matched_in_any_case(
        self,
        client: FlaskClient,
        runtime: Runtime,
        viewer_headers: dict[str, str],
        asked: str,
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"], name="Wanjiku")

        response = client.get(f"/api/v1/customers/{asked}", headers=viewer_headers)

        assert response.status_code == 200
        body = response.get_json()
        assert body["account_number"] == "ACC1042"
        assert body["name"] == "Wanjiku"
        assert body["phones"] == ["+254712345678"]
        assert body["balance"] == "0.00"

    def test_an_unknown_account_answers_404_customer_not_found(
        self, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        response = client.get("/api/v1/customers/NOSUCHACC", headers=viewer_headers)

        body = assert_problem(response, 404, "customer_not_found")
        assert "NOSUCHACC" in body["detail"]


# --- customers created after their payments -----------------------------------------------


class TestRematchOnCreate:
    def test_a_new_customer_is_credited_the_no_match_payment_from_its_phone(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        post_payment(client, code="TKA0000001", msisdn="254712345678", ref="")
        drain_inbox(runtime)
        unassociated = list_payments(client, operator_headers, status="unassociated").get_json()
        assert [(p["code"], p["reason"]) for p in unassociated["items"]] == [
            ("TKA0000001", "no_match")
        ]

        response = create_customer(
            client, operator_headers, account_number="NEW1", phones=["0712 345 678"]
        )

        assert response.status_code == 201
        body = response.get_json()
        assert body["rematched_payments"] == [payment_id(runtime, "TKA0000001")]
        assert body["balance"] == "1500.00"
        shown = client.get("/api/v1/customers/NEW1", headers=operator_headers).get_json()
        assert shown["balance"] == "1500.00"
        [item] = list_payments(client, operator_headers).get_json()["items"]
        assert (item["code"], item["account_number"], item["match_method"]) == (
            "TKA0000001",
            "NEW1",
            "phone",
        )

    def test_a_payment_unassociated_for_another_reason_is_not_touched(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1", ["0722000000"])
        add_customer(runtime, "ACC2", ["0722000000"])
        post_payment(client, code="TKB0000001", msisdn="254722000000", ref="")
        drain_inbox(runtime)

        response = create_customer(
            client, operator_headers, account_number="ACC3", phones=["0722000000"]
        )

        body = response.get_json()
        assert body["rematched_payments"] == []
        assert body["balance"] == "0.00"
        [item] = list_payments(client, operator_headers, status="unassociated").get_json()["items"]
        assert item["code"] == "TKB0000001"
        assert item["reason"] == "shared_phone"
        assert item["candidates"] == ["ACC1", "ACC2"]

    def test_a_no_match_payment_from_another_phone_is_not_credited(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        post_payment(client, code="TKC0000001", msisdn="254733000000", ref="")
        drain_inbox(runtime)

        response = create_customer(
            client, operator_headers, account_number="NEW1", phones=["0712345678"]
        )

        assert response.get_json()["rematched_payments"] == []
        assert response.get_json()["balance"] == "0.00"


# --- GET /api/v1/payments -----------------------------------------------------------------


class TestListPayments:
    def test_items_carry_the_documented_fields(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post_payment(client, code="TKQ4A91B2C", ref="ACC1042")
        drain_inbox(runtime)

        body = list_payments(client, viewer_headers).get_json()

        [item] = body["items"]
        assert body["next_cursor"] is None
        assert item["id"] == payment_id(runtime, "TKQ4A91B2C")
        assert {
            key: item[key]
            for key in (
                "code",
                "account_number",
                "phone",
                "payer_name",
                "amount",
                "currency",
                "paid_at",
                "status",
                "match_method",
            )
        } == {
            "code": "TKQ4A91B2C",
            "account_number": "ACC1042",
            "phone": "+254712345678",
            "payer_name": "WANJIKU A KAMAU",
            "amount": "1500.00",
            "currency": "KES",
            "paid_at": "2025-11-03T11:30:15+00:00",
            "status": "associated",
            "match_method": "account_number",
        }

    def test_amounts_with_cents_are_shown_as_exact_decimal_strings(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post_payment(client, code="TKD0000001", ref="ACC1042", amount="1520.05")
        drain_inbox(runtime)

        [item] = list_payments(client, viewer_headers).get_json()["items"]

        assert item["amount"] == "1520.05"

    def test_the_default_lists_associated_payments_only(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post_payment(client, code="TKE0000001", ref="ACC1042")
        post_payment(client, code="TKE0000002", msisdn="254733000000", ref="")
        drain_inbox(runtime)

        default = list_payments(client, viewer_headers).get_json()["items"]
        associated = list_payments(client, viewer_headers, status="associated").get_json()["items"]

        assert [p["code"] for p in default] == ["TKE0000001"]
        assert default == associated

    def test_unassociated_items_show_their_reason_and_no_account(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post_payment(client, code="TKE0000001", ref="ACC1042")
        post_payment(client, code="TKE0000002", msisdn="254733000000", ref="")
        drain_inbox(runtime)

        items = list_payments(client, viewer_headers, status="unassociated").get_json()["items"]

        [item] = items
        assert item["code"] == "TKE0000002"
        assert item["status"] == "unassociated"
        assert item["account_number"] is None
        assert item["match_method"] is None
        assert item["phone"] == "+254733000000"
        assert item["reason"] == "no_match"
        assert item["candidates"] == []

    def test_a_phone_shared_by_two_customers_lists_both_as_candidates(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC2", ["+254 722 000 000"])
        add_customer(runtime, "ACC1", ["0722000000"])
        post_payment(client, code="TKF0000001", msisdn="254722000000", ref="")
        drain_inbox(runtime)

        [item] = list_payments(client, viewer_headers, status="unassociated").get_json()["items"]

        assert item["reason"] == "shared_phone"
        assert sorted(item["candidates"]) == ["ACC1", "ACC2"]
        assert item["account_number"] is None
        assert list_payments(client, viewer_headers).get_json()["items"] == []

    def test_account_lists_exactly_that_customer_s_payments(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        # an account number that reads as an amount: q=1500 would find the other's too
        add_customer(runtime, "1500", ["0712345678"])
        add_customer(runtime, "ACC2", ["0722000000"])
        post_payment(client, code="TKH0000001", ref="1500", amount="20.00")
        post_payment(client, code="TKH0000002", msisdn="254722000000", ref="ACC2")
        post_payment(client, code="TKH0000003", msisdn="254712345678", ref="", amount="30.00")
        drain_inbox(runtime)

        mine = list_payments(client, viewer_headers, account="1500").get_json()["items"]
        searched = list_payments(client, viewer_headers, q="1500").get_json()["items"]

        assert [p["code"] for p in mine] == ["TKH0000003", "TKH0000001"]
        assert "TKH0000002" in [p["code"] for p in searched]

    def test_account_is_read_in_any_letter_case_and_pages_with_the_cursor(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        add_customer(runtime, "ACC2", ["0722000000"])
        for n in range(3):
            post_payment(client, code=f"TKJ000000{n}", when=f"2025110{n + 1}100000", ref="ACC1042")
        post_payment(client, code="TKJ0000009", msisdn="254722000000", ref="ACC2")
        drain_inbox(runtime)

        first = list_payments(client, viewer_headers, account="acc1042", limit="2").get_json()
        rest = list_payments(
            client, viewer_headers, account="acc1042", limit="2", cursor=first["next_cursor"]
        ).get_json()

        codes = [p["code"] for p in first["items"] + rest["items"]]
        assert codes == ["TKJ0000002", "TKJ0000001", "TKJ0000000"]
        assert rest["next_cursor"] is None

    def test_an_account_no_customer_has_answers_404(
        self, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        response = list_payments(client, viewer_headers, account="NOSUCH")

        body = assert_problem(response, 404, "customer_not_found")
        assert "NOSUCH" in body["detail"]

    @pytest.mark.parametrize("status", ["all", "ASSOCIATED", "pending", ""])
    def test_an_unknown_status_answers_400(
        self, client: FlaskClient, viewer_headers: dict[str, str], status: str
    ) -> None:
        response = list_payments(client, viewer_headers, status=status)

        assert_problem(response, 400, "invalid_status")

    def test_payments_are_listed_newest_first_by_time_paid_not_by_arrival(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        for code, when in [
            ("TKG0000002", "20251102100000"),
            ("TKG0000004", "20251104100000"),
            ("TKG0000001", "20251101100000"),
            ("TKG0000003", "20251103100000"),
        ]:
            post_payment(client, code=code, when=when, ref="ACC1042")
        drain_inbox(runtime)

        items = list_payments(client, viewer_headers).get_json()["items"]

        assert [p["code"] for p in items] == [
            "TKG0000004",
            "TKG0000003",
            "TKG0000002",
            "TKG0000001",
        ]

    def test_limit_2_pages_through_5_payments_exactly_once_each(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        # Two share a time paid, so the id has to break the tie across a page boundary.
        for code, when, msisdn in [
            ("TKH0000003", "20251103100000", "254712345678"),
            ("TKH0000001", "20251101100000", "0712345678"),
            ("TKH0000004", "20251102100000", "254712345678"),
            ("TKH0000005", "20251104100000", "712345678"),
            ("TKH0000002", "20251102100000", "254712345678"),
        ]:
            post_payment(client, code=code, when=when, msisdn=msisdn, ref="ACC1042")
        drain_inbox(runtime)
        everything = list_payments(client, viewer_headers, limit="50").get_json()["items"]
        assert len(everything) == 5

        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
            body = list_payments(client, viewer_headers, **params).get_json()
            pages.append([p["code"] for p in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 10, "pagination does not end"

        assert [len(page) for page in pages] == [2, 2, 1]
        walked = [code for page in pages for code in page]
        assert walked == [p["code"] for p in everything]
        assert sorted(walked) == [f"TKH000000{n}" for n in range(1, 6)]
        keys = [(p["paid_at"], p["id"]) for p in everything]
        assert keys == sorted(keys, reverse=True)

    def test_a_page_that_ends_exactly_at_the_last_item_has_no_next_cursor(
        self, client: FlaskClient, runtime: Runtime, viewer_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post_payment(client, code="TKI0000001", when="20251101100000", ref="ACC1042")
        post_payment(client, code="TKI0000002", when="20251102100000", ref="ACC1042")
        drain_inbox(runtime)

        body = list_payments(client, viewer_headers, limit="2").get_json()

        assert len(body["items"]) == 2
        assert body["next_cursor"] is None

    @pytest.mark.parametrize(
        "cursor",
        [
            pytest.param("garbage", id="garbage"),
            pytest.param("%%%", id="not-base64"),
            pytest.param(cursor_of("2025-11-03T11:30:15|1"), id="naive-time"),
            pytest.param(cursor_of("yesterday|1"), id="not-a-time"),
            pytest.param(cursor_of("2025-11-03T11:30:15+00:00|x"), id="not-an-id"),
        ],
    )
    def test_a_cursor_this_api_did_not_give_out_answers_400(
        self, client: FlaskClient, viewer_headers: dict[str, str], cursor: str
    ) -> None:
        response = list_payments(client, viewer_headers, cursor=cursor)

        assert_problem(response, 400, "invalid_cursor")

    @pytest.mark.parametrize(
        "cursor",
        [
            pytest.param(cursor_of("2025-11-03T11:30:15+00:00|99999999999999999999"), id="huge-id"),
            pytest.param(cursor_of("0001-01-01T00:00:00+01:00|1"), id="year-1-before-utc"),
        ],
    )
    def test_a_well_formed_cursor_with_out_of_range_values_answers_400(
        self, client: FlaskClient, viewer_headers: dict[str, str], cursor: str
    ) -> None:
        response = list_payments(client, viewer_headers, cursor=cursor)

        assert_problem(response, 400, "invalid_cursor")

    @pytest.mark.parametrize("limit", ["0", "abc", "-1", "501", "1.5", ""])
    def test_a_limit_outside_1_to_500_answers_400(
        self, client: FlaskClient, viewer_headers: dict[str, str], limit: str
    ) -> None:
        response = list_payments(client, viewer_headers, limit=limit)

        assert_problem(response, 400, "invalid_limit")

    def test_a_limit_of_non_ascii_digits_answers_400(
        self, client: FlaskClient, viewer_headers: dict[str, str]
    ) -> None:
        response = list_payments(client, viewer_headers, limit="²")

        assert_problem(response, 400, "invalid_limit")

    @pytest.mark.parametrize("limit", ["1", "500"])
    def test_the_limits_of_the_limit_are_accepted(
        self, client: FlaskClient, viewer_headers: dict[str, str], limit: str
    ) -> None:
        assert list_payments(client, viewer_headers, limit=limit).status_code == 200


# --- who made each change -----------------------------------------------------------------


class TestAudit:
    def test_creating_a_customer_records_the_token_that_did_it(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        headers = {"Authorization": f"Bearer {make_token(runtime, 'operator', name='alice')}"}

        create_customer(client, headers, account_number="ACC1042", phones=["0712345678"])

        with runtime.sessions() as session:
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.subject_type == "customer")
            ).all()
            assert [(e.actor, e.action, e.subject_id) for e in events] == [
                ("token:alice", "customer.create", "ACC1042")
            ]
            assert events[0].after is not None
            assert events[0].after["phones"] == ["+254712345678"]

    def test_a_credit_from_rematching_records_the_token_that_caused_it(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        headers = {"Authorization": f"Bearer {make_token(runtime, 'operator', name='bob')}"}
        post_payment(client, code="TKJ0000001", ref="")
        drain_inbox(runtime)

        create_customer(client, headers, account_number="NEW1", phones=["0712345678"])

        with runtime.sessions() as session:
            [entry] = session.scalars(select(LedgerEntry)).all()
            assert entry.created_by == "token:bob"
            assert entry.amount_minor == 150000

    def test_a_refused_change_records_nothing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        create_customer(client, operator_headers, account_number="ACC1042")
        create_customer(client, operator_headers, account_number="acc1042")
        create_customer(client, operator_headers, account_number="ACC9", phones=["12345"])

        with runtime.sessions() as session:
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.subject_type == "customer")
            ).all()
            assert [e.subject_id for e in events] == ["ACC1042"]


# --- request bodies: the fields a write takes, and no others ------------------------------


def _required_fields() -> list[Any]:
    return [
        pytest.param(operation, field, id=f"{operation} {field}")
        for operation in writes()
        for field in (operation.body_schema or {}).get("required", [])
    ]


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(runtime, 'admin', name='test-admin')}"}


def changes_by(runtime: Runtime, actor: str) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).where(AuditEvent.actor == actor)) or 0


class TestBodies:
    @pytest.mark.parametrize("operation", writes(), ids=str)
    def test_every_write_refuses_unknown_fields_with_422_naming_them(
        self,
        client: FlaskClient,
        runtime: Runtime,
        admin_headers: dict[str, str],
        operation: Operation,
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        body = {**operation.body_example, "currency": "USD", "surprise": 1}

        response = client.open(
            operation.url(), method=operation.method, json=body, headers=admin_headers
        )

        problem = assert_problem(response, 422, "unknown_field")
        assert problem["fields"] == ["currency", "surprise"]
        assert problem["detail"].startswith("unknown fields currency, surprise:")
        assert changes_by(runtime, "token:test-admin") == 0

    @pytest.mark.parametrize(("operation", "field"), _required_fields())
    def test_a_missing_required_field_is_named_as_missing(
        self,
        client: FlaskClient,
        runtime: Runtime,
        admin_headers: dict[str, str],
        operation: Operation,
        field: str,
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        body = {k: v for k, v in operation.body_example.items() if k != field}

        response = client.open(
            operation.url(), method=operation.method, json=body, headers=admin_headers
        )

        problem = assert_problem(response, 400, "missing_field")
        assert problem["fields"] == [field]
        assert problem["detail"].startswith(f"{field} is missing: this request needs ")
        assert changes_by(runtime, "token:test-admin") == 0

    def test_a_payment_in_another_currency_is_refused_and_nothing_is_booked(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        body = {"account_number": "ACC1042", "amount": "100.00", "currency": "USD"}

        response = client.post("/api/v1/payments", json=body, headers=operator_headers)

        problem = assert_problem(response, 422, "unknown_field")
        assert problem["fields"] == ["currency"]
        assert "account_number, amount, reference, note" in problem["detail"]
        shown = client.get("/api/v1/customers/ACC1042", headers=operator_headers).get_json()
        assert shown["balance"] == "0.00"
        with runtime.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Payment)) == 0

    def test_a_payment_without_an_amount_says_the_amount_is_missing(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", [])

        response = client.post(
            "/api/v1/payments", json={"account_number": "ACC1042"}, headers=operator_headers
        )

        problem = assert_problem(response, 400, "missing_field")
        assert problem["detail"] == (
            "amount is missing: this request needs account_number, amount "
            "(and may have reference, note)"
        )

    def test_a_body_with_no_fields_where_none_are_taken_is_fine_and_any_field_is_refused(
        self, client: FlaskClient, runtime: Runtime, admin_headers: dict[str, str]
    ) -> None:
        # replaying an inbox row takes no fields; the row need not exist for this refusal
        refused = client.post("/api/v1/inbox/1/replay", json={"force": True}, headers=admin_headers)
        empty = client.post("/api/v1/inbox/1/replay", headers=admin_headers)

        assert assert_problem(refused, 422, "unknown_field")["fields"] == ["force"]
        assert_problem(empty, 404, "inbox_not_found")


# --- a customer's name --------------------------------------------------------------------


class TestCustomerName:
    @pytest.mark.parametrize("name", ["", "   ", None, 5, "x" * 201])
    def test_a_new_customer_needs_a_name_of_1_to_200_characters(
        self, client: FlaskClient, operator_headers: dict[str, str], name: object
    ) -> None:
        response = create_customer(client, operator_headers, account_number="ACC1", name=name)

        problem = assert_problem(response, 400, "invalid_name")
        assert "a customer needs a name" in problem["detail"]
        assert client.get("/api/v1/customers/ACC1", headers=operator_headers).status_code == 404

    def test_a_new_customer_without_a_name_is_told_the_name_is_missing(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        response = client.post(
            "/api/v1/customers", json={"account_number": "ACC1"}, headers=operator_headers
        )

        assert assert_problem(response, 400, "missing_field")["fields"] == ["name"]

    @pytest.mark.parametrize("name", ["", "   ", None])
    def test_a_name_cannot_be_changed_to_nothing(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: dict[str, str],
        name: object,
    ) -> None:
        add_customer(runtime, "ACC1", [], name="Wanjiku")

        response = client.patch(
            "/api/v1/customers/ACC1", json={"name": name}, headers=operator_headers
        )

        assert_problem(response, 400, "invalid_name")
        shown = client.get("/api/v1/customers/ACC1", headers=operator_headers).get_json()
        assert shown["name"] == "Wanjiku"

    def test_phones_change_without_touching_the_name_even_one_kept_from_before(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1", [], name="Wanjiku")
        with runtime.sessions.begin() as session:  # written before names were required
            session.execute(update(Customer).values(name=""))

        response = client.patch(
            "/api/v1/customers/ACC1", json={"phones": ["0712345678"]}, headers=operator_headers
        )

        assert response.status_code == 200, response.get_data(as_text=True)
        assert (response.get_json()["name"], response.get_json()["phones"]) == (
            "",
            ["+254712345678"],
        )
