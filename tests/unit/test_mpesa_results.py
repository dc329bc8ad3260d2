"""Transaction Status and Reversal results: every shape Daraja posts to a ResultURL read
into momo's values, and bodies that are not its shape refused with a reason."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from core.config import ConfigError, Settings
from core.providers import ParseContext
from ingest.providers.mpesa import (
    REVERSAL_RESULT,
    REVERSAL_TIMEOUT,
    STATUS_RESULT,
    STATUS_TIMEOUT,
    MpesaAdapter,
    daraja_url_problem,
    read_settings,
    with_settings,
)
from ingest.providers.mpesa_initiator import Initiator, reversal_body, status_body
from ingest.providers.mpesa_statement import Entry, Skipped, read_statement
from matcher.notifications import InvalidCallback, LookupResult, ReversalResult
from tests.unit.test_mpesa import encode

CTX = ParseContext()
ADAPTER = MpesaAdapter()

#: Safaricom's Transaction Status result, as its page shows it, for a C2B payment
STATUS_FOUND: dict[str, Any] = {
    "Result": {
        "ConversationID": "AG_20180223_0000493344ae97d86f75",
        "OriginatorConversationID": "3213-416199-2",
        "ReferenceData": {"ReferenceItem": {"Key": "Occasion"}},
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "ResultParameters": {
            "ResultParameter": [
                {"Key": "DebitPartyName", "Value": "254708374149 - John Doe"},
                {"Key": "CreditPartyName", "Value": "600310 - Safaricom333"},
                {"Key": "OriginatorConversationID", "Value": "3211-416020-3"},
                {"Key": "InitiatedTime", "Value": "20180223054112"},
                {"Key": "DebitAccountType", "Value": "Utility Account"},
                {"Key": "TransactionReason"},
                {"Key": "ReasonType", "Value": "Pay Bill Online"},
                {"Key": "TransactionStatus", "Value": "Completed"},
                {"Key": "FinalisedTime", "Value": "20180223054112"},
                {"Key": "Amount", "Value": "300"},
                {"Key": "ConversationID", "Value": "AG_20180223_000041b09c22e613d6c9"},
                {"Key": "ReceiptNo", "Value": "MBN31H462N"},
            ]
        },
        "ResultType": 0,
        "TransactionID": "MBN0000000",
    }
}

#: Safaricom's Reversal result, as its page shows it (Amount and time as JSON numbers)
REVERSED: dict[str, Any] = {
    "Result": {
        "ResultType": 0,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "dad6-4c34-8787-c8cb963a496d1268232",
        "ConversationID": "AG_20211114_201018edbbf9f1582eaa",
        "TransactionID": "SKE52PAWR9",
        "ResultParameters": {
            "ResultParameter": [
                {
                    "Key": "DebitAccountBalance",
                    "Value": "Utility Account|KES|7722179.62|7722179.62|0.00|0.00",
                },
                {"Key": "Amount", "Value": Decimal("1.00")},
                {"Key": "TransCompletedTime", "Value": 20211114132711},
                {"Key": "OriginalTransactionID", "Value": "SKC82PACB8"},
                {"Key": "Charge", "Value": Decimal("0.00")},
                {"Key": "CreditPartyPublicName", "Value": "254705912645 - NICHOLAS JOHN SONGOK"},
                {"Key": "DebitPartyPublicName", "Value": "600992 - Safaricom Daraja 992"},
            ]
        },
        "ReferenceData": {
            "ReferenceItem": {
                "Key": "QueueTimeoutURL",
                "Value": "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit",
            }
        },
    }
}

REVERSAL_INVALID: dict[str, Any] = {
    "Result": {
        "ResultType": 0,
        "ResultCode": "R000002",
        "ResultDesc": "The OriginalTransactionID is invalid.",
        "OriginatorConversationID": "3124-481d-b706-10bdd6fbc8e21792398",
        "ConversationID": "AG_20211114_2010573069aefb6b625a",
        "TransactionID": "SKE0000000",
    }
}


def parse(kind: str, doc: Any) -> Any:
    return ADAPTER.parse(kind, encode(doc), CTX)


def with_result(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            doc["Result"].pop(key, None)
        else:
            doc["Result"][key] = value
    return doc


def with_parameters(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    items = doc["Result"]["ResultParameters"]["ResultParameter"]
    for key, value in changes.items():
        items[:] = [i for i in items if i["Key"] != key]
        if value is not None:
            items.append({"Key": key, "Value": value})
    return doc


# --- Transaction Status -------------------------------------------------------------------


class TestStatusResult:
    def test_a_found_payment_is_a_lookup_payment_from_the_debit_party(self) -> None:
        result = parse(STATUS_RESULT, STATUS_FOUND)

        assert isinstance(result, LookupResult)
        assert result.state == "found"
        assert (result.conversation_id, result.originator_id) == (
            "AG_20180223_0000493344ae97d86f75",
            "3213-416199-2",
        )
        payment = result.payment
        assert payment is not None
        assert (payment.code, payment.amount, payment.channel, payment.source) == (
            "MBN31H462N",
            30000,
            "lookup",
            "lookup",
        )
        assert payment.msisdn.e164 == "+254708374149"
        assert payment.payer_name == "John Doe"
        assert payment.paid_at == datetime(2018, 2, 23, 2, 41, 12, tzinfo=UTC)

    def test_the_payer_is_the_party_named_by_a_phone_number(self) -> None:
        doc = copy.deepcopy(STATUS_FOUND)
        items = doc["Result"]["ResultParameters"]["ResultParameter"]
        items.insert(0, {"Key": "DebitPartyName", "Value": "600310 - Safaricom333"})

        result = parse(STATUS_RESULT, doc)

        assert result.payment.msisdn.e164 == "+254708374149"

    def test_without_finalised_time_the_initiated_time_is_when_it_was_paid(self) -> None:
        doc = with_parameters(STATUS_FOUND, FinalisedTime=None, InitiatedTime="20240102030405")

        result = parse(STATUS_RESULT, doc)

        assert result.payment.paid_at == datetime(2024, 1, 2, 0, 4, 5, tzinfo=UTC)

    def test_a_single_parameter_object_is_read_as_a_list_of_one(self) -> None:
        doc = with_result(
            STATUS_FOUND,
            ResultCode=0,
            ResultParameters={"ResultParameter": {"Key": "TransactionStatus", "Value": "Declined"}},
        )

        result = parse(STATUS_RESULT, doc)

        assert (result.state, result.payment) == ("not_found", None)
        assert "Declined" in result.result_description

    def test_an_unknown_receipt_ends_not_found(self) -> None:
        doc = with_result(
            STATUS_FOUND,
            ResultCode="R000002",
            ResultDesc="The transaction receipt number does not exist.",
            ResultParameters=None,
        )

        result = parse(STATUS_RESULT, doc)

        assert (result.state, result.result_code, result.payment) == ("not_found", "R000002", None)

    def test_a_wrong_initiator_ends_failed_with_its_words(self) -> None:
        doc = with_result(
            STATUS_FOUND,
            ResultCode=2001,
            ResultDesc="The initiator information is invalid.",
            ResultParameters=None,
        )

        result = parse(STATUS_RESULT, doc)

        assert (result.state, result.result_code) == ("failed", "2001")
        assert result.result_description == "The initiator information is invalid."

    def test_a_timeout_ends_timed_out(self) -> None:
        doc = with_result(STATUS_FOUND, ResultCode=None, ResultParameters=None, ResultDesc=None)

        result = parse(STATUS_TIMEOUT, doc)

        assert isinstance(result, LookupResult)
        assert (result.state, result.result_code) == ("timed_out", "timeout")
        assert "gave up" in result.result_description


# --- Reversal -----------------------------------------------------------------------------


class TestReversalResult:
    def test_a_reversal_names_the_payment_its_receipt_amount_and_time(self) -> None:
        result = parse(REVERSAL_RESULT, REVERSED)

        assert isinstance(result, ReversalResult)
        assert result.state == "reversed"
        assert (result.original_code, result.receipt, result.amount) == (
            "SKC82PACB8",
            "SKE52PAWR9",
            100,
        )
        assert result.reversed_at == datetime(2021, 11, 14, 10, 27, 11, tzinfo=UTC)
        assert result.conversation_id == "AG_20211114_201018edbbf9f1582eaa"
        assert result.source == "callback"

    def test_an_invalid_original_transaction_fails(self) -> None:
        result = parse(REVERSAL_RESULT, REVERSAL_INVALID)

        assert (result.state, result.result_code) == ("failed", "R000002")

    def test_already_reversed_is_reversed_without_a_receipt(self) -> None:
        doc = with_result(
            REVERSAL_INVALID,
            ResultCode="R000001",
            ResultDesc="The transaction has already been reversed",
        )

        result = parse(REVERSAL_RESULT, doc)

        assert (result.state, result.receipt) == ("reversed", None)

    def test_a_timeout_ends_timed_out(self) -> None:
        result = parse(REVERSAL_TIMEOUT, with_result(REVERSAL_INVALID, ResultCode=None))

        assert isinstance(result, ReversalResult)
        assert result.state == "timed_out"


# --- refused bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "doc", "reason", "words"),
    [
        (STATUS_RESULT, {"result": {}}, "missing_field", "Result"),
        (STATUS_RESULT, {"Result": []}, "invalid_field", "expected an object"),
        (
            STATUS_RESULT,
            with_result(STATUS_FOUND, ConversationID=None, OriginatorConversationID=None),
            "missing_field",
            "nothing says which request",
        ),
        (
            STATUS_RESULT,
            with_result(STATUS_FOUND, ConversationID="AG 1 2"),
            "invalid_field",
            "not a conversation id",
        ),
        (STATUS_RESULT, with_result(STATUS_FOUND, ResultCode=None), "missing_field", "ResultCode"),
        (
            STATUS_RESULT,
            with_result(STATUS_FOUND, ResultCode=True),
            "invalid_field",
            "not a result code",
        ),
        (
            STATUS_RESULT,
            with_parameters(STATUS_FOUND, ReceiptNo=None),
            "missing_field",
            "ReceiptNo",
        ),
        (
            STATUS_RESULT,
            with_parameters(STATUS_FOUND, Amount="-5"),
            "invalid_amount",
            "Amount",
        ),
        (
            STATUS_RESULT,
            with_parameters(STATUS_FOUND, Amount=Decimal("1.005")),
            "invalid_amount",
            "decimal places",
        ),
        (
            STATUS_RESULT,
            with_parameters(STATUS_FOUND, FinalisedTime="2018-02-23"),
            "invalid_time",
            "FinalisedTime",
        ),
        (
            STATUS_RESULT,
            with_result(STATUS_FOUND, ResultParameters={"ResultParameter": "x"}),
            "invalid_field",
            "expected a list",
        ),
        (
            STATUS_RESULT,
            with_result(STATUS_FOUND, ResultParameters={"ResultParameter": [{"Value": 1}]}),
            "invalid_field",
            "Key string",
        ),
        (
            STATUS_RESULT,
            with_result(
                STATUS_FOUND,
                ResultParameters={
                    "ResultParameter": [
                        {"Key": "ReceiptNo", "Value": "MBN31H462N"},
                        {"Key": "ReceiptNo", "Value": "MBN31H462M"},
                    ]
                },
            ),
            "invalid_field",
            "different values",
        ),
        (
            REVERSAL_RESULT,
            with_parameters(REVERSED, OriginalTransactionID=12),
            "invalid_code",
            "OriginalTransactionID",
        ),
        (
            REVERSAL_RESULT,
            with_parameters(REVERSED, TransCompletedTime="yesterday"),
            "invalid_time",
            "TransCompletedTime",
        ),
    ],
)
def test_a_body_that_is_not_dara_jas_result_is_refused_with_a_reason(
    kind: str, doc: Any, reason: str, words: str
) -> None:
    with pytest.raises(InvalidCallback) as refused:
        parse(kind, doc)
    assert refused.value.reason == reason
    assert words in refused.value.message


def test_result_kinds_are_webhook_kinds_with_daraja_s_ack() -> None:
    for kind in (STATUS_RESULT, STATUS_TIMEOUT, REVERSAL_RESULT, REVERSAL_TIMEOUT):
        assert kind in ADAPTER.kinds
        assert ADAPTER.acknowledge(kind) == {"ResultCode": 0, "ResultDesc": "Accepted"}


# --- settings and request bodies ----------------------------------------------------------


def test_the_initiator_needs_both_its_name_and_its_credential() -> None:
    assert read_settings({}).initiator is None
    both = read_settings(
        {"MOMO_MPESA_INITIATOR_NAME": "api", "MOMO_MPESA_SECURITY_CREDENTIAL": "c2VjcmV0"}
    )
    assert both.initiator == Initiator("api", "c2VjcmV0")
    assert "c2VjcmV0" not in repr(both.initiator)
    with pytest.raises(ConfigError, match="MOMO_MPESA_SECURITY_CREDENTIAL not set"):
        read_settings({"MOMO_MPESA_INITIATOR_NAME": "api"})
    with pytest.raises(ConfigError, match="MOMO_MPESA_INITIATOR_NAME not set"):
        read_settings({"MOMO_MPESA_SECURITY_CREDENTIAL": "c2VjcmV0"})


def test_request_bodies_use_daraja_s_field_names() -> None:
    initiator = Initiator("api", "c2VjcmV0")
    status = status_body(initiator, "600782", "NEF61H8J60", "https://r", "https://t")
    assert status["CommandID"] == "TransactionStatusQuery"
    assert (status["PartyA"], status["IdentifierType"]) == ("600782", "4")
    assert (status["ResultURL"], status["QueueTimeOutURL"]) == ("https://r", "https://t")

    reversal = reversal_body(
        initiator, "600782", "PDU91HIVIT", 20050, "https://r", "https://t", "x"
    )
    assert reversal["CommandID"] == "TransactionReversal"
    assert (reversal["ReceiverParty"], reversal["RecieverIdentifierType"]) == ("600782", "11")
    assert reversal["Amount"] == "200.50"
    assert 2 <= len(reversal["Remarks"]) <= 100
    assert reversal_body(initiator, "1", "C", 20000, "r", "t", "paid twice")["Amount"] == "200"


# --- statements -----------------------------------------------------------------------------

HEADER = (
    "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,"
    "Withdrawn,Balance,Other Party Info,A/C No."
)


def test_a_statement_reversal_row_names_the_receipt_it_reversed() -> None:
    rows = list(
        read_statement(
            [
                HEADER,
                "SKE52PAWR9,2025-11-03 14:35:00,2025-11-03 14:35:00,Reversal of SKC82PACB8,"
                "Completed,,-1500.00,0.00,254712345678 - JOHN DOE,",
                "SKE52PAWR8,2025-11-03 14:36:00,2025-11-03 14:36:00,Business Payment,"
                "Completed,,-10.00,0.00,,",
            ]
        )
    )

    entry, skipped = rows
    assert isinstance(entry, Entry)
    assert isinstance(skipped, Skipped) and skipped.why == "withdrawal"
    result = ADAPTER.parse("statement", entry.body, CTX)
    assert isinstance(result, ReversalResult)
    assert (result.original_code, result.receipt, result.amount, result.source) == (
        "SKC82PACB8",
        "SKE52PAWR9",
        150000,
        "statement",
    )
    assert result.reversed_at == datetime(2025, 11, 3, 11, 35, tzinfo=UTC)


def test_a_stored_row_naming_no_reversed_receipt_is_refused() -> None:
    body = json.dumps(
        {
            "Receipt No.": "SKE52PAWR9",
            "Completion Time": "2025-11-03 14:35:00",
            "Details": "Reversal",
            "Transaction Status": "Completed",
            "Paid In": "",
            "Withdrawn": "-10.00",
        }
    ).encode()
    with pytest.raises(InvalidCallback) as refused:
        ADAPTER.parse("statement", body, CTX)
    assert refused.value.reason == "not_a_payment"
    assert "names no reversed receipt" in refused.value.message


def test_the_result_urls_sent_with_each_call_pass_darajas_check() -> None:
    settings = with_settings(
        Settings(public_url="https://pay.example.com"),
        path_token="3f9a1c0e5b7d2e8f4a6c1b9d0e7f2a5c8b3d6e1f4a7c0b9d",
    )
    for what in ("status", "reversal"):
        for url in ADAPTER._result_urls(settings, what):
            assert daraja_url_problem(url) is None, url
            assert url.startswith("https://pay.example.com/webhooks/daraja/")
