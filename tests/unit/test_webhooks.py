"""The M-PESA webhook edge, through the Flask test client: store first, then acknowledge."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from core.config import ConfigError, Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from matcher.models import (
    INBOX_PENDING,
    INBOX_PROCESSED,
    INBOX_REJECTED,
    Customer,
    InboxItem,
    LedgerEntry,
    Payment,
    PaymentAttempt,
)
from momo.app import create_app, create_web_app
from tasks.work import drain_inbox
from tests.conftest import (
    PATH_TOKEN,
    BuildClient,
    add_customer,
    mpesa_block,
    sample,
    sample_bytes,
    webhook_url,
)

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}
VALIDATION_ACCEPTED = {"ResultCode": "0", "ResultDesc": "Accepted"}
VALIDATION_REJECTED = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
SAFARICOM = ipaddress.ip_network("196.201.214.0/24")

#: every payment-bearing sample, the endpoint it is posted to, and the inbox code it gets
PAYMENT_SAMPLES = [
    ("c2b_confirmation_paybill_plain.json", "c2b/confirmation", "TKQ4A91B2C"),
    ("c2b_confirmation_hashed_msisdn.json", "c2b/confirmation", "TKR7Z01XQP"),
    ("c2b_confirmation_masked_msisdn.json", "c2b/confirmation", "TKS2M55VLA"),
    ("c2b_confirmation_buy_goods.json", "c2b/confirmation", "TKT9P3D6RE"),
    ("stk_callback_success.json", "stk", "TKV5C2N8BD"),
    ("stk_callback_cancelled.json", "stk", "ws_CO_191220191020363926"),
]

# --- helpers ------------------------------------------------------------------------------


def post(
    client: FlaskClient, kind: str, body: bytes, token: str = PATH_TOKEN, **kwargs: Any
) -> Any:
    return client.post(
        webhook_url(kind, token), data=body, content_type="application/json", **kwargs
    )


def inbox_rows(runtime: Runtime) -> list[InboxItem]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboxItem).order_by(InboxItem.id)))


def payments(runtime: Runtime) -> list[Payment]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Payment).order_by(Payment.id)))


def balance_minor(runtime: Runtime, account: str) -> int:
    with runtime.sessions() as session:
        customer = session.scalar(select(Customer).where(Customer.account_number == account))
        assert customer is not None, account
        return customer.balance_minor


def ledger_total(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return sum(session.scalars(select(LedgerEntry.amount_minor)))


def confirmation_body(**changes: object) -> bytes:
    doc = sample("c2b_confirmation_paybill_plain.json")
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.fixture
def broken_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose SQLite file lives in a folder that does not exist: no write can work."""
    rt = build_runtime(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'no-such-dir' / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
    )
    yield rt
    rt.close()


@pytest.fixture
def broken_client(broken_runtime: Runtime) -> FlaskClient:
    app = create_app(runtime=broken_runtime)
    app.config["TESTING"] = True
    return app.test_client()


# --- POST /webhooks/mpesa/<token>/<kind>: storing and acknowledging -----------------------


class TestReceiveStoresBeforeAcknowledging:
    @pytest.mark.parametrize(("name", "kind", "code"), PAYMENT_SAMPLES)
    def test_each_sample_is_acknowledged_and_kept_byte_for_byte_as_one_pending_row(
        self, client: FlaskClient, runtime: Runtime, name: str, kind: str, code: str
    ) -> None:
        body = sample_bytes(name)
        response = post(client, kind, body, headers={"User-Agent": "Daraja-test/1.0"})

        assert response.status_code == 200
        assert response.get_json() == ACK
        [row] = inbox_rows(runtime)
        assert row.body == body
        assert row.provider == "mpesa"
        assert row.kind == kind
        assert row.status == INBOX_PENDING
        assert row.code == code
        assert row.client_addr == "127.0.0.1"
        assert row.received_at is not None
        assert row.headers == {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "User-Agent": "Daraja-test/1.0",
        }

    def test_headers_that_matter_are_kept_and_others_are_not(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        post(
            client,
            "c2b/confirmation",
            body,
            headers={"X-Real-IP": "196.201.214.200", "Cookie": "a=b", "X-Secret": "nope"},
        )

        [row] = inbox_rows(runtime)
        assert row.headers["X-Real-IP"] == "196.201.214.200"
        assert "Cookie" not in row.headers
        assert "X-Secret" not in row.headers

    def test_validation_sample_is_accepted_in_darajas_format_and_kept_as_processed(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        body = sample_bytes("c2b_validation.json")
        response = post(client, "c2b/validation", body)

        assert response.status_code == 200
        assert response.get_json() == VALIDATION_ACCEPTED
        [row] = inbox_rows(runtime)
        assert row.body == body
        assert row.kind == "c2b/validation"
        assert row.status == INBOX_PROCESSED
        assert row.reason == "validation_accepted"
        assert row.code == "TKU1H8K4WS"
        assert row.client_addr == "127.0.0.1"

    def test_a_validation_request_never_becomes_a_payment(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post(client, "c2b/validation", sample_bytes("c2b_validation.json"))

        drain_inbox(runtime)

        assert payments(runtime) == []
        assert balance_minor(runtime, "ACC1042") == 0

    def test_a_body_of_exactly_64_kib_is_still_taken(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        padded = body + b" " * (64 * 1024 - len(body))
        assert len(padded) == 64 * 1024

        response = post(client, "c2b/confirmation", padded)

        assert response.status_code == 200
        assert [row.body for row in inbox_rows(runtime)] == [padded]


class TestReceiveRefusesWithoutStoring:
    def test_a_wrong_path_token_answers_404_and_stores_nothing(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        response = post(client, "c2b/confirmation", body, token=PATH_TOKEN + "x")

        assert response.status_code == 404
        assert response.get_json()["ResultCode"] != 0
        assert inbox_rows(runtime) == []

    def test_a_path_token_that_only_shares_a_prefix_answers_404(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        response = post(client, "c2b/confirmation", body, token=PATH_TOKEN[:-1])

        assert response.status_code == 404
        assert inbox_rows(runtime) == []

    # "statement" is stored by `momo mpesa import-statement` only: never over HTTP
    @pytest.mark.parametrize("kind", ["c2b/other", "c2b", "b2c/result", "stk/extra", "statement"])
    def test_an_unknown_kind_answers_404_and_stores_nothing(
        self, client: FlaskClient, runtime: Runtime, kind: str
    ) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        response = post(client, kind, body)

        assert response.status_code == 404
        assert inbox_rows(runtime) == []

    def test_an_unknown_provider_answers_404_and_stores_nothing(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        response = client.post(
            f"/webhooks/airtel/{PATH_TOKEN}/c2b/confirmation",
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            content_type="application/json",
        )

        assert response.status_code == 404
        assert inbox_rows(runtime) == []

    @pytest.mark.parametrize("kind", ["c2b/confirmation", "c2b/validation", "stk"])
    def test_get_answers_405_and_stores_nothing(
        self, client: FlaskClient, runtime: Runtime, kind: str
    ) -> None:
        response = client.get(webhook_url(kind))

        assert response.status_code == 405
        assert inbox_rows(runtime) == []

    def test_a_body_over_64_kib_answers_413_and_stores_nothing(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        oversized = body + b" " * (64 * 1024 + 1 - len(body))

        response = post(client, "c2b/confirmation", oversized)

        assert response.status_code == 413
        assert response.get_json()["ResultCode"] != 0
        assert inbox_rows(runtime) == []


class TestReceiveQuarantinesBadBodies:
    @pytest.mark.parametrize(
        ("kind", "body", "reason"),
        [
            ("c2b/confirmation", b"this is not json", "invalid_json"),
            ("c2b/confirmation", b"\xff\xfe{}", "invalid_json"),
            ("c2b/confirmation", b'["TKQ4A91B2C"]', "not_an_object"),
            ("c2b/confirmation", b"{}", "missing_field"),
            (
                "c2b/confirmation",
                b'{"TransID": "TKQ4A91B2C", "TransAmount": "abc", "TransTime": "20251103143015"}',
                "invalid_amount",
            ),
            ("c2b/validation", b"{", "invalid_json"),
            ("stk", b'{"Body": {}}', "missing_field"),
        ],
    )
    def test_a_body_not_in_the_providers_shape_answers_400_and_is_kept_as_rejected(
        self, client: FlaskClient, runtime: Runtime, kind: str, body: bytes, reason: str
    ) -> None:
        response = post(client, kind, body)

        assert response.status_code == 400
        answer = response.get_json()
        assert answer["reason"] == reason
        assert answer["ResultCode"] != 0
        [row] = inbox_rows(runtime)
        assert row.status == INBOX_REJECTED
        assert row.reason == reason
        assert row.detail
        assert row.body == body
        assert row.kind == kind

    def test_a_rejected_row_is_left_alone_by_the_worker(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        post(client, "c2b/confirmation", b"{}")

        result = drain_inbox(runtime)

        assert result.claimed == 0
        [row] = inbox_rows(runtime)
        assert row.status == INBOX_REJECTED
        assert payments(runtime) == []


# --- from callback to credited balance ----------------------------------------------------


class TestCallbacksCreditBalances:
    @pytest.mark.parametrize(
        ("name", "kind", "account", "phones", "expected_minor"),
        [
            ("c2b_confirmation_paybill_plain.json", "c2b/confirmation", "ACC1042", [], 150000),
            ("c2b_confirmation_masked_msisdn.json", "c2b/confirmation", "ACC1042", [], 5000),
            (
                "c2b_confirmation_hashed_msisdn.json",
                "c2b/confirmation",
                "ACC2000",
                ["0722 000 000"],
                25000,
            ),
            (
                "c2b_confirmation_buy_goods.json",
                "c2b/confirmation",
                "ACC3000",
                ["0110123456"],
                10000,
            ),
            ("stk_callback_success.json", "stk", "ACC1042", [], 2000),
        ],
    )
    def test_a_callback_for_a_customer_credits_its_balance_after_the_worker_runs(
        self,
        client: FlaskClient,
        runtime: Runtime,
        operator_headers: dict[str, str],
        name: str,
        kind: str,
        account: str,
        phones: list[str],
        expected_minor: int,
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        if account != "ACC1042":
            add_customer(runtime, account, phones)

        assert post(client, kind, sample_bytes(name)).status_code == 200
        assert balance_minor(runtime, account) == 0  # nothing is credited before the worker

        drain_inbox(runtime)

        shown = client.get(f"/api/v1/customers/{account}", headers=operator_headers)
        assert shown.status_code == 200
        assert shown.get_json()["balance"] == f"{expected_minor // 100}.{expected_minor % 100:02d}"
        assert balance_minor(runtime, account) == expected_minor
        [row] = inbox_rows(runtime)
        assert row.status == INBOX_PROCESSED
        assert row.reason == "credited"
        assert row.payment_id == payments(runtime)[0].id

    def test_the_same_callback_posted_twice_credits_once(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        body = sample_bytes("c2b_confirmation_paybill_plain.json")

        assert post(client, "c2b/confirmation", body).get_json() == ACK
        assert post(client, "c2b/confirmation", body).get_json() == ACK
        drain_inbox(runtime)

        shown = client.get("/api/v1/customers/ACC1042", headers=operator_headers).get_json()
        assert shown["balance"] == "1500.00"
        assert len(payments(runtime)) == 1
        assert ledger_total(runtime) == 150000
        assert [(row.status, row.reason) for row in inbox_rows(runtime)] == [
            (INBOX_PROCESSED, "credited"),
            (INBOX_PROCESSED, "duplicate"),
        ]

    def test_a_repeat_arriving_after_the_first_was_processed_credits_nothing_more(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        body = sample_bytes("c2b_confirmation_paybill_plain.json")

        post(client, "c2b/confirmation", body)
        drain_inbox(runtime)
        post(client, "c2b/confirmation", body)
        drain_inbox(runtime)

        assert balance_minor(runtime, "ACC1042") == 150000
        assert len(payments(runtime)) == 1

    def test_an_stk_result_and_a_c2b_confirmation_with_one_receipt_code_credit_once(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post(client, "stk", sample_bytes("stk_callback_success.json"))
        post(
            client,
            "c2b/confirmation",
            confirmation_body(TransID="TKV5C2N8BD", TransAmount="20.00"),
        )

        drain_inbox(runtime)

        assert balance_minor(runtime, "ACC1042") == 2000
        assert [p.code for p in payments(runtime)] == ["TKV5C2N8BD"]

    def test_a_cancelled_stk_push_is_recorded_as_an_attempt_and_credits_nothing(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        post(client, "stk", sample_bytes("stk_callback_cancelled.json"))

        drain_inbox(runtime)

        assert balance_minor(runtime, "ACC1042") == 0
        assert payments(runtime) == []
        with runtime.sessions() as session:
            [attempt] = session.scalars(select(PaymentAttempt))
            assert (attempt.result_code, attempt.reference) == (1032, "ws_CO_191220191020363926")


# --- c2b/validation in reject-unknown-account mode ----------------------------------------


class TestValidationRejectUnknownAccount:
    def test_an_unknown_account_from_an_unknown_phone_is_refused_with_c2b00012(
        self, build_client: BuildClient
    ) -> None:
        client, rt = build_client(
            providers=mpesa_block(PATH_TOKEN, validation="reject-unknown-account")
        )

        response = post(client, "c2b/validation", sample_bytes("c2b_validation.json"))

        assert response.status_code == 200
        assert response.get_json() == VALIDATION_REJECTED
        [row] = inbox_rows(rt)
        assert row.status == INBOX_PROCESSED
        assert row.reason == "validation_rejected"

    def test_an_existing_account_in_any_case_is_accepted(self, build_client: BuildClient) -> None:
        client, rt = build_client(
            providers=mpesa_block(PATH_TOKEN, validation="reject-unknown-account")
        )
        add_customer(rt, "nosuchacc", [])

        response = post(client, "c2b/validation", sample_bytes("c2b_validation.json"))

        assert response.get_json() == VALIDATION_ACCEPTED
        [row] = inbox_rows(rt)
        assert row.reason == "validation_accepted"

    def test_the_default_accept_mode_accepts_the_same_unknown_account(
        self, build_client: BuildClient
    ) -> None:
        client, _ = build_client(providers=mpesa_block(PATH_TOKEN, validation="accept"))

        response = post(client, "c2b/validation", sample_bytes("c2b_validation.json"))

        assert response.get_json() == VALIDATION_ACCEPTED


# --- when the database cannot take the write ----------------------------------------------


class TestReceiveWithoutADatabase:
    @pytest.mark.parametrize(
        ("kind", "name"),
        [
            ("c2b/confirmation", "c2b_confirmation_paybill_plain.json"),
            ("stk", "stk_callback_success.json"),
            ("c2b/validation", "c2b_validation.json"),
        ],
    )
    def test_an_unreachable_database_answers_503_and_never_an_acknowledgement(
        self, broken_client: FlaskClient, kind: str, name: str
    ) -> None:
        response = post(broken_client, kind, sample_bytes(name))

        assert response.status_code == 503
        answer = response.get_json()
        assert answer["ResultCode"] not in (0, "0")
        assert answer != ACK
        assert response.headers["Retry-After"]

    def test_a_bad_body_that_cannot_be_kept_answers_503_not_400(
        self, broken_client: FlaskClient
    ) -> None:
        response = post(broken_client, "c2b/confirmation", b"not json")

        assert response.status_code == 503

    def test_a_missing_inbox_table_answers_503_and_never_an_acknowledgement(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        with runtime.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE inbox")

        response = post(
            client, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json")
        )

        assert response.status_code == 503
        assert response.get_json()["ResultCode"] != 0


# --- MOMO_MPESA_ALLOWED_IPS and trusted proxy hops ----------------------------------------


class TestAllowList:
    def test_a_callback_from_outside_the_allow_list_gets_403_and_is_not_stored(
        self, build_client: BuildClient
    ) -> None:
        client, rt = build_client(providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)))

        response = post(
            client, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json")
        )

        assert response.status_code == 403
        assert response.get_json()["ResultCode"] != 0
        assert inbox_rows(rt) == []

    def test_a_callback_from_inside_the_allow_list_is_accepted(
        self, build_client: BuildClient
    ) -> None:
        client, rt = build_client(providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)))

        response = post(
            client,
            "c2b/confirmation",
            sample_bytes("c2b_confirmation_paybill_plain.json"),
            environ_base={"REMOTE_ADDR": "196.201.214.7"},
        )

        assert response.get_json() == ACK
        assert [row.client_addr for row in inbox_rows(rt)] == ["196.201.214.7"]

    def test_behind_one_trusted_proxy_the_forwarded_address_is_checked_and_kept(
        self, build_client: BuildClient
    ) -> None:
        client, rt = build_client(
            providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)), trusted_proxy_hops=1
        )

        response = post(
            client,
            "c2b/confirmation",
            sample_bytes("c2b_confirmation_paybill_plain.json"),
            headers={"X-Forwarded-For": "196.201.214.200"},
            environ_base={"REMOTE_ADDR": "10.0.0.5"},
        )

        assert response.status_code == 200
        assert response.get_json() == ACK
        [row] = inbox_rows(rt)
        assert row.client_addr == "196.201.214.200"
        assert row.headers["X-Forwarded-For"] == "196.201.214.200"

    def test_with_no_trusted_proxy_a_forwarded_for_header_is_ignored(
        self, build_client: BuildClient
    ) -> None:
        client, rt = build_client(
            providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)), trusted_proxy_hops=0
        )

        response = post(
            client,
            "c2b/confirmation",
            sample_bytes("c2b_confirmation_paybill_plain.json"),
            headers={"X-Forwarded-For": "196.201.214.200"},
        )

        assert response.status_code == 403
        assert inbox_rows(rt) == []

    def test_an_address_the_caller_prepends_to_forwarded_for_is_not_trusted(
        self, build_client: BuildClient
    ) -> None:
        client, rt = build_client(
            providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)), trusted_proxy_hops=1
        )

        response = post(
            client,
            "c2b/confirmation",
            sample_bytes("c2b_confirmation_paybill_plain.json"),
            headers={"X-Forwarded-For": "196.201.214.200, 203.0.113.9"},
            environ_base={"REMOTE_ADDR": "10.0.0.5"},
        )

        assert response.status_code == 403
        assert inbox_rows(rt) == []

    def test_an_allowed_ipv4_address_seen_through_a_dual_stack_socket_is_accepted(
        self, build_client: BuildClient
    ) -> None:
        client, _ = build_client(providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)))

        response = post(
            client,
            "c2b/confirmation",
            sample_bytes("c2b_confirmation_paybill_plain.json"),
            environ_base={"REMOTE_ADDR": "::ffff:196.201.214.200"},
        )

        assert response.status_code == 200

    def test_the_allow_list_does_not_apply_to_the_operator_api(
        self, build_client: BuildClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        client, _ = build_client(providers=mpesa_block(PATH_TOKEN, allowed_ips=(SAFARICOM,)))

        response = client.get("/api/v1/payments", headers=operator_headers)

        assert response.status_code == 200


# --- create_app ---------------------------------------------------------------------------


class TestCreateApp:
    @pytest.mark.parametrize("token", [None, ""])
    def test_without_a_path_token_it_fails_naming_the_variable(
        self, settings: Settings, token: str | None
    ) -> None:
        with pytest.raises(ConfigError, match="MOMO_MPESA_PATH_TOKEN"):
            create_app(settings.with_overrides(providers=mpesa_block(token)))

    def test_the_webhook_only_app_also_fails_without_a_path_token(self, settings: Settings) -> None:
        with pytest.raises(ConfigError, match="MOMO_MPESA_PATH_TOKEN"):
            create_web_app(settings.with_overrides(providers=mpesa_block(None)))

    def test_a_runtime_without_a_path_token_is_refused_too(self, settings: Settings) -> None:
        rt = build_runtime(settings.with_overrides(providers=mpesa_block(None)))
        try:
            with pytest.raises(ConfigError, match="MOMO_MPESA_PATH_TOKEN"):
                create_app(runtime=rt)
        finally:
            rt.close()

    def test_the_webhook_only_app_receives_callbacks(self, runtime: Runtime) -> None:
        app = create_web_app(runtime=runtime)
        client = app.test_client()

        response = post(
            client, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json")
        )

        assert response.get_json() == ACK
        assert client.get("/api/v1/payments").status_code == 404


# --- GET /healthz -------------------------------------------------------------------------


class TestHealthz:
    def test_a_reachable_database_answers_200_ok(self, client: FlaskClient) -> None:
        response = client.get("/healthz")

        assert response.status_code == 200
        assert response.get_json()["status"] == "ok"

    def test_an_unreachable_database_answers_503(self, broken_client: FlaskClient) -> None:
        response = broken_client.get("/healthz")

        assert response.status_code == 503
        assert response.get_json()["status"] != "ok"
