"""Conflicting duplicates, dead letters and replay, and the invariant checker."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from core.runtime import Runtime
from ingest.providers import receipt_owner
from ingest.spool import QUARANTINE_NAME
from matcher.check import check_invariants
from matcher.errors import Conflict
from matcher.inbox import process_pending, replay
from matcher.models import AuditEvent, Customer, CustomerPhone, InboxItem, LedgerEntry, Payment
from matcher.payments import record_manual_payment
from momo.cli import main
from tasks.work import drain_inbox
from tests.conftest import add_customer, sample_bytes
from tests.unit.test_pipeline import balance, confirmation, put


def inbox_row(runtime: Runtime, inbox_id: int) -> InboxItem:
    with runtime.sessions.begin() as session:
        item = session.get(InboxItem, inbox_id)
        assert item is not None
        return item


class TestConflictingDuplicates:
    @pytest.mark.parametrize(
        ("change", "words"),
        [
            ({"TransAmount": "15000.00"}, "amount 15000.00 != 1500.00"),
            ({"BillRefNumber": "ACC9999"}, "account reference"),
            ({"MSISDN": "254799000111"}, "phone +254799000111 != +254712345678"),
        ],
    )
    def test_a_receipt_repeated_with_different_data_is_kept_as_conflict_and_not_applied(
        self, runtime: Runtime, change: dict, words: str
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        add_customer(runtime, "ACC9999", [])
        put(runtime, "c2b/confirmation", confirmation())
        second = put(runtime, "c2b/confirmation", confirmation(**change))
        result = drain_inbox(runtime)
        assert result.outcomes == {"credited": 1, "conflict": 1}
        row = inbox_row(runtime, second)
        assert row.status == "conflict"
        assert row.detail is not None and words in row.detail
        assert row.payment_id is not None
        assert balance(runtime, "ACC1042") == 150000
        assert balance(runtime, "ACC9999") == 0

    def test_the_same_receipt_by_stk_and_c2b_is_a_duplicate_not_a_conflict(
        self, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1", ["0712345678"])
        put(runtime, "stk", sample_bytes("stk_callback_success.json"))
        put(
            runtime,
            "c2b/confirmation",
            confirmation(TransID="TKV5C2N8BD", TransAmount="20.00", BillRefNumber="ACC1"),
        )
        assert drain_inbox(runtime).outcomes == {"credited": 1, "duplicate": 1}

    def test_a_callback_after_a_manual_payment_compares_only_the_amount(
        self, runtime: Runtime
    ) -> None:
        add_customer(runtime, "ACC1042", [])
        with runtime.sessions.begin() as session:
            record_manual_payment(
                session,
                account_number="ACC1042",
                amount=150000,
                currency="KES",
                reference="TKQ4A91B2C",
                note=None,
                actor="op",
                receipt_owner=receipt_owner,
            )
        put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json"))
        assert drain_inbox(runtime).outcomes == {"duplicate": 1}
        assert balance(runtime, "ACC1042") == 150000


class TestDeadLettersAndReplay:
    def make_dead(self, runtime: Runtime) -> int:
        add_customer(runtime, "ACC1042", [])
        inbox_id = put(runtime, "c2b/confirmation", confirmation(TransID="DEAD000001"))

        def broken(item: InboxItem):  # type: ignore[no-untyped-def]
            raise RuntimeError("adapter bug")

        with runtime.sessions.begin() as session:
            process_pending(session, broken, region="KE", limit=10)
        assert inbox_row(runtime, inbox_id).status == "dead"
        return inbox_id

    def test_a_replayed_dead_callback_is_processed_exactly_once(self, runtime: Runtime) -> None:
        inbox_id = self.make_dead(runtime)
        with runtime.sessions.begin() as session:
            replay(session, inbox_id, actor="op")
        drain_inbox(runtime)
        assert inbox_row(runtime, inbox_id).status == "processed"
        assert balance(runtime, "ACC1042") == 150000
        with runtime.sessions.begin() as session:
            session.execute(update(InboxItem).where(InboxItem.id == inbox_id).values(status="dead"))
        with runtime.sessions.begin() as session:
            replay(session, inbox_id, actor="op")
        drain_inbox(runtime)
        assert inbox_row(runtime, inbox_id).reason == "duplicate"
        assert balance(runtime, "ACC1042") == 150000

    def test_only_dead_or_rejected_rows_are_replayed(self, runtime: Runtime) -> None:
        inbox_id = put(runtime, "c2b/confirmation", confirmation())
        with runtime.sessions.begin() as session, pytest.raises(Conflict):
            replay(session, inbox_id, actor="op")

    def test_the_cli_lists_dead_rows_and_replays_them(
        self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        inbox_id = self.make_dead(runtime)
        env = {"MOMO_DATABASE_URL": runtime.settings.database_url}
        listed = CliRunner().invoke(main, ["inbox", "list", "--status", "dead"], env=env)
        assert listed.exit_code == 0, listed.output
        assert f"{inbox_id}\t" in listed.stdout
        assert "adapter bug" in listed.stdout
        replayed = CliRunner().invoke(main, ["inbox", "replay", str(inbox_id)], env=env)
        assert replayed.exit_code == 0, replayed.output
        assert "processed (credited)" in replayed.stdout
        again = CliRunner().invoke(main, ["inbox", "replay", str(inbox_id)], env=env)
        assert again.exit_code == 1
        assert "only dead or rejected rows are replayed" in again.output


class TestCheck:
    def run(self, runtime: Runtime, *args: str, **env: str):  # type: ignore[no-untyped-def]
        env = {
            "MOMO_DATABASE_URL": runtime.settings.database_url,
            "MOMO_INSTANCE_PATH": str(runtime.settings.instance_path),
            **env,
        }
        return CliRunner().invoke(main, ["check", *args], env=env)

    def books(self, runtime: Runtime) -> None:
        add_customer(runtime, "ACC1042", ["0712345678"])
        put(runtime, "c2b/confirmation", sample_bytes("c2b_confirmation_paybill_plain.json"))
        put(runtime, "stk", sample_bytes("stk_callback_success.json"))
        put(
            runtime,
            "c2b/confirmation",
            confirmation(TransID="NOMATCH001", BillRefNumber="", MSISDN="254799999999"),
        )
        drain_inbox(runtime)

    def test_clean_books_pass(self, runtime: Runtime) -> None:
        self.books(runtime)
        result = self.run(runtime)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("ok:")

    def test_a_balance_edited_behind_the_ledgers_back_is_found(self, runtime: Runtime) -> None:
        self.books(runtime)
        with runtime.sessions.begin() as session:
            session.execute(update(Customer).values(balance_minor=Customer.balance_minor + 1))
        result = self.run(runtime)
        assert result.exit_code == 1
        assert (
            "VIOLATION [balance] customer ACC1042: balance 1520.01 but ledger sums to 1520.00"
            in result.stdout
        )

    def test_a_payment_credited_twice_is_found(self, runtime: Runtime) -> None:
        self.books(runtime)
        with runtime.sessions.begin() as session:
            payment = session.scalars(select(Payment).where(Payment.code == "TKQ4A91B2C")).one()
            session.add(
                LedgerEntry(
                    customer_id=payment.customer_id,
                    amount_minor=payment.amount_minor,
                    kind="payment_credit",
                    payment_id=payment.id,
                    idempotency_key="forged",
                    created_by="x",
                )
            )
            session.execute(
                update(Customer).values(balance_minor=Customer.balance_minor + payment.amount_minor)
            )
        result = self.run(runtime)
        assert result.exit_code == 1
        assert "credited more than once" in result.stdout
        assert "[balance]" not in result.stdout

    def test_an_unassociated_payment_with_a_credit_is_found(self, runtime: Runtime) -> None:
        self.books(runtime)
        with runtime.sessions.begin() as session:
            session.execute(
                update(Payment).where(Payment.code == "TKV5C2N8BD").values(status="unassociated")
            )
        with runtime.sessions.begin() as session:
            found = check_invariants(session, stuck_after=timedelta(minutes=5))
        assert [v.check for v in found] == ["payment", "revenue"]
        assert "TKV5C2N8BD" in found[0].message

    def test_an_inbox_row_stuck_past_the_threshold_is_found(self, runtime: Runtime) -> None:
        inbox_id = put(runtime, "c2b/confirmation", confirmation())
        with runtime.sessions.begin() as session:
            session.execute(
                update(InboxItem)
                .where(InboxItem.id == inbox_id)
                .values(received_at=datetime.now(UTC) - timedelta(hours=1))
            )
        result = self.run(runtime, "--stuck-after", "60")
        assert result.exit_code == 1
        assert (
            f"VIOLATION [inbox] inbox row {inbox_id} (mpesa/c2b/confirmation) pending for "
            "more than 60s: are `momo worker` and `momo beat` running" in result.stdout
        )

    def test_a_dead_row_is_found_with_the_command_that_replays_it(self, runtime: Runtime) -> None:
        inbox_id = TestDeadLettersAndReplay().make_dead(runtime)
        result = self.run(runtime)
        assert result.exit_code == 1
        [line] = [line for line in result.stdout.splitlines() if "VIOLATION" in line]
        assert f"inbox row {inbox_id} (mpesa/c2b/confirmation) is dead (failed: " in line
        assert "adapter bug" in line
        assert line.endswith(f"run `momo inbox replay {inbox_id}`")

    def test_many_dead_rows_are_listed_up_to_a_limit_then_counted(self, runtime: Runtime) -> None:
        from matcher.check import EXAMPLES

        for n in range(EXAMPLES + 3):
            put(runtime, "c2b/confirmation", confirmation(TransID=f"DEAD{n:04d}"))
        with runtime.sessions.begin() as session:
            session.execute(update(InboxItem).values(status="dead", reason="failed"))
        lines = self.run(runtime).stdout.splitlines()
        assert len([line for line in lines if " is dead " in line]) == EXAMPLES
        assert "VIOLATION [inbox] 3 more dead rows not listed: " in lines[-1]

    def test_a_rejected_body_is_not_a_violation(self, runtime: Runtime) -> None:
        self.books(runtime)
        put(runtime, "c2b/confirmation", b"not json")
        drain_inbox(runtime)
        assert inbox_row(runtime, 4).status == "rejected"
        result = self.run(runtime)
        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize(
        ("attempts", "next_attempt", "said"),
        [
            (5, timedelta(minutes=10), "still pending after 5 attempts (MOMO_MAX_ATTEMPTS=5"),
            (7, None, "still pending after 7 attempts"),
            (2, -timedelta(minutes=10), "was due for a retry more than 60s ago"),
        ],
    )
    def test_a_row_retrying_past_its_limit_or_overdue_is_found(
        self, runtime: Runtime, attempts: int, next_attempt: timedelta | None, said: str
    ) -> None:
        inbox_id = put(runtime, "c2b/confirmation", confirmation())
        with runtime.sessions.begin() as session:
            session.execute(
                update(InboxItem)
                .where(InboxItem.id == inbox_id)
                .values(
                    attempts=attempts,
                    reason="retrying",
                    detail="RuntimeError: boom",
                    next_attempt_at=None
                    if next_attempt is None
                    else datetime.now(UTC) + next_attempt,
                )
            )
        result = self.run(runtime, "--stuck-after", "60", MOMO_MAX_ATTEMPTS="5")
        assert result.exit_code == 1
        assert f"VIOLATION [inbox] inbox row {inbox_id} " in result.stdout
        assert said in result.stdout

    def test_a_row_waiting_out_its_backoff_is_not_a_violation(self, runtime: Runtime) -> None:
        inbox_id = put(runtime, "c2b/confirmation", confirmation())
        with runtime.sessions.begin() as session:
            session.execute(
                update(InboxItem)
                .where(InboxItem.id == inbox_id)
                .values(
                    attempts=2,
                    received_at=datetime.now(UTC) - timedelta(minutes=10),
                    next_attempt_at=datetime.now(UTC) + timedelta(minutes=1),
                )
            )
        result = self.run(runtime, "--stuck-after", "60", MOMO_MAX_ATTEMPTS="5")
        assert result.exit_code == 0, result.output

    def violations(self, runtime: Runtime) -> list[str]:
        result = self.run(runtime)
        lines = [line for line in result.stdout.splitlines() if line.startswith("VIOLATION")]
        assert result.exit_code == (1 if lines else 0), result.output
        return lines

    def test_an_unsettled_conflict_is_found_until_an_operator_settles_it(
        self, runtime: Runtime
    ) -> None:
        self.books(runtime)
        inbox_id = put(runtime, "c2b/confirmation", confirmation(TransAmount="15000.00"))
        drain_inbox(runtime)
        assert inbox_row(runtime, inbox_id).status == "conflict"
        [line] = self.violations(runtime)
        assert f"inbox row {inbox_id} (mpesa/c2b/confirmation) repeats a stored receipt" in line
        assert "amount 15000.00 != 1500.00" in line
        assert line.endswith(f"run `momo inbox settle {inbox_id} --note WHAT-YOU-FOUND`")

        env = {"MOMO_DATABASE_URL": runtime.settings.database_url}
        blank = CliRunner().invoke(main, ["inbox", "settle", str(inbox_id), "--note", " "], env=env)
        assert blank.exit_code == 1
        assert "say what you found and did" in blank.output
        settled = CliRunner().invoke(
            main, ["inbox", "settle", str(inbox_id), "--note", "statement: 1500.00"], env=env
        )
        assert settled.exit_code == 0, settled.output
        assert self.violations(runtime) == []
        row = inbox_row(runtime, inbox_id)
        assert (row.status, row.reason) == ("conflict", "settled")
        with runtime.sessions.begin() as session:
            event = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "inbox.settle")
            ).one()
            assert event.after == {
                "status": "conflict",
                "reason": "settled",
                "note": "statement: 1500.00",
            }
        again = CliRunner().invoke(
            main, ["inbox", "settle", str(inbox_id), "--note", "again"], env=env
        )
        assert again.exit_code == 1
        assert "only unsettled conflict rows are settled" in again.output

    def test_a_row_processed_as_a_payment_without_one_is_found_and_replayed(
        self, runtime: Runtime
    ) -> None:
        self.books(runtime)
        inbox_id = put(runtime, "c2b/confirmation", confirmation(TransID="LOSTPAY001"))
        with runtime.sessions.begin() as session:
            session.execute(
                update(InboxItem)
                .where(InboxItem.id == inbox_id)
                .values(status="processed", reason="duplicate", code="LOSTPAY001")
            )
        [line] = self.violations(runtime)
        assert line == (
            f"VIOLATION [inbox] inbox row {inbox_id} (mpesa/c2b/confirmation LOSTPAY001) was "
            "processed as duplicate but no payment is stored for it: run "
            f"`momo inbox replay {inbox_id}` (the receipt is still credited at most once)"
        )
        env = {"MOMO_DATABASE_URL": runtime.settings.database_url}
        replayed = CliRunner().invoke(main, ["inbox", "replay", str(inbox_id)], env=env)
        assert replayed.exit_code == 0, replayed.output
        assert "processed (credited)" in replayed.stdout
        assert self.violations(runtime) == []

    def test_a_payment_left_no_match_whose_phone_now_has_one_owner_is_found(
        self, runtime: Runtime
    ) -> None:
        from matcher.phones import msisdn_sha256

        self.books(runtime)
        # a phone given to a customer without the re-match (what the race left behind)
        with runtime.sessions.begin() as session:
            customer = session.scalars(select(Customer)).one()
            session.add(
                CustomerPhone(
                    customer_id=customer.id,
                    e164="+254799999999",
                    sha256=msisdn_sha256("+254799999999"),
                )
            )
            payment = session.scalars(select(Payment).where(Payment.code == "NOMATCH001")).one()
        [line] = self.violations(runtime)
        assert line == (
            f"VIOLATION [payment] payment {payment.id} (NOMATCH001, 1500.00) is unassociated "
            "(no_match) though its phone now belongs to customer ACC1042 alone: associate it "
            f'with POST /api/v1/payments/{payment.id}/associate {{"account_number": "ACC1042"}}'
        )
        add_customer(runtime, "ACC2000", ["0799999999"])  # now shared: nothing to say
        assert self.violations(runtime) == []

    def test_a_purchase_whose_debit_is_missing_or_wrong_is_found(self, runtime: Runtime) -> None:
        from matcher.plans import create_plan, purchase

        self.books(runtime)
        with runtime.sessions.begin() as session:
            create_plan(
                session, code="DAY", name="Day", price="100.00", validity_minutes=1440, actor="a"
            )
            bought = purchase(session, "ACC1042", "DAY", actor="op").purchase
            voucher, ident = bought.voucher_code, bought.id
        assert self.violations(runtime) == []
        with runtime.sessions.begin() as session:
            session.execute(
                update(LedgerEntry)
                .where(LedgerEntry.purchase_id == ident)
                .values(amount_minor=-5000)
            )
            session.execute(update(Customer).values(balance_minor=Customer.balance_minor + 5000))
        [line] = self.violations(runtime)
        assert line.startswith(
            f"VIOLATION [purchase] purchase {ident} (voucher {voucher}, plan DAY, price 100.00) "
            "is debited 50.00 on its customer's ledger (50.00 in all), expected 100.00: "
        )
        assert "report it as a bug" in line
        with runtime.sessions.begin() as session:
            session.execute(delete(LedgerEntry).where(LedgerEntry.purchase_id == ident))
            session.execute(update(Customer).values(balance_minor=Customer.balance_minor + 5000))
        [line] = self.violations(runtime)
        assert "price 100.00) has no ledger debit, expected 100.00" in line

    def test_a_payment_the_database_refuses_for_a_reason_other_than_its_receipt_is_dead(
        self, runtime: Runtime
    ) -> None:
        """An IntegrityError that is not the receipt stored by someone else leaves no
        payment: the row is dead with the error, never a ``duplicate`` of nothing."""
        with runtime.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON payments WHEN NEW.code = 'REFUSED001' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a test'); END"
            )
        inbox_id = put(runtime, "c2b/confirmation", confirmation(TransID="REFUSED001"))
        drain_inbox(runtime)
        row = inbox_row(runtime, inbox_id)
        assert (row.status, row.reason) == ("dead", "failed"), row.detail
        assert row.detail == "IntegrityError: refused by a test"


class TestCheckSpool:
    def spool_file(self, directory: Path, name: str, age: float, body: bytes = b"{}\n") -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_bytes(body)
        when = time.time() - age
        os.utime(path, (when, when))
        return path

    def run(self, runtime: Runtime, spool: Path, drain_seconds: int = 5):  # type: ignore[no-untyped-def]
        return TestCheck().run(
            runtime,
            MOMO_SPOOL_DIR=str(spool),
            MOMO_SPOOL_DRAIN_SECONDS=str(drain_seconds),
        )

    def test_a_spool_file_older_than_a_few_drain_intervals_is_found(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        path = self.spool_file(tmp_path / "spool", "spool-web1.jsonl", age=61)
        result = self.run(runtime, tmp_path / "spool")
        assert result.exit_code == 1
        [line] = result.stdout.splitlines()
        assert line.startswith(f"VIOLATION [spool] {path} has held acknowledged callbacks for 6")
        assert line.endswith("run `momo spool drain` where MOMO_SPOOL_DIR points at it")

    def test_the_age_limit_is_three_drain_intervals_when_longer_than_a_minute(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        self.spool_file(tmp_path / "spool", "spool-web1.jsonl.1a2b3c4d.draining", age=100)
        assert self.run(runtime, tmp_path / "spool", drain_seconds=40).exit_code == 0
        result = self.run(runtime, tmp_path / "spool", drain_seconds=30)
        assert result.exit_code == 1
        assert "(more than 90s)" in result.stdout

    def test_a_fresh_or_empty_spool_file_and_other_files_are_not_violations(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        self.spool_file(tmp_path / "spool", "spool-web1.jsonl", age=10)
        self.spool_file(tmp_path / "spool", "spool-web2.jsonl", age=600, body=b"")
        self.spool_file(tmp_path / "spool", "drain.lock", age=600)
        result = self.run(runtime, tmp_path / "spool")
        assert result.exit_code == 0, result.output

    def test_a_quarantine_file_is_found_at_any_age(self, runtime: Runtime, tmp_path: Path) -> None:
        path = self.spool_file(tmp_path / "spool", QUARANTINE_NAME, age=1)
        result = self.run(runtime, tmp_path / "spool")
        assert result.exit_code == 1
        assert f"VIOLATION [spool] quarantined records need an operator: {path}" in result.stdout


class TestInboxApi:
    def test_admins_list_dead_rows_and_replay_them_over_the_api(self, runtime: Runtime) -> None:
        from momo.app import create_app
        from tests.conftest import make_token

        inbox_id = TestDeadLettersAndReplay().make_dead(runtime)
        client = create_app(runtime=runtime).test_client()
        admin = {"Authorization": f"Bearer {make_token(runtime, 'admin')}"}
        listed = client.get("/api/v1/inbox?status=dead", headers=admin).get_json()
        assert [(i["id"], i["status"]) for i in listed["items"]] == [(inbox_id, "dead")]
        assert "adapter bug" in listed["items"][0]["detail"]
        shown = client.get(f"/api/v1/inbox/{inbox_id}", headers=admin).get_json()
        assert '"TransID": "DEAD000001"' in shown["body"]
        replayed = client.post(f"/api/v1/inbox/{inbox_id}/replay", headers=admin)
        assert replayed.status_code == 202
        assert replayed.get_json()["status"] == "pending"
        drain_inbox(runtime)
        assert inbox_row(runtime, inbox_id).status == "processed"
        assert balance(runtime, "ACC1042") == 150000
        again = client.post(f"/api/v1/inbox/{inbox_id}/replay", headers=admin)
        assert again.status_code == 409
        operator = {"Authorization": f"Bearer {make_token(runtime, 'operator', 'op2')}"}
        assert client.get("/api/v1/inbox", headers=operator).status_code == 403


def test_check_finds_revenue_slices_that_drifted_from_the_payments(runtime: Runtime) -> None:
    from matcher.models import RevenueSlice

    add_customer(runtime, "ACC1042", [])
    put(runtime, "c2b/confirmation", confirmation())
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        assert check_invariants(session, stuck_after=timedelta(minutes=5)) == []
        session.execute(update(RevenueSlice).values(amount_minor=RevenueSlice.amount_minor + 100))
    with runtime.sessions.begin() as session:
        found = check_invariants(session, stuck_after=timedelta(minutes=5))
    # the slice no longer matches the payments, nor its day row
    assert [v.check for v in found] == ["revenue", "revenue"]
    assert "1501.00 over 1 payments" in found[0].message
    assert "its slices add up to 1501.00 over 1 payments" in found[1].message


def test_check_finds_received_totals_and_days_that_drifted(runtime: Runtime) -> None:
    from matcher.models import RevenueDay, RevenueSlice

    add_customer(runtime, "ACC1042", [])
    put(runtime, "c2b/confirmation", confirmation())
    put(runtime, "c2b/confirmation", confirmation(TransID="NOBODY0001", BillRefNumber="NOPE"))
    drain_inbox(runtime)
    stuck = timedelta(minutes=5)
    with runtime.sessions.begin() as session:
        assert check_invariants(session, stuck_after=stuck) == []
        session.execute(update(RevenueDay).values(received_minor=RevenueDay.received_minor - 1))
    with runtime.sessions.begin() as session:
        found = check_invariants(session, stuck_after=stuck)
        assert [v.check for v in found] == ["revenue"]
        assert "revenue day" in found[0].message
        assert "2999.99 received; its slices add up to" in found[0].message
        session.execute(update(RevenueDay).values(received_minor=RevenueDay.received_minor + 1))
        session.execute(update(RevenueSlice).values(received_minor=RevenueSlice.received_minor + 7))
        session.execute(update(RevenueDay).values(received_minor=RevenueDay.received_minor + 7))
    with runtime.sessions.begin() as session:
        found = check_invariants(session, stuck_after=stuck)
    assert [v.check for v in found] == ["revenue"]
    assert "3000.07 received, but the payments stored add up to 3000.00" in found[0].message
