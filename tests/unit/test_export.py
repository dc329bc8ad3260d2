"""`momo export payments|ledger`: CSV for accountants over local days."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from core.runtime import Runtime
from matcher.payments import disassociate
from momo.cli import main
from tasks.work import drain_inbox
from tests.conftest import add_customer
from tests.unit.test_pipeline import confirmation, payments, put


@pytest.fixture
def books(runtime: Runtime) -> Runtime:
    """Three payments on 3 Nov 2025 (Nairobi) and one just after its midnight, one of them
    from a payer whose name a spreadsheet would run; one payment disassociated."""
    add_customer(runtime, "ACC1042", ["0712345678"], "Wanjiku Kamau")
    for code, when, amount, account, name in (
        ("TKQ0000001", "20251103000000", "100.00", "ACC1042", "WANJIKU"),
        ("TKQ0000002", "20251103120000", "250.50", "ACC1042", "WANJIKU"),
        ("TKQ0000003", "20251103235959", "75.00", "NOBODY", '=HYPERLINK("http://x")'),
        ("TKQ0000004", "20251104003000", "40.00", "ACC1042", "WANJIKU"),
    ):
        put(
            runtime,
            "c2b/confirmation",
            confirmation(
                TransID=code,
                TransTime=when,
                TransAmount=amount,
                BillRefNumber=account,
                MSISDN="254733999888" if account == "NOBODY" else "254712345678",
                FirstName=name,
            ),
        )
    drain_inbox(runtime)
    second = next(p for p in payments(runtime) if p.code == "TKQ0000002")
    with runtime.sessions.begin() as session:
        disassociate(session, second.id, actor="ops", reason="wrong account")
    return runtime


def export(runtime: Runtime, *args: str) -> Result:
    env = {"MOMO_DATABASE_URL": runtime.settings.database_url, "MOMO_TIMEZONE": "Africa/Nairobi"}
    return CliRunner().invoke(main, ["export", *args], env=env)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_payments_of_a_local_day_oldest_first_whatever_their_list(books: Runtime) -> None:
    done = export(books, "payments", "--from", "2025-11-03", "--to", "2025-11-03")

    assert done.exit_code == 0, done.output
    found = rows(done.stdout)
    # midnight to midnight in Nairobi: 00:00:00 is in, 00:30 the next day is not
    assert [r["code"] for r in found] == ["TKQ0000001", "TKQ0000002", "TKQ0000003"]
    assert [r["amount"] for r in found] == ["100.00", "250.50", "75.00"]
    assert [r["status"] for r in found] == ["associated", "unassociated", "unassociated"]
    assert found[0]["paid_at"] == "2025-11-03T00:00:00+03:00"
    assert found[0]["account_number"] == "ACC1042"
    assert found[2]["account_number"] == ""
    assert "wrote 3 payments of 2025-11-03 (Africa/Nairobi)" in done.stderr


def test_text_a_spreadsheet_would_run_is_written_as_text(books: Runtime) -> None:
    done = export(books, "payments", "--from", "2025-11-03")

    hostile = next(r for r in rows(done.stdout) if r["code"] == "TKQ0000003")
    assert hostile["payer_name"].startswith("'=")


def test_the_ledger_signs_debits_and_names_the_payment(books: Runtime) -> None:
    done = export(books, "ledger", "--from", "2025-11-01", "--to", "2099-12-31")

    assert done.exit_code == 0, done.output
    found = rows(done.stdout)
    moves = [(r["kind"], r["amount"], r["payment_code"]) for r in found]
    assert ("disassociation", "-250.50", "TKQ0000002") in moves
    credits = [m for m in moves if m[1].startswith("-") is False]
    assert sorted(c[2] for c in credits) == ["TKQ0000001", "TKQ0000002", "TKQ0000004"]
    # every signed amount sums to the balance the customer holds
    total = sum(int(r["amount"].replace(".", "")) for r in found)
    assert total == 100_00 + 40_00
    assert all(r["currency"] for r in found)


def test_a_file_is_written_whole_with_progress_on_stderr(books: Runtime, tmp_path: Path) -> None:
    target = tmp_path / "payments.csv"

    done = export(
        books, "payments", "--from", "2025-11-03", "--to", "2025-11-04", "-o", str(target)
    )

    assert done.exit_code == 0, done.output
    assert done.stdout == ""
    assert [r["code"] for r in rows(target.read_text())][-1] == "TKQ0000004"
    assert not list(tmp_path.glob(".*partial"))
    assert f"to {target}" in done.stderr


def test_a_span_backwards_is_refused_saying_which_day_comes_first(books: Runtime) -> None:
    done = export(books, "ledger", "--from", "2025-11-04", "--to", "2025-11-03")

    assert done.exit_code == 2
    assert "--from 2025-11-04 is after --to 2025-11-03" in done.stderr
