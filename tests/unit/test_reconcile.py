"""The reconciliation report: momo's books beside the provider's own record."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from core.runtime import Runtime
from ingest.providers import receipt_owner
from ingest.providers.mpesa_statement import STATEMENT
from matcher.notifications import Msisdn, PaymentNotification
from matcher.payments import disassociate, record_manual_payment
from matcher.provider_records import note_coverage, note_payments, note_reversal
from matcher.reconcile import reconcile
from momo.cli import main
from tasks.work import drain_inbox
from tests.conftest import add_customer, assert_problem
from tests.unit.test_pipeline import confirmation, put

NAIROBI = ZoneInfo("Africa/Nairobi")
DAY = date(2025, 11, 3)
#: local midnight to local midnight of DAY
START = datetime(2025, 11, 2, 21, 0, tzinfo=UTC)
END = START + timedelta(days=1)


def row(receipt: str, paid_in: str, when: str = "2025-11-03 14:30:15", account: str = "ACC1042"):
    """A statement row as the import stores it in the inbox."""
    return {
        "Receipt No.": receipt,
        "Completion Time": when,
        "Transaction Status": "Completed",
        "Paid In": paid_in,
        "Other Party Info": "254712345678 - WANJIKU KAMAU",
        "A/C No.": account,
    }


def covered(runtime: Runtime, start: datetime = START, end: datetime = END) -> None:
    with runtime.sessions.begin() as session:
        note_coverage(
            session,
            provider="mpesa",
            source="statement",
            starts_at=start,
            ends_at=end,
            records=0,
            actor="test",
        )


def report(runtime: Runtime, first: date = DAY, last: date = DAY):
    with runtime.sessions.begin() as session:
        made = reconcile(session, provider="mpesa", first=first, last=last, zone=NAIROBI)
        session.expunge_all()
        return made


@pytest.fixture
def customer(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", ["0712345678"], "Wanjiku Kamau")


def test_a_callback_the_statement_also_holds_is_explained(runtime: Runtime, customer: None) -> None:
    put(runtime, "c2b/confirmation", confirmation())  # TKQ4A91B2C, 1500.00 at 14:30:15
    put(runtime, STATEMENT, row("TKQ4A91B2C", "1,500.00"))
    drain_inbox(runtime)
    covered(runtime)

    made = report(runtime)

    assert made.unexplained == 0
    assert made.recovered == []
    (day,) = made.days
    assert (day.provider_count, day.provider_amount) == (1, 150000)
    assert (day.momo_count, day.momo_amount) == (1, 150000)


def test_a_payment_only_the_statement_knew_is_recovered_and_explained(
    runtime: Runtime, customer: None
) -> None:
    put(runtime, STATEMENT, row("TKQ4A91B9Z", "2,000.00"))
    drain_inbox(runtime)
    covered(runtime)

    made = report(runtime)

    assert [(line.code, line.amount, line.source) for line in made.recovered] == [
        ("TKQ4A91B9Z", 200000, "statement")
    ]
    assert made.recovered[0].account_number == "ACC1042"
    assert made.unexplained == 0


def test_a_callback_the_provider_record_lacks_is_unexplained(
    runtime: Runtime, customer: None
) -> None:
    put(runtime, "c2b/confirmation", confirmation())
    drain_inbox(runtime)
    covered(runtime)

    made = report(runtime)

    assert [line.code for line in made.missing_from_provider] == ["TKQ4A91B2C"]
    assert made.unexplained == 1


def test_a_span_never_read_is_unexplained_and_nothing_is_called_missing_there(
    runtime: Runtime, customer: None
) -> None:
    put(runtime, "c2b/confirmation", confirmation())
    drain_inbox(runtime)
    covered(runtime, START, START + timedelta(hours=6))  # to 06:00 local; paid at 14:30

    made = report(runtime)

    assert made.missing_from_provider == []
    assert [(s.starts_at, s.ends_at) for s in made.not_covered] == [
        (START + timedelta(hours=6), END)
    ]
    assert made.unexplained == 1


def test_amounts_that_differ_are_a_conflict(runtime: Runtime, customer: None) -> None:
    put(runtime, "c2b/confirmation", confirmation())
    put(runtime, STATEMENT, row("TKQ4A91B2C", "1,600.00"))
    drain_inbox(runtime)
    covered(runtime)

    made = report(runtime)

    assert [(c.code, c.amount, c.provider_amount) for c in made.conflicts] == [
        ("TKQ4A91B2C", 150000, 160000)
    ]
    assert made.unexplained == 1


def test_an_unconfirmed_manual_entry_is_listed_and_a_confirmed_one_is_not(
    runtime: Runtime, customer: None
) -> None:
    with runtime.sessions.begin() as session:
        for reference in ("TKQ4A91B2C", "TKQ4A91ZZZ"):
            record_manual_payment(
                session,
                account_number="ACC1042",
                amount=150000,
                currency="KES",
                reference=reference,
                note=None,
                actor="op",
                receipt_owner=receipt_owner,
            )
    put(runtime, STATEMENT, row("TKQ4A91B2C", "1,500.00"))
    drain_inbox(runtime)
    today = datetime.now(NAIROBI).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=NAIROBI).astimezone(UTC)
    covered(runtime, midnight - timedelta(days=1), midnight + timedelta(days=1))

    made = report(runtime, today, today)

    assert [line.code for line in made.unconfirmed_manual] == ["TKQ4A91ZZZ"]
    assert made.missing_from_provider == []


def test_an_unconfirmed_entry_taken_off_every_balance_is_set_aside_and_counts_nowhere(
    runtime: Runtime, customer: None
) -> None:
    with runtime.sessions.begin() as session:
        invented = record_manual_payment(
            session,
            account_number="ACC1042",
            amount=150000,
            currency="KES",
            reference="TKQ4A91ZZZ",
            note=None,
            actor="op",
            receipt_owner=receipt_owner,
        ).payment.id
    with runtime.sessions.begin() as session:
        disassociate(session, invented, reason="made up", actor="op")
    today = datetime.now(NAIROBI).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=NAIROBI).astimezone(UTC)
    covered(runtime, midnight, midnight + timedelta(days=1))

    made = report(runtime, today, today)

    assert made.unconfirmed_manual == []
    assert [line.payment_id for line in made.set_aside] == [invented]
    assert (made.days[0].momo_count, made.days[0].momo_amount) == (0, 0)
    assert made.unexplained == 0


def test_a_record_momo_could_not_store_is_missing_in_momo(runtime: Runtime, customer: None) -> None:
    # kept as the provider wrote it, but its inbox row died before a payment was stored
    missed = PaymentNotification(
        provider="mpesa",
        channel="statement",
        code="TKQ4A91B9Z",
        amount=200000,
        currency="KES",
        paid_at=START + timedelta(hours=12),
        msisdn=Msisdn(raw=None, kind="missing"),
        source="statement",
    )
    with runtime.sessions.begin() as session:
        note_payments(session, [(None, missed)])
    covered(runtime)

    made = report(runtime)

    assert [(line.code, line.payment_id) for line in made.missing_in_momo] == [("TKQ4A91B9Z", None)]
    assert made.unexplained == 1


def test_days_are_local_days(runtime: Runtime, customer: None) -> None:
    # 00:30 local on the 4th is 21:30 UTC on the 3rd: a day of its own
    put(runtime, STATEMENT, row("TKQ4A91B9Z", "2,000.00", when="2025-11-04 00:30:00"))
    drain_inbox(runtime)
    covered(runtime, START, END + timedelta(days=1))

    made = report(runtime, DAY, DAY + timedelta(days=1))

    assert [(d.day, d.provider_amount) for d in made.days] == [
        (DAY, 0),
        (DAY + timedelta(days=1), 200000),
    ]


def test_the_api_answers_the_report_and_refuses_a_reversed_span(
    client: FlaskClient, runtime: Runtime, viewer_headers: dict, customer: None
) -> None:
    put(runtime, STATEMENT, row("TKQ4A91B9Z", "2,000.00"))
    drain_inbox(runtime)
    covered(runtime)

    answer = client.get(
        "/api/v1/reconciliation?from=2025-11-03&to=2025-11-03", headers=viewer_headers
    )

    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["explained"] is True
    assert body["recovered"][0]["code"] == "TKQ4A91B9Z"
    assert body["days"] == [
        {
            "date": "2025-11-03",
            "provider": {"count": 1, "amount": "2000.00", "reversed": "0.00"},
            "momo": {"count": 1, "amount": "2000.00", "reversed": "0.00"},
            "difference": "0.00",
        }
    ]
    refused = client.get(
        "/api/v1/reconciliation?from=2025-11-04&to=2025-11-03", headers=viewer_headers
    )
    assert_problem(refused, 400, "invalid_range")
    unknown = client.get("/api/v1/reconciliation?provider=paypal", headers=viewer_headers)
    assert_problem(unknown, 400, "invalid_provider")


def test_the_command_prints_the_report_and_exits_1_when_anything_is_unexplained(
    runtime: Runtime, customer: None
) -> None:
    put(runtime, "c2b/confirmation", confirmation())
    drain_inbox(runtime)
    env = {"MOMO_DATABASE_URL": runtime.settings.database_url}
    runner = CliRunner()

    args = ["reconcile", "--from", "2025-11-03", "--to", "2025-11-03"]
    uncovered = runner.invoke(main, args, env=env)
    assert uncovered.exit_code == 1, uncovered.output
    assert "NOT READ from 2025-11-03T00:00:00+03:00" in uncovered.output

    put(runtime, STATEMENT, row("TKQ4A91B2C", "1,500.00"))
    drain_inbox(runtime)
    covered(runtime)
    explained = runner.invoke(main, [*args, "--json"], env=env)
    assert explained.exit_code == 0, explained.output
    assert json.loads(explained.output)["totals"]["provider"] == {
        "count": 1,
        "amount": "1500.00",
        "reversed": "0.00",
    }


def reversal_row(receipt: str, reverses: str, withdrawn: str, when: str) -> dict:
    return {
        "Receipt No.": receipt,
        "Completion Time": when,
        "Details": f"Reversal of {reverses}",
        "Transaction Status": "Completed",
        "Paid In": "",
        "Withdrawn": withdrawn,
        "Other Party Info": "254712345678 - WANJIKU KAMAU",
        "A/C No.": "",
    }


def test_a_reversal_the_statement_lists_is_applied_and_explained(
    runtime: Runtime, customer: None
) -> None:
    put(runtime, "c2b/confirmation", confirmation())
    put(runtime, STATEMENT, row("TKQ4A91B2C", "1,500.00"))
    put(
        runtime,
        STATEMENT,
        reversal_row("TKR5B02D1E", "TKQ4A91B2C", "-1,500.00", "2025-11-03 16:00:00"),
    )
    drain_inbox(runtime)
    covered(runtime)

    made = report(runtime)

    assert [(line.code, line.reversal_receipt) for line in made.reversed] == [
        ("TKQ4A91B2C", "TKR5B02D1E")
    ]
    (day,) = made.days
    assert (day.provider_reversed, day.momo_reversed) == (150000, 150000)
    assert made.unexplained == 0


def test_a_reversal_momo_has_not_applied_is_unexplained(runtime: Runtime, customer: None) -> None:
    put(runtime, "c2b/confirmation", confirmation())
    put(runtime, STATEMENT, row("TKQ4A91B2C", "1,500.00"))
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        note_reversal(
            session,
            provider="mpesa",
            code="TKR5B02D1E",
            reverses="TKQ4A91B2C",
            amount=150000,
            reversed_at=START + timedelta(hours=16),
            source="statement",
            inbox_id=None,
        )
    covered(runtime)

    made = report(runtime)

    assert [line.code for line in made.reversals_not_applied] == ["TKQ4A91B2C"]
    assert made.unexplained == 1
