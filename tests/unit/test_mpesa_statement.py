"""Reading the M-PESA organisation portal's statement, and the adapter's reading of a row."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from core.providers import ParseContext
from ingest.providers.mpesa import MpesaAdapter
from ingest.providers.mpesa_statement import (
    STATEMENT,
    Entry,
    Malformed,
    NotAStatement,
    Row,
    Skipped,
    read_statement,
)
from matcher.notifications import InvalidCallback, PaymentNotification
from tests.conftest import ROOT

SAMPLE = ROOT / "tests" / "samples" / "mpesa" / "statement_org_portal.csv"
HEADER = (
    '"Receipt No.","Completion Time","Initiation Time","Details","Transaction Status",'
    '"Paid In","Withdrawn","Balance","Other Party Info","A/C No."\n'
)
CTX = ParseContext()


def rows(text: str) -> list[Row]:
    return list(read_statement(io.StringIO(text, newline="")))


def payment(entry: Row) -> PaymentNotification:
    assert isinstance(entry, Entry), entry
    parsed = MpesaAdapter().parse(STATEMENT, entry.body, CTX)
    assert isinstance(parsed, PaymentNotification)
    return parsed


def line(
    receipt: str,
    paid_in: str,
    withdrawn: str = "",
    status: str = "Completed",
    other: str = "254712345678 - JOHN DOE",
    account: str = "ACC-1",
    when: str = "2025-11-03 14:30:15",
) -> str:
    """One statement row, as the portal writes it: every field quoted."""
    fields = [receipt, when, when, "Pay Bill", status, paid_in, withdrawn, "9,000.00", other]
    return ",".join(f'"{f}"' for f in [*fields, account]) + "\n"


class TestReadStatement:
    def test_the_portal_sample_gives_its_completed_paid_in_rows_and_skips_the_rest(
        self,
    ) -> None:
        with SAMPLE.open(newline="", encoding="utf-8-sig") as f:
            found = list(read_statement(f))

        assert [(type(r).__name__, getattr(r, "receipt", None)) for r in found] == [
            ("Entry", "TK3AB1CD2E"),
            ("Entry", "TK3AB1CD3F"),
            ("Skipped", "TK3AB1CD4G"),
            ("Skipped", "TK3AB1CD5H"),
            ("Skipped", "TK3AB1CD6J"),
            ("Entry", "TK3AB1CD7K"),
        ]
        assert [r.why for r in found if isinstance(r, Skipped)] == [
            "withdrawal",
            "withdrawal",
            "not_completed",
        ]
        # the title lines and the blank line come first: the header is line 6
        assert found[0].line == 7

    def test_a_row_becomes_the_payment_it_records_in_utc(self) -> None:
        [entry] = rows("Statement\n" + HEADER + line("TK3AB1CD2E", "1,500.00"))

        paid = payment(entry)
        assert paid.provider == "mpesa"
        assert paid.channel == "statement"
        assert paid.source == "statement"  # a manual entry it names is confirmed by a statement
        assert paid.code == "TK3AB1CD2E"
        assert paid.amount == 150000
        assert paid.paid_at == datetime(2025, 11, 3, 11, 30, 15, tzinfo=UTC)
        assert paid.msisdn.e164 == "+254712345678"
        assert paid.payer_name == "JOHN DOE"
        assert paid.account_reference == "ACC-1"

    def test_thousands_separators_are_read_and_large_amounts_kept_exact(self) -> None:
        [entry] = rows(HEADER + line("TK3AB1CD2E", "1,234,567.89"))

        assert payment(entry).amount == 123456789

    def test_a_masked_number_stays_masked_and_the_name_is_kept(self) -> None:
        [entry] = rows(HEADER + line("TK3AB1CD2E", "250.00", other="2547******678 - MARY W"))

        paid = payment(entry)
        assert paid.msisdn.kind == "masked"
        assert paid.msisdn.e164 is None
        assert paid.payer_name == "MARY W"

    def test_quoted_fields_with_commas_and_quotes_are_one_field(self) -> None:
        text = HEADER + line("TK3AB1CD2E", "100.00", other='254712345678 - ""AMINA"", JR')

        assert payment(rows(text)[0]).payer_name == '"AMINA", JR'

    def test_headers_are_found_whatever_their_case_and_spacing(self) -> None:
        header = HEADER.replace("Receipt No.", " receipt  no ").replace("Paid In", "PAID IN")
        [entry] = rows("Title\n\n" + header + line("TK3AB1CD2E", "10.00"))

        assert payment(entry).amount == 1000

    def test_an_empty_account_number_is_no_reference(self) -> None:
        [entry] = rows(HEADER + line("TK3AB1CD2E", "10.00", account=""))

        assert payment(entry).account_reference is None

    @pytest.mark.parametrize("status", ["Failed", "Pending", "Cancelled"])
    def test_a_row_not_completed_is_skipped(self, status: str) -> None:
        [row] = rows(HEADER + line("TK3AB1CD2E", "10.00", status=status))

        assert row == Skipped(2, "TK3AB1CD2E", "not_completed")

    def test_withdrawals_and_charges_are_skipped(self) -> None:
        found = rows(HEADER + line("TK3AB1CD2E", "", "-2,000.00") + line("TK3AB1CD3F", "", "5.00"))

        assert [r.why for r in found if isinstance(r, Skipped)] == ["withdrawal", "withdrawal"]

    def test_a_malformed_row_is_reported_by_line_and_the_rest_still_read(self) -> None:
        text = HEADER + '"TK3AB1CD2E","2025-11-03"\n' + line("TK3AB1CD3F", "10.00")

        first, second = rows(text)
        assert isinstance(first, Malformed)
        assert first.line == 2
        assert isinstance(second, Entry)
        assert second.line == 3

    def test_a_row_with_both_paid_in_and_withdrawn_is_malformed(self) -> None:
        [row] = rows(HEADER + line("TK3AB1CD2E", "10.00", "5.00"))

        assert isinstance(row, Malformed)
        assert "both Paid In" in row.message

    def test_a_file_without_the_portals_header_is_not_a_statement(self) -> None:
        with pytest.raises(NotAStatement, match=r"Receipt No\."):
            rows("account_number,name,phones\nA1,John,0712345678\n")


class TestParseStatementRow:
    @pytest.mark.parametrize(
        ("paid_in", "when", "reason"),
        [
            ("1,50.00", "2025-11-03 14:30:15", "invalid_amount"),
            ("1500.001", "2025-11-03 14:30:15", "invalid_amount"),
            ("10.00", "03 Nov 2025", "invalid_time"),
            ("10.00", "2025-02-30 10:00:00", "invalid_time"),
        ],
    )
    def test_a_bad_amount_or_time_is_refused_with_its_reason(
        self, paid_in: str, when: str, reason: str
    ) -> None:
        [entry] = rows(HEADER + line("TK3AB1CD2E", paid_in, when=when))

        assert isinstance(entry, Entry)
        with pytest.raises(InvalidCallback) as refused:
            MpesaAdapter().parse(STATEMENT, entry.body, CTX)
        assert refused.value.reason == reason

    def test_statement_is_no_webhook_kind(self) -> None:
        assert STATEMENT not in MpesaAdapter().kinds
