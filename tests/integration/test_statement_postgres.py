"""``momo mpesa import-statement`` on PostgreSQL: a missed payment credited once."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from ingest.providers import variables
from matcher.customers import save_customer
from matcher.db import make_engine, make_session_factory
from matcher.migrate import upgrade
from matcher.models import Customer, Payment
from momo.cli import main

STATEMENT = (
    '"Organisation Name:","MOMO DEMO LTD"\n'
    "\n"
    '"Receipt No.","Completion Time","Initiation Time","Details","Transaction Status",'
    '"Paid In","Withdrawn","Balance","Other Party Info","A/C No."\n'
    '"TKQ4A91B9Z","2025-11-03 15:00:00","2025-11-03 15:00:00","Pay Bill","Completed",'
    '"2,000.00","","90,210.00","254712345678 - JOHN DOE","ACC2001"\n'
)


def test_a_missed_payment_is_credited_once_however_often_the_statement_is_imported(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        save_customer(
            session, account_number="ACC2001", name="John", phones=[], region="KE", actor="test"
        )
    path = tmp_path / "statement.csv"
    path.write_text(STATEMENT, encoding="utf-8")
    env = dict.fromkeys(variables()) | {
        "MOMO_DATABASE_URL": fresh_pg_url,
        "MOMO_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    args = ["mpesa", "import-statement", str(path)]
    try:
        first = CliRunner().invoke(main, args, env=env)
        again = CliRunner().invoke(main, args, env=env)

        assert first.exit_code == 0, first.output
        assert "recovered 1 (credited 1," in first.output
        assert again.exit_code == 0, again.output
        assert "already known 1, recovered 0" in again.output
        with sessions() as session:
            [payment] = session.scalars(select(Payment)).all()
            assert (payment.code, payment.channel, payment.amount_minor) == (
                "TKQ4A91B9Z",
                "statement",
                200000,
            )
            assert session.scalars(select(Customer)).one().balance_minor == 200000
    finally:
        engine.dispose()
