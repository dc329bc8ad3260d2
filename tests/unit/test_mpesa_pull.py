"""Pull Transactions: sorting Daraja's records, the adapter's reading of one, the windows a
span is pulled in and the pages of an answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.providers import ParseContext
from ingest.providers.mpesa import MpesaAdapter
from ingest.providers.mpesa_pull import (
    PULL,
    Entry,
    Malformed,
    Skipped,
    TooOld,
    page_records,
    sort_record,
    windows,
)
from ingest.providers.outbound import NoAnswer
from matcher.notifications import InvalidCallback, PaymentNotification

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
            ({"transactiontype": "c2b-pay-bill-credit"}, "not_a_payment"),
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
