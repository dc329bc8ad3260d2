"""M-PESA adapter: Daraja bodies in, frozen momo values (or InvalidCallback) out."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.providers import ParseContext
from ingest.providers import ADAPTERS
from ingest.providers.mpesa import MpesaAdapter, parse_amount, parse_local_time
from matcher.notifications import (
    FailedAttempt,
    InvalidCallback,
    Msisdn,
    Notice,
    PaymentNotification,
    ValidationRequest,
)
from tests.conftest import samples_dir

SAMPLES = samples_dir()
CTX = ParseContext()
NAIROBI = ZoneInfo("Africa/Nairobi")
ADAPTER = MpesaAdapter()


def sample_bytes(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.fail(f"sample {path} not found; set MOMO_SAMPLES_DIR to the mpesa samples folder")
    return path.read_bytes()


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sample_bytes(name))
    return loaded


def encode(doc: object) -> bytes:
    """``doc`` as JSON, with each Decimal written as a JSON number of exactly its digits.

    json cannot write a Decimal, and a float would lose the point of the test (Daraja
    writes 20.00, which must reach the parser as the text "20.00").
    """
    text = json.dumps(doc, default=_decimal_marker)
    return re.sub(r'"__decimal__([^"]*)__"', r"\1", text).encode()


def _decimal_marker(value: object) -> str:
    if isinstance(value, Decimal):
        return f"__decimal__{value}__"
    raise TypeError(f"cannot encode {value!r}")


def parse(kind: str, doc: object) -> Any:
    return ADAPTER.parse(kind, encode(doc), CTX)


def parse_raw(kind: str, body: bytes) -> Any:
    return ADAPTER.parse(kind, body, CTX)


def confirmation(**changes: object) -> dict[str, Any]:
    """The plain paybill sample with some keys replaced (or removed, given ``...``)."""
    doc = sample("c2b_confirmation_paybill_plain.json")
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def stk_success() -> dict[str, Any]:
    return sample("stk_callback_success.json")


def stk_callback(doc: dict[str, Any]) -> dict[str, Any]:
    callback: dict[str, Any] = doc["Body"]["stkCallback"]
    return callback


def stk_items(doc: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stk_callback(doc)["CallbackMetadata"]["Item"]
    return items


def raises_invalid(reason: str, *fragments: str) -> Callable[[Callable[[], object]], None]:
    def check(call: Callable[[], object]) -> None:
        with pytest.raises(InvalidCallback) as info:
            call()
        assert info.value.reason == reason, info.value.message
        for fragment in fragments:
            assert fragment in info.value.message
        assert str(info.value) == info.value.message

    return check


# --- the shared samples -------------------------------------------------------------------

KNOWN_SAMPLES = {
    "c2b_confirmation_paybill_plain.json",
    "c2b_confirmation_hashed_msisdn.json",
    "c2b_confirmation_masked_msisdn.json",
    "c2b_confirmation_buy_goods.json",
    "c2b_validation.json",
    "stk_callback_success.json",
    "stk_callback_cancelled.json",
}


class TestSamples:
    def test_every_sample_in_the_folder_has_an_expectation_here(self) -> None:
        assert SAMPLES.is_dir(), f"{SAMPLES} not found; set MOMO_SAMPLES_DIR"
        on_disk = {path.name for path in SAMPLES.glob("*.json")}
        assert on_disk == KNOWN_SAMPLES

    def test_paybill_sample_is_a_payment_in_minor_units_at_utc(self) -> None:
        body = sample_bytes("c2b_confirmation_paybill_plain.json")
        result = ADAPTER.parse("c2b/confirmation", body, CTX)
        assert isinstance(result, PaymentNotification)
        assert result == PaymentNotification(
            provider="mpesa",
            channel="c2b",
            code="TKQ4A91B2C",
            amount=150000,
            currency="KES",
            paid_at=datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC),
            msisdn=result.msisdn,
            payer_name="WANJIKU A KAMAU",
            account_reference="ACC1042",
            business_short_code="4130669",
            transaction_type="Pay Bill",
        )
        assert result.paid_at.isoformat() == "2025-11-03T11:30:15+00:00"
        assert result.msisdn.kind == "phone"
        assert result.msisdn.e164 == "+254712345678"
        assert result.msisdn.raw == "254712345678"

    def test_hashed_msisdn_sample_keeps_the_providers_digest(self) -> None:
        body = sample_bytes("c2b_confirmation_hashed_msisdn.json")
        result = ADAPTER.parse("c2b/confirmation", body, CTX)
        assert isinstance(result, PaymentNotification)
        assert result.amount == 25000
        assert result.msisdn.kind == "hashed"
        assert result.msisdn.e164 is None
        assert result.msisdn.sha256 == (
            "8556a495c390f3ba95d2bdf6d06436f2fd09f516531f0a7cd9591c60812fa46d"
        )
        assert result.payer_name == "OTIENO"
        assert result.account_reference == ""

    def test_masked_msisdn_sample_is_never_a_phone_and_keeps_the_typed_account(self) -> None:
        body = sample_bytes("c2b_confirmation_masked_msisdn.json")
        result = ADAPTER.parse("c2b/confirmation", body, CTX)
        assert isinstance(result, PaymentNotification)
        assert result.amount == 5000
        assert result.msisdn.kind == "masked"
        assert result.msisdn.e164 is None
        assert result.msisdn.raw == "2547 ***** 678"
        # Matching trims and ignores case; the adapter keeps what the payer typed.
        assert result.account_reference == " acc1042 "
        assert result.account_reference.strip().upper() == "ACC1042"
        assert result.payer_name == "WANJIKU"

    def test_buy_goods_sample_reads_an_01x_number_as_a_kenyan_phone(self) -> None:
        body = sample_bytes("c2b_confirmation_buy_goods.json")
        result = ADAPTER.parse("c2b/confirmation", body, CTX)
        assert isinstance(result, PaymentNotification)
        assert result.msisdn.kind == "phone"
        assert result.msisdn.e164 == "+254110123456"
        assert result.amount == 10000
        assert result.account_reference == ""
        assert result.transaction_type == "Buy Goods"
        assert result.business_short_code == "5123456"
        assert result.paid_at == datetime(2025, 11, 6, 3, 45, 10, tzinfo=UTC)

    def test_validation_sample_is_a_validation_request(self) -> None:
        body = sample_bytes("c2b_validation.json")
        result = ADAPTER.parse("c2b/validation", body, CTX)
        assert isinstance(result, ValidationRequest)
        assert result.provider == "mpesa"
        assert result.code == "TKU1H8K4WS"
        assert result.amount == 30000
        assert result.currency == "KES"
        assert result.account_reference == "NOSUCHACC"
        assert result.business_short_code == "4130669"
        assert result.msisdn.e164 == "+254712345678"

    def test_stk_success_sample_is_a_payment_despite_a_balance_item_without_value(self) -> None:
        body = sample_bytes("stk_callback_success.json")
        result = ADAPTER.parse("stk", body, CTX)
        assert isinstance(result, PaymentNotification)
        assert result.channel == "stk"
        assert result.code == "TKV5C2N8BD"
        assert result.amount == 2000
        assert result.currency == "KES"
        assert result.msisdn.kind == "phone"
        assert result.msisdn.e164 == "+254712345678"
        assert result.msisdn.raw == "254712345678"
        assert result.paid_at == datetime(2025, 11, 8, 6, 15, 22, tzinfo=UTC)
        assert result.payer_name is None
        assert result.account_reference is None
        # the request it answers, so it is credited to that request's customer
        assert (
            result.request_reference == json.loads(body)["Body"]["stkCallback"]["CheckoutRequestID"]
        )

    def test_stk_cancelled_sample_is_a_failed_attempt_not_a_payment(self) -> None:
        body = sample_bytes("stk_callback_cancelled.json")
        result = ADAPTER.parse("stk", body, CTX)
        assert result == FailedAttempt(
            provider="mpesa",
            channel="stk",
            reference="ws_CO_191220191020363926",
            result_code=1032,
            result_desc="Request cancelled by user",
            merchant_reference="29115-34620561-2",
            cancelled=True,
        )


# --- parse_amount -------------------------------------------------------------------------


class TestParseAmount:
    @pytest.mark.parametrize(
        ("value", "minor"),
        [
            ("1500", 150000),
            ("1500.00", 150000),
            ("1500.5", 150050),
            ("0.01", 1),
            (" 250 ", 25000),
            ("1500.000", 150000),  # exact: trailing zeros add no precision
            (1500, 150000),
            (Decimal("20.00"), 2000),
            (Decimal("20.5"), 2050),
            (Decimal("1E+3"), 100000),  # the JSON number 1e3 is exactly 1000
            ("1000000000.00", 100000000000),
        ],
    )
    def test_accepted_amounts_become_exact_minor_units(self, value: object, minor: int) -> None:
        assert parse_amount(value) == minor

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("0", "greater than zero"),
            ("0.00", "greater than zero"),
            (0, "greater than zero"),
            ("-5", "plain decimal"),
            (-5, "greater than zero"),
            (Decimal("-0.0"), "greater than zero"),
            ("15.005", "more than two decimal places"),
            (Decimal("15.005"), "more than two decimal places"),
            (Decimal("1E-999999999"), "more than two decimal places"),
            ("abc", "plain decimal"),
            ("", "plain decimal"),
            ("1,500.00", "plain decimal"),
            ("1e3", "plain decimal"),  # exponents inside strings: not Daraja's format
            ("+5", "plain decimal"),
            (".5", "plain decimal"),
            ("5.", "plain decimal"),
            ("NaN", "plain decimal"),
            (
                "\u0661\u0665\u0660\u0660",
                "plain decimal",
            ),  # Arabic-Indic 1500: str.isdigit says yes
            (Decimal("NaN"), "not a finite number"),
            (Decimal("Infinity"), "not a finite number"),
            ("1000000000.01", "more than the maximum"),
            (10**400, "more than the maximum"),
            (Decimal("1E+999999999"), "more than the maximum"),
            (True, "boolean"),
            (False, "boolean"),
            (1500.0, "float"),
            ([1500], "a list"),
            ({"amount": 1}, "an object"),
            (None, "null"),
        ],
    )
    def test_rejected_amounts_raise_invalid_amount_naming_the_problem(
        self, value: object, fragment: str
    ) -> None:
        raises_invalid("invalid_amount", fragment)(lambda: parse_amount(value, "TransAmount"))

    def test_message_names_the_field_and_the_value(self) -> None:
        with pytest.raises(InvalidCallback) as info:
            parse_amount("15.005", "TransAmount")
        assert info.value.message == "TransAmount '15.005' has more than two decimal places"

    def test_huge_values_are_shortened_in_messages(self) -> None:
        with pytest.raises(InvalidCallback) as info:
            parse_amount("9" * 10_000, "TransAmount")
        assert len(info.value.message) < 200

    @given(st.decimals(allow_nan=False, allow_infinity=False))
    @settings(database=None)
    def test_any_decimal_either_converts_exactly_or_is_refused(self, value: Decimal) -> None:
        try:
            minor = parse_amount(value)
        except InvalidCallback as exc:
            assert exc.reason == "invalid_amount"
        else:
            assert Decimal(minor) / 100 == value
            assert 0 < minor <= 100_000_000_000


# --- parse_local_time ---------------------------------------------------------------------


class TestParseLocalTime:
    def test_nairobi_wall_clock_time_becomes_aware_utc(self) -> None:
        result = parse_local_time("20251103143015", NAIROBI)
        assert result == datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)
        assert result.utcoffset() is not None
        assert result.tzinfo == UTC

    def test_json_integer_time_is_read_like_its_digits(self) -> None:
        assert parse_local_time(20251103143015, NAIROBI) == parse_local_time(
            "20251103143015", NAIROBI
        )

    def test_the_zone_comes_from_the_caller(self) -> None:
        result = parse_local_time("20250101000000", ZoneInfo("Africa/Kampala"))
        assert result == datetime(2024, 12, 31, 21, 0, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        "value",
        [
            "2025110314301",  # 13 digits
            2025110314301,  # 13 digits as a number: not zero-padded into year 0202
            "202511031430155",
            "2025-11-03 14:30:15",
            "20251332143015",  # month 13
            "20250230120000",  # 30 February
            "20251103250000",  # hour 25
            "00000101000000",  # year 0
            "00010101000000",  # before UTC can represent it in Nairobi
            "00010102000000",  # a real time, but no payment's
            "19991231235959",  # before any mobile-money payment
            "99991231235959",  # storable, but far in the future
            "",
            -20251103143015,
            True,
            Decimal("20251103143015.0"),
            ["20251103143015"],
            None,
        ],
    )
    def test_anything_but_a_real_yyyymmddhhmmss_time_is_invalid_time(self, value: object) -> None:
        raises_invalid("invalid_time", "TransTime")(lambda: parse_local_time(value, NAIROBI))


# --- C2B confirmation ---------------------------------------------------------------------


class TestC2BConfirmation:
    @pytest.mark.parametrize(
        ("amount", "minor"),
        [("1500", 150000), ("1500.00", 150000), (1500, 150000), (Decimal("20.00"), 2000)],
    )
    def test_trans_amount_is_read_from_strings_and_json_numbers(
        self, amount: object, minor: int
    ) -> None:
        assert parse("c2b/confirmation", confirmation(TransAmount=amount)).amount == minor

    def test_json_fraction_is_decoded_without_touching_a_float(self) -> None:
        body = json.dumps(confirmation()).replace('"1500.00"', "0.30").encode()
        assert parse_raw("c2b/confirmation", body).amount == 30

    def test_json_exponent_number_is_taken_at_its_exact_value(self) -> None:
        body = json.dumps(confirmation()).replace('"1500.00"', "1e3").encode()
        assert parse_raw("c2b/confirmation", body).amount == 100000

    @pytest.mark.parametrize(
        "amount", ["0", "-5", "15.005", "abc", "1e3", "1,500.00", [1500], True, False, {}]
    )
    def test_bad_trans_amount_is_invalid_amount(self, amount: object) -> None:
        raises_invalid("invalid_amount", "TransAmount")(
            lambda: parse("c2b/confirmation", confirmation(TransAmount=amount))
        )

    def test_missing_middle_and_last_name_leave_only_the_first(self) -> None:
        doc = confirmation(MiddleName=..., LastName=...)
        assert parse("c2b/confirmation", doc).payer_name == "WANJIKU"

    def test_empty_and_blank_name_parts_are_skipped_without_double_spaces(self) -> None:
        doc = confirmation(MiddleName="", LastName="  KAMAU ")
        assert parse("c2b/confirmation", doc).payer_name == "WANJIKU KAMAU"

    def test_no_name_at_all_is_none(self) -> None:
        doc = confirmation(FirstName=..., MiddleName=None, LastName="")
        assert parse("c2b/confirmation", doc).payer_name is None

    def test_unknown_keys_are_ignored(self) -> None:
        doc = confirmation(SomethingNew={"nested": [1, 2]}, Extra=None)
        assert parse("c2b/confirmation", doc) == parse("c2b/confirmation", confirmation())

    def test_trans_time_may_be_a_json_number(self) -> None:
        result = parse("c2b/confirmation", confirmation(TransTime=20251103143015))
        assert result.paid_at == datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)

    @pytest.mark.parametrize("trans_time", ["20251103", "yesterday", "20251303143015", [], 1.5])
    def test_bad_trans_time_is_invalid_time(self, trans_time: object) -> None:
        raises_invalid("invalid_time", "TransTime")(
            lambda: parse("c2b/confirmation", confirmation(TransTime=trans_time))
        )

    def test_trans_id_is_stripped_and_upper_cased(self) -> None:
        assert parse("c2b/confirmation", confirmation(TransID=" tkq4a91b2c ")).code == "TKQ4A91B2C"

    @pytest.mark.parametrize(
        "trans_id",
        [
            "",
            "   ",
            "TKQ-4A91",
            "A" * 33,
            "\u017fTRASSE",  # long s upper-cases to an ASCII S
            "stra\u00dfe",  # sharp s upper-cases to SS
            12345,
            ["TKQ"],
        ],
    )
    def test_trans_id_that_is_not_1_to_32_ascii_letters_and_digits_is_invalid_code(
        self, trans_id: object
    ) -> None:
        raises_invalid("invalid_code", "TransID")(
            lambda: parse("c2b/confirmation", confirmation(TransID=trans_id))
        )

    @pytest.mark.parametrize("field", ["TransID", "TransAmount", "TransTime"])
    def test_missing_required_field_is_missing_field_naming_it(self, field: str) -> None:
        raises_invalid("missing_field", field)(
            lambda: parse("c2b/confirmation", confirmation(**{field: ...}))
        )

    def test_null_required_field_counts_as_missing(self) -> None:
        raises_invalid("missing_field", "TransID")(
            lambda: parse("c2b/confirmation", confirmation(TransID=None))
        )

    def test_missing_msisdn_is_a_payment_with_a_missing_number(self) -> None:
        result = parse("c2b/confirmation", confirmation(MSISDN=...))
        assert result.msisdn == Msisdn(raw=None, kind="missing")
        assert result.amount == 150000

    def test_msisdn_may_be_a_json_number(self) -> None:
        result = parse("c2b/confirmation", confirmation(MSISDN=254712345678))
        assert result.msisdn.e164 == "+254712345678"
        assert result.msisdn.raw == "254712345678"

    def test_unreadable_msisdn_text_is_still_a_payment_with_an_invalid_number(self) -> None:
        result = parse("c2b/confirmation", confirmation(MSISDN="not a phone"))
        assert result.msisdn.kind == "invalid"
        assert result.amount == 150000

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("MSISDN", [254712345678]),
            ("MSISDN", True),
            ("FirstName", 7),
            ("BillRefNumber", ["ACC1042"]),
            ("BusinessShortCode", {"code": 1}),
            ("TransactionType", 1),
        ],
    )
    def test_optional_field_of_the_wrong_json_type_is_invalid_field(
        self, field: str, value: object
    ) -> None:
        raises_invalid("invalid_field", field)(
            lambda: parse("c2b/confirmation", confirmation(**{field: value}))
        )

    def test_short_code_and_account_sent_as_numbers_become_their_digits(self) -> None:
        result = parse("c2b/confirmation", confirmation(BusinessShortCode=600995, BillRefNumber=42))
        assert result.business_short_code == "600995"
        assert result.account_reference == "42"

    def test_missing_account_reference_is_none(self) -> None:
        assert parse("c2b/confirmation", confirmation(BillRefNumber=...)).account_reference is None

    def test_currency_comes_from_the_context(self) -> None:
        ctx = ParseContext(currency="TZS")
        result = ADAPTER.parse("c2b/confirmation", encode(confirmation()), ctx)
        assert isinstance(result, PaymentNotification)
        assert result.currency == "TZS"


# --- C2B validation -----------------------------------------------------------------------


class TestC2BValidation:
    def test_empty_trans_id_is_allowed_in_validation(self) -> None:
        doc = sample("c2b_validation.json") | {"TransID": ""}
        assert parse("c2b/validation", doc).code == ""

    def test_trans_time_is_not_needed_for_validation(self) -> None:
        doc = sample("c2b_validation.json")
        del doc["TransTime"]
        assert isinstance(parse("c2b/validation", doc), ValidationRequest)

    def test_bad_amount_is_refused_in_validation_too(self) -> None:
        doc = sample("c2b_validation.json") | {"TransAmount": "15.005"}
        raises_invalid("invalid_amount", "'15.005'")(lambda: parse("c2b/validation", doc))

    def test_missing_trans_amount_is_missing_field(self) -> None:
        doc = sample("c2b_validation.json")
        del doc["TransAmount"]
        raises_invalid("missing_field", "TransAmount")(lambda: parse("c2b/validation", doc))


# --- STK push -----------------------------------------------------------------------------


class TestStk:
    def test_metadata_items_are_found_by_name_in_any_order(self) -> None:
        doc = stk_success()
        stk_items(doc).reverse()
        assert parse("stk", doc) == parse("stk", stk_success())

    def test_result_code_zero_as_a_string_is_success(self) -> None:
        doc = stk_success()
        stk_callback(doc)["ResultCode"] = "0"
        assert isinstance(parse("stk", doc), PaymentNotification)

    def test_result_code_as_a_numeric_string_is_a_failed_attempt(self) -> None:
        doc = sample("stk_callback_cancelled.json")
        stk_callback(doc)["ResultCode"] = "1032"
        assert parse("stk", doc).result_code == 1032

    @pytest.mark.parametrize("code", ["zero", "", True, 0.0, [0]])
    def test_result_code_that_is_not_an_integer_is_invalid_field(self, code: object) -> None:
        doc = stk_success()
        stk_callback(doc)["ResultCode"] = code
        raises_invalid("invalid_field", "ResultCode")(lambda: parse("stk", doc))

    def test_transaction_date_may_be_a_string(self) -> None:
        doc = stk_success()
        for item in stk_items(doc):
            if item["Name"] == "TransactionDate":
                item["Value"] = "20251108091522"
        assert parse("stk", doc).paid_at == datetime(2025, 11, 8, 6, 15, 22, tzinfo=UTC)

    @pytest.mark.parametrize("name", ["Amount", "MpesaReceiptNumber", "TransactionDate"])
    def test_missing_required_metadata_item_is_missing_field(self, name: str) -> None:
        doc = stk_success()
        stk_callback(doc)["CallbackMetadata"]["Item"] = [
            item for item in stk_items(doc) if item["Name"] != name
        ]
        raises_invalid("missing_field", name)(lambda: parse("stk", doc))

    def test_required_metadata_item_without_a_value_is_missing_field(self) -> None:
        doc = stk_success()
        for item in stk_items(doc):
            if item["Name"] == "Amount":
                del item["Value"]
        raises_invalid("missing_field", "Amount")(lambda: parse("stk", doc))

    def test_missing_phone_item_is_a_payment_with_a_missing_number(self) -> None:
        doc = stk_success()
        stk_callback(doc)["CallbackMetadata"]["Item"] = [
            item for item in stk_items(doc) if item["Name"] != "PhoneNumber"
        ]
        assert parse("stk", doc).msisdn.kind == "missing"

    def test_a_repeated_metadata_item_is_ambiguous_and_refused(self) -> None:
        doc = stk_success()
        stk_items(doc).append({"Name": "Amount", "Value": 2000})
        raises_invalid("invalid_field", "Amount")(lambda: parse("stk", doc))

    def test_success_without_callback_metadata_is_missing_field(self) -> None:
        doc = stk_success()
        del stk_callback(doc)["CallbackMetadata"]
        raises_invalid("missing_field", "CallbackMetadata")(lambda: parse("stk", doc))

    def test_receipt_number_is_upper_cased_like_a_c2b_code(self) -> None:
        doc = stk_success()
        for item in stk_items(doc):
            if item["Name"] == "MpesaReceiptNumber":
                item["Value"] = "tkv5c2n8bd"
        assert parse("stk", doc).code == "TKV5C2N8BD"

    @pytest.mark.parametrize(
        ("doc", "reason", "fragment"),
        [
            ({}, "missing_field", "Body"),
            ({"Body": {}}, "missing_field", "stkCallback"),
            ({"Body": []}, "invalid_field", "Body"),
            ({"Body": {"stkCallback": "x"}}, "invalid_field", "stkCallback"),
            ({"Body": {"stkCallback": {"ResultCode": 1032}}}, "missing_field", "CheckoutRequestID"),
            (
                {"Body": {"stkCallback": {"ResultCode": 1, "CheckoutRequestID": " "}}},
                "invalid_field",
                "CheckoutRequestID",
            ),
            (
                {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1"}}},
                "missing_field",
                "ResultCode",
            ),
        ],
    )
    def test_body_without_the_stk_envelope_is_invalid(
        self, doc: dict[str, Any], reason: str, fragment: str
    ) -> None:
        raises_invalid(reason, fragment)(lambda: parse("stk", doc))

    def test_failure_without_description_or_merchant_id_still_records_the_attempt(self) -> None:
        doc = {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 1}}}
        assert parse("stk", doc) == FailedAttempt(
            provider="mpesa", channel="stk", reference="ws_CO_1", result_code=1, result_desc=""
        )


# --- decoding and the protocol ------------------------------------------------------------


class TestDecoding:
    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"{",
            b"not json",
            b"\xff\xfe{}",
            b'{"TransAmount": NaN}',
            b'{"TransAmount": Infinity}',
            b'{"TransAmount": "1", "TransAmount": "1000"}',
            b"[" * 100_000,
            b'{"TransAmount": 1e99999999999999999999}',
            b'{"TransAmount": ' + b"1" * 5000 + b"}",
        ],
    )
    def test_undecodable_body_is_invalid_json(self, body: bytes) -> None:
        raises_invalid("invalid_json")(lambda: parse_raw("c2b/confirmation", body))

    @pytest.mark.parametrize("body", [b"[]", b'"text"', b"1500", b"null", b"true"])
    @pytest.mark.parametrize("kind", ["c2b/confirmation", "c2b/validation", "stk"])
    def test_json_that_is_not_an_object_is_not_an_object(self, body: bytes, kind: str) -> None:
        raises_invalid("not_an_object")(lambda: parse_raw(kind, body))

    def test_unknown_kind_is_refused_before_reading_the_body(self) -> None:
        raises_invalid("unknown_kind", "b2c/result")(lambda: parse_raw("b2c/result", b"garbage"))


class TestAdapterProtocol:
    def test_adapter_is_registered_under_its_name(self) -> None:
        assert isinstance(ADAPTERS["mpesa"], MpesaAdapter)
        assert ADAPTERS["mpesa"].name == "mpesa"
        assert ADAPTERS["mpesa"].kinds == {
            "c2b/confirmation",
            "c2b/validation",
            "stk",
            "pull",
            "status/result",
            "status/timeout",
            "reversal/result",
            "reversal/timeout",
        }

    @pytest.mark.parametrize("kind", ["c2b/confirmation", "c2b/validation", "stk"])
    def test_acknowledge_is_darajas_accepted_body(self, kind: str) -> None:
        assert ADAPTER.acknowledge(kind) == {"ResultCode": 0, "ResultDesc": "Accepted"}

    def test_acknowledgement_is_a_fresh_dict_each_time(self) -> None:
        ADAPTER.acknowledge("stk")["ResultCode"] = 1
        assert ADAPTER.acknowledge("stk")["ResultCode"] == 0

    def test_validation_reply_accepts_with_a_string_zero(self) -> None:
        assert ADAPTER.validation_reply(True) == {"ResultCode": "0", "ResultDesc": "Accepted"}

    def test_validation_reply_rejects_as_invalid_account_number(self) -> None:
        assert ADAPTER.validation_reply(False) == {
            "ResultCode": "C2B00012",
            "ResultDesc": "Rejected",
        }


# --- robustness ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "0", "1500.00", "20251103143015", "254712345678", "TKQ4A91B2C"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)


def mutate(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one random change somewhere in it: a key dropped or added, or a
    value replaced by random JSON."""
    # Mostly descend: a change deep inside is likelier to get past the first checks.
    if isinstance(value, dict) and value and draw(st.integers(0, 3)) > 0:
        key = draw(st.sampled_from(sorted(value)))
        return value | {key: mutate(draw, value[key])}
    if isinstance(value, list) and value and draw(st.integers(0, 3)) > 0:
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], mutate(draw, value[index]), *value[index + 1 :]]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if isinstance(value, dict) and value and action == "drop":
        key = draw(st.sampled_from(sorted(value)))
        return {k: v for k, v in value.items() if k != key}
    if isinstance(value, dict) and action == "add":
        return value | {draw(st.text(max_size=10)): draw(json_values)}
    return draw(json_values)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    kind, name = draw(
        st.sampled_from(
            [
                ("c2b/confirmation", "c2b_confirmation_paybill_plain.json"),
                ("c2b/confirmation", "c2b_confirmation_masked_msisdn.json"),
                ("c2b/validation", "c2b_validation.json"),
                ("stk", "stk_callback_success.json"),
                ("stk", "stk_callback_cancelled.json"),
            ]
        )
    )
    doc: Any = sample(name)
    for _ in range(draw(st.integers(1, 3))):
        doc = mutate(draw, doc)
    return kind, json.dumps(doc).encode()


class TestRobustness:
    @given(mutated_bodies())
    @settings(database=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    def test_mutated_bodies_parse_or_raise_invalid_callback_and_nothing_else(
        self, case: tuple[str, bytes]
    ) -> None:
        kind, body = case
        try:
            result = ADAPTER.parse(kind, body, CTX)
        except InvalidCallback as exc:
            assert exc.reason
            assert exc.message
        else:
            assert isinstance(
                result, PaymentNotification | ValidationRequest | FailedAttempt | Notice
            )
            if not isinstance(result, FailedAttempt | Notice):
                assert result.amount > 0

    @given(st.sampled_from(sorted(MpesaAdapter.kinds)), st.binary(max_size=200))
    @settings(database=None)
    def test_arbitrary_bytes_parse_or_raise_invalid_callback(self, kind: str, body: bytes) -> None:
        with contextlib.suppress(InvalidCallback):
            ADAPTER.parse(kind, body, CTX)


class TestShapeOnly:
    """The webhook's cheaper question: is this the provider's shape? (numbers unclassified)"""

    def test_every_sample_has_the_same_shape_verdict_and_identity_as_a_full_parse(self) -> None:
        full, shape = ParseContext(), ParseContext(shape_only=True)
        for path in sorted(SAMPLES.glob("*.json")):
            kind = (
                "stk"
                if path.name.startswith("stk")
                else ("c2b/validation" if "validation" in path.name else "c2b/confirmation")
            )
            a = ADAPTERS["mpesa"].parse(kind, path.read_bytes(), full)
            b = ADAPTERS["mpesa"].parse(kind, path.read_bytes(), shape)
            assert type(a) is type(b)
            assert getattr(a, "code", None) == getattr(b, "code", None)
            assert getattr(a, "amount", None) == getattr(b, "amount", None)

    def test_a_number_of_the_wrong_type_is_still_refused(self) -> None:
        body = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
        body["MSISDN"] = ["254712345678"]
        with pytest.raises(InvalidCallback):
            ADAPTERS["mpesa"].parse(
                "c2b/confirmation", json.dumps(body).encode(), ParseContext(shape_only=True)
            )

    @given(mutated_bodies(), st.sampled_from(["\x00", "\ud800", "x" * 300, "\udfff" * 3]))
    @settings(database=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    def test_the_shape_check_and_the_full_parse_agree_on_every_body(
        self, case: tuple[str, bytes], text: str
    ) -> None:
        """What the webhook acknowledges the worker can parse, and what it refuses the worker
        refuses for the same reason: one function decides for both."""
        kind, body = case
        doc = json.loads(body)
        if isinstance(doc, dict):  # hostile text in every field the body has at the top
            field = sorted(doc)[len(body) % len(doc)] if doc else "BillRefNumber"
            doc[field] = text
        body = json.dumps(doc).encode()
        verdicts = []
        for ctx in (ParseContext(shape_only=True), ParseContext()):
            try:
                result = ADAPTER.parse(kind, body, ctx)
            except InvalidCallback as exc:
                verdicts.append(("refused", exc.reason))
            else:
                verdicts.append((type(result).__name__, getattr(result, "code", None)))
        assert verdicts[0] == verdicts[1]


class TestUnstorableText:
    """Text no column can hold: the identity of a callback must be whole, the rest is kept
    as the column can hold it by the worker, so the parse accepts it."""

    @pytest.mark.parametrize(
        "reference",
        ["ws_CO_" + "1" * 123, "ws_CO_1\x00", "ws_CO_1\ud800", "ws CO 1", "ws_CO_1é", ""],
    )
    def test_an_stk_request_id_that_cannot_be_kept_whole_is_invalid_field(
        self, reference: str
    ) -> None:
        doc = {"Body": {"stkCallback": {"CheckoutRequestID": reference, "ResultCode": 1}}}
        raises_invalid("invalid_field", "CheckoutRequestID")(lambda: parse("stk", doc))

    def test_an_stk_request_id_of_128_printable_characters_is_kept(self) -> None:
        reference = "ws_CO_" + "1" * 122
        doc = {"Body": {"stkCallback": {"CheckoutRequestID": f" {reference} ", "ResultCode": 1}}}
        result = parse("stk", doc)
        assert isinstance(result, FailedAttempt)
        assert result.reference == reference

    @pytest.mark.parametrize("text", ["\x00", "\ud800", "A" * 5000])
    @pytest.mark.parametrize(
        "field", ["BillRefNumber", "MSISDN", "FirstName", "TransactionType", "BusinessShortCode"]
    )
    def test_free_text_of_a_confirmation_is_accepted_as_sent(self, field: str, text: str) -> None:
        doc = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
        doc[field] = text
        assert isinstance(parse("c2b/confirmation", doc), PaymentNotification)

    @pytest.mark.parametrize("value", [{"x": "\ud800"}, ["\udfff\x00"], "\ud800" * 3])
    def test_a_refusal_message_holds_no_character_the_database_refuses(self, value: Any) -> None:
        doc = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
        doc["TransID"] = value
        with pytest.raises(InvalidCallback) as caught:
            parse("c2b/confirmation", doc)
        assert not re.search("[\x00\ud800-\udfff]", caught.value.message)
