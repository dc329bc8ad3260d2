"""Pull Transactions: sorting Daraja's records, the adapter's reading of one, the windows a
span is pulled in and the pages of an answer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from core.config import ConfigError, Settings
from core.providers import ParseContext
from core.runtime import Runtime
from ingest.providers import build_runtime, variables
from ingest.providers.daraja import Daraja, DarajaApp
from ingest.providers.mpesa import MpesaAdapter, read_settings
from ingest.providers.mpesa_pull import (
    PULL,
    Entry,
    Malformed,
    Puller,
    Skipped,
    TooOld,
    page_records,
    sort_record,
    windows,
)
from ingest.providers.outbound import NoAnswer, ProviderRefused
from matcher.db import make_engine
from matcher.matching import get_customer
from matcher.migrate import upgrade
from matcher.models import InboxItem, Payment
from matcher.notifications import InvalidCallback, Notice, PaymentNotification
from matcher.provider_records import note_coverage
from tasks.celery_app import celery_config
from tasks.embedded import embedded_worker
from tasks.pulling import due_span
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, mpesa_block
from tests.fakes.daraja import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    NAIROBI,
    PULL_QUERY,
    PULL_REGISTER,
    SHORTCODE,
    DarajaFake,
)

CTX = ParseContext()


def record(**changes: Any) -> dict[str, Any]:
    """A record as Daraja's page shows one (its sample values, a real receipt)."""
    base: dict[str, Any] = {
        "transactionId": "LHG31AA5TX",
        "trxDate": "2020-08-05T10:13:00Z",
        "msisdn": 722000000,
        "sender": "JOHN DOE",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": "ACC1042",
        "amount": "233.8",
        "organizationname": "Daraja Pull API Test",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def parse(doc: dict[str, Any]) -> PaymentNotification:
    parsed = MpesaAdapter().parse(PULL, json.dumps(doc).encode(), CTX)
    assert isinstance(parsed, PaymentNotification)
    return parsed


class TestTheAdapterReadsAPulledRecord:
    def test_every_field_is_read_as_a_confirmation_would_be(self) -> None:
        payment = parse(record())

        assert payment.provider == "mpesa"
        assert payment.code == "LHG31AA5TX"
        assert payment.amount == 23380
        assert payment.msisdn.e164 == "+254722000000"
        assert payment.payer_name == "JOHN DOE"
        assert payment.account_reference == "ACC1042"
        assert (payment.channel, payment.source) == ("pull", "pull")

    def test_a_time_with_z_or_without_a_zone_is_nairobi_wall_clock_time(self) -> None:
        nairobi = datetime(2020, 8, 5, 7, 13, tzinfo=UTC)  # 10:13 in Nairobi (UTC+3)

        assert parse(record(trxDate="2020-08-05T10:13:00Z")).paid_at == nairobi
        assert parse(record(trxDate="2020-08-05 10:13:00")).paid_at == nairobi
        assert parse(record(trxDate="2020-08-05T10:13:00.000Z")).paid_at == nairobi

    def test_an_explicit_offset_is_honoured(self) -> None:
        paid = parse(record(trxDate="2020-08-05T10:13:00+00:00")).paid_at

        assert paid == datetime(2020, 8, 5, 10, 13, tzinfo=UTC)

    @pytest.mark.parametrize("number", ["722000000", "0722000000", "254722000000", 254722000000])
    def test_the_bare_national_number_and_full_forms_are_the_same_phone(
        self, number: object
    ) -> None:
        assert parse(record(msisdn=number)).msisdn.e164 == "+254722000000"

    def test_a_number_or_a_string_amount_is_exact_and_never_a_float(self) -> None:
        body = b'{"transactionId": "LHG31AA5TX", "trxDate": "2020-08-05 10:13:00", '
        body += b'"transactiontype": "c2b-pay-bill-debit", "amount": 0.29, "msisdn": "722000000"}'
        parsed = MpesaAdapter().parse(PULL, body, CTX)

        assert isinstance(parsed, PaymentNotification)
        assert parsed.amount == 29
        assert parse(record(amount=1500)).amount == 150000

    def test_an_unknown_sender_is_no_payer_name(self) -> None:
        assert parse(record(sender="UNKNOWN")).payer_name is None
        assert parse(record(sender=None)).payer_name is None

    def test_keys_are_read_in_any_case(self) -> None:
        doc = {key.upper(): value for key, value in record().items()}

        assert parse(doc).code == "LHG31AA5TX"

    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"transactiontype": None}, "not_a_payment"),
            ({"amount": "-5"}, "invalid_amount"),
            ({"amount": None}, "missing_field"),
            ({"trxDate": "05/08/2020"}, "invalid_time"),
            ({"transactionId": "LHG 31"}, "invalid_code"),
        ],
    )
    def test_a_record_that_is_no_payment_is_refused_with_its_reason(
        self, changes: dict[str, Any], reason: str
    ) -> None:
        with pytest.raises(InvalidCallback) as refused:
            parse(record(**changes))

        assert refused.value.reason == reason

    def test_a_record_of_another_type_is_a_notice_not_a_payment(self) -> None:
        parsed = MpesaAdapter().parse(
            PULL, json.dumps(record(transactiontype="c2b-pay-bill-credit")).encode(), CTX
        )

        assert isinstance(parsed, Notice)
        assert "no money in" in parsed.detail


class TestThePullCallbackUrl:
    """What Daraja posts to the CallBackURL the shortcode was registered for pulling with."""

    URL = f"/webhooks/daraja/{PATH_TOKEN}/pull"

    def test_what_is_no_transaction_record_is_acknowledged_and_not_kept(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        answer = client.post(self.URL, json={"ResponseRefID": "abc", "Status": "Registered"})

        assert answer.status_code == 200
        assert answer.get_json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
        with runtime.sessions.begin() as session:
            assert session.scalars(select(InboxItem)).all() == []

    def test_a_payment_record_is_kept_and_recorded_like_a_pulled_one(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        now = datetime.now(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")
        answer = client.post(self.URL, json=record(trxDate=now))

        assert answer.status_code == 200
        drain_inbox(runtime)
        with runtime.sessions.begin() as session:
            (payment,) = session.scalars(select(Payment)).all()
            assert (payment.code, payment.channel) == ("LHG31AA5TX", "pull")

    def test_another_token_is_404(self, client: FlaskClient) -> None:
        assert client.post("/webhooks/daraja/" + "x" * 40 + "/pull", json={}).status_code == 404


class TestSortRecord:
    def test_a_pay_bill_or_buy_goods_payment_is_an_entry_holding_the_record(self) -> None:
        for kind in ("c2b-pay-bill-debit", "C2B-Buy-Goods-Debit"):
            sorted_ = sort_record(record(transactiontype=kind))
            assert isinstance(sorted_, Entry)
            assert json.loads(sorted_.body)["transactionId"] == "LHG31AA5TX"

    def test_another_type_is_skipped_with_its_name(self) -> None:
        assert sort_record(record(transactiontype="c2b-reversal")) == Skipped(
            "LHG31AA5TX", "c2b-reversal"
        )

    def test_a_record_without_a_type_or_not_an_object_is_malformed(self) -> None:
        assert isinstance(sort_record(record(transactiontype=None)), Malformed)
        assert isinstance(sort_record(["LHG31AA5TX"]), Malformed)


class TestWindows:
    NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)

    def test_a_span_longer_than_48_hours_is_cut_into_windows_daraja_answers(self) -> None:
        start = self.NOW - timedelta(hours=47)
        end = start + timedelta(hours=100)
        found = windows(start, end, now=self.NOW)

        assert found == [
            (start, start + timedelta(hours=48)),
            (start + timedelta(hours=48), start + timedelta(hours=96)),
            (start + timedelta(hours=96), end),
        ]

    def test_a_span_within_48_hours_is_one_window(self) -> None:
        start = self.NOW - timedelta(hours=47)

        assert windows(start, self.NOW, now=self.NOW) == [(start, self.NOW)]

    def test_a_span_starting_more_than_48_hours_ago_says_to_import_a_statement(self) -> None:
        with pytest.raises(TooOld, match="momo mpesa import-statement"):
            windows(self.NOW - timedelta(hours=49), self.NOW, now=self.NOW)


class TestPageRecords:
    def test_the_twice_nested_list_is_read_flat(self) -> None:
        answer = {"ResponseCode": "1000", "Response": [[{"a": 1}, {"a": 2}], [{"a": 3}]]}

        assert page_records(answer) == [{"a": 1}, {"a": 2}, {"a": 3}]

    def test_nothing_is_an_empty_page_whether_the_list_is_json_or_text(self) -> None:
        assert page_records({"ResponseCode": "1001", "Response": [[]]}) == []
        assert page_records({"ResponseCode": "1001", "Transaction": "[[]]"}) == []

    def test_another_code_or_shape_is_no_answer(self) -> None:
        with pytest.raises(NoAnswer, match="code 500"):
            page_records({"ResponseCode": "500", "ResponseMessage": "failed"})
        with pytest.raises(NoAnswer, match="not a list of lists"):
            page_records({"ResponseCode": "1000", "Response": [{"a": 1}]})


# --- the client, against the fake Daraja on loopback ------------------------------------------


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def puller(daraja: DarajaFake) -> Iterator[Puller]:
    client = Daraja(DarajaApp(CONSUMER_KEY, CONSUMER_SECRET, SHORTCODE, api_base=daraja.base_url))
    yield Puller(client, NAIROBI)
    client.close()


class TestPuller:
    def test_register_sends_daraja_its_fields_and_a_second_time_is_success_too(
        self, daraja: DarajaFake, puller: Puller
    ) -> None:
        first = puller.register("0722000000", "https://pay.example.com/webhooks/daraja/t/pull")
        again = puller.register("0722000000", "https://pay.example.com/webhooks/daraja/t/pull")

        assert (first["ResponseStatus"], again["ResponseStatus"]) == ("1000", "1001")
        sent = daraja.calls(PULL_REGISTER)[0].json
        assert sent == {
            "ShortCode": SHORTCODE,
            "RequestType": "Pull",
            "NominatedNumber": "0722000000",
            "CallBackURL": "https://pay.example.com/webhooks/daraja/t/pull",
        }
        assert daraja.pull_registered

    def test_a_wrong_nominated_number_is_daraja_refusing(self, puller: Puller) -> None:
        with pytest.raises(ProviderRefused, match="NominatedNumber"):
            puller.register("0799999999", "https://pay.example.com/x")

    def test_a_window_is_read_page_by_page_until_daraja_has_no_more(
        self, daraja: DarajaFake, puller: Puller
    ) -> None:
        daraja.pull_registered = True
        daraja.pull_page_size = 2
        now = datetime.now(UTC)
        paid = [
            daraja.pay_bill(
                100 + i, "254722000000", "ACC1", deliver=False, paid_at=now - timedelta(hours=i + 1)
            )
            for i in range(5)
        ]

        pages = list(puller.window(now - timedelta(hours=47), now))

        assert [page.offset for page in pages] == [0, 2, 4]
        receipts = [r["transactionId"] for page in pages for r in page.records]
        assert sorted(receipts) == sorted(p.receipt for p in paid)
        offsets = [call.json["OffSetValue"] for call in daraja.calls(PULL_QUERY)]
        assert offsets == ["0", "2", "4"]  # the short third page ends the window
        window = daraja.calls(PULL_QUERY)[0].json
        assert window["StartDate"] == (now - timedelta(hours=47)).astimezone(NAIROBI).strftime(
            "%Y-%m-%d %H:%M:%S"
        )

    def test_a_window_with_nothing_is_no_pages(self, daraja: DarajaFake, puller: Puller) -> None:
        daraja.pull_registered = True
        now = datetime.now(UTC)

        assert list(puller.window(now - timedelta(hours=1), now)) == []

    def test_a_pull_before_registering_is_daraja_refusing(self, puller: Puller) -> None:
        now = datetime.now(UTC)

        with pytest.raises(ProviderRefused, match="not registered"):
            list(puller.window(now - timedelta(hours=1), now))

    def test_every_pulled_record_of_the_fake_is_an_entry_the_adapter_reads(
        self, daraja: DarajaFake, puller: Puller
    ) -> None:
        daraja.pull_registered = True
        now = datetime.now(UTC)
        paid = daraja.pay_bill("1500.50", "254722000000", "ACC1", deliver=False)

        (page,) = list(puller.window(now - timedelta(hours=1), now + timedelta(minutes=1)))
        (entry,) = [sort_record(r) for r in page.records]

        assert isinstance(entry, Entry)
        parsed = MpesaAdapter().parse(PULL, entry.body, CTX)
        assert isinstance(parsed, PaymentNotification)
        assert (parsed.code, parsed.amount, parsed.msisdn.e164) == (
            paid.receipt,
            150050,
            "+254722000000",
        )
        assert abs(parsed.paid_at - paid.paid_at) < timedelta(seconds=1)


# --- settings, the schedule and where a scheduled pull starts ---------------------------------

APP_ENV = {
    "MOMO_MPESA_CONSUMER_KEY": CONSUMER_KEY,
    "MOMO_MPESA_CONSUMER_SECRET": CONSUMER_SECRET,
    "MOMO_MPESA_SHORTCODE": SHORTCODE,
}


class TestPullEveryMinutes:
    def test_unset_is_off(self) -> None:
        assert read_settings(APP_ENV).pull_every_minutes is None

    def test_a_whole_number_of_minutes_with_the_app_is_taken(self) -> None:
        block = read_settings(APP_ENV | {"MOMO_MPESA_PULL_EVERY_MINUTES": " 15 "})

        assert block.pull_every_minutes == 15

    @pytest.mark.parametrize("raw", ["0", "-5", "1.5", "often"])
    def test_a_bad_value_is_a_config_error_naming_it(self, raw: str) -> None:
        with pytest.raises(ConfigError, match=f"MOMO_MPESA_PULL_EVERY_MINUTES={raw!r}"):
            read_settings(APP_ENV | {"MOMO_MPESA_PULL_EVERY_MINUTES": raw})

    def test_without_the_daraja_app_it_says_what_is_missing(self) -> None:
        with pytest.raises(ConfigError, match="MOMO_MPESA_CONSUMER_KEY"):
            read_settings({"MOMO_MPESA_PULL_EVERY_MINUTES": "15"})

    def test_beat_schedules_the_pull_only_when_it_is_set(self) -> None:
        off = Settings(providers={"mpesa": read_settings(APP_ENV)})
        on = Settings(
            providers={"mpesa": read_settings(APP_ENV | {"MOMO_MPESA_PULL_EVERY_MINUTES": "10"})}
        )

        assert "pull-payments" not in celery_config(off)["beat_schedule"]
        scheduled = celery_config(on)["beat_schedule"]["pull-payments"]
        assert scheduled == {"task": "momo.pull_payments", "schedule": 600.0}

    def test_it_is_one_of_the_variables_momo_reads(self) -> None:
        assert "MOMO_MPESA_PULL_EVERY_MINUTES" in variables()


class TestDueSpan:
    NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)

    def _covered(self, runtime: Runtime, ends_at: datetime) -> None:
        with runtime.sessions.begin() as session:
            note_coverage(
                session,
                provider="mpesa",
                source="pull",
                starts_at=ends_at - timedelta(hours=1),
                ends_at=ends_at,
                records=0,
                actor="test",
            )

    def test_the_first_pull_reads_as_far_back_as_daraja_keeps(self, runtime: Runtime) -> None:
        start, end = due_span(runtime, self.NOW)

        assert end == self.NOW
        assert self.NOW - timedelta(hours=48) < start < self.NOW - timedelta(hours=47)

    def test_the_next_starts_a_little_before_where_the_last_ended(self, runtime: Runtime) -> None:
        self._covered(runtime, self.NOW - timedelta(minutes=10))
        self._covered(runtime, self.NOW - timedelta(hours=2))

        assert due_span(runtime, self.NOW) == (self.NOW - timedelta(minutes=25), self.NOW)

    def test_a_last_pull_older_than_48_hours_is_a_warning_naming_the_gap_and_the_fix(
        self, runtime: Runtime, caplog: pytest.LogCaptureFixture
    ) -> None:
        self._covered(runtime, self.NOW - timedelta(hours=72))

        start, _ = due_span(runtime, self.NOW)

        assert start > self.NOW - timedelta(hours=48)
        (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
        assert "more than 48 hours ago" in warning.getMessage()
        assert "momo mpesa import-statement" in warning.getMessage()
        assert (self.NOW - timedelta(hours=72)).isoformat() in warning.getMessage()


class TestTheEmbeddedWorker:
    def test_momo_serves_own_worker_pulls_when_it_is_set_and_credits_a_lost_payment(
        self, tmp_path: Path, daraja: DarajaFake
    ) -> None:
        daraja.pull_registered = True
        app = DarajaApp(CONSUMER_KEY, CONSUMER_SECRET, SHORTCODE, api_base=daraja.base_url)
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN, app=app, pull_every_minutes=60),
            instance_path=tmp_path / "instance",
            sweep_interval_seconds=1,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        runtime = build_runtime(settings)
        add_customer(runtime, "ACC-9", ["0712000009"])
        daraja.pay_bill("75", "254712000009", "ACC-9", deliver=False)
        worker = embedded_worker(runtime)
        try:
            worker.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not _credited(runtime, "ACC-9"):
                time.sleep(0.2)
            time.sleep(1.5)  # further idle ticks within the hour pull nothing more
        finally:
            worker.close()
            runtime.close()

        assert _credited(runtime, "ACC-9") == 7500
        assert len(daraja.calls(PULL_QUERY)) == 2  # one pull: a page, then "no more"


def _credited(runtime: Runtime, account: str) -> int:
    with runtime.sessions.begin() as session:
        customer = get_customer(session, account)
        return customer.balance_minor
