"""The domain on real PostgreSQL: migrations, and workers sharing the inbox."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select

from core.config import Settings
from ingest.providers import build_runtime
from matcher.ledger import ledger_sum
from matcher.models import Customer, InboxItem, LedgerEntry, Payment
from tasks.work import drain_inbox
from tests.conftest import add_customer, mpesa_block, sample
from tests.integration.conftest import PATH_TOKEN
from tests.unit.test_migrations import schema_differences

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_runtime(pg_url: str):  # type: ignore[no-untyped-def]
    from matcher.db import make_engine
    from matcher.migrate import upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(
        Settings(database_url=pg_url, providers=mpesa_block(PATH_TOKEN), batch_size=20)
    )
    yield runtime
    runtime.close()


def test_upgrading_postgresql_gives_the_models_schema(pg_url: str) -> None:
    assert schema_differences(pg_url) == []


def test_concurrent_drains_record_every_row_exactly_once(pg_runtime, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    """Four drainers on separate connections over 400 rows with repeated codes."""
    add_customer(pg_runtime, "PGC-1", [])
    add_customer(pg_runtime, "PGC-2", [])
    body = sample("c2b_confirmation_paybill_plain.json")
    rows = []
    for n in range(400):
        code = f"PGCONC{n % 250:04d}"  # 150 codes arrive twice
        account = "PGC-1" if n % 250 % 2 else "PGC-2"
        rows.append({**body, "TransID": code, "BillRefNumber": account, "TransAmount": "1.00"})
    with pg_runtime.sessions.begin() as session:
        session.add_all(
            InboxItem(
                provider="mpesa",
                kind="c2b/confirmation",
                body=json.dumps(r).encode(),
                headers={},
                attempts=0,
                code=r["TransID"],
            )
            for r in rows
        )
    runtimes = [
        build_runtime(
            Settings(database_url=pg_url, providers=mpesa_block(PATH_TOKEN), batch_size=20)
        )
        for _ in range(4)
    ]
    errors: list[BaseException] = []

    def drain(rt) -> None:  # type: ignore[no-untyped-def]
        try:
            drain_inbox(rt)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(rt,)) for rt in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for rt in runtimes:
        rt.close()
    assert errors == []
    with pg_runtime.sessions.begin() as session:
        codes = select(Payment.id).where(Payment.code.like("PGCONC%"))
        assert session.scalar(select(func.count()).select_from(codes.subquery())) == 250
        assert (
            session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.payment_id.in_(codes))
            )
            == 250
        )
        items = session.scalars(select(InboxItem).where(InboxItem.code.like("PGCONC%"))).all()
        assert {i.status for i in items} == {"processed"}
        assert {i.attempts for i in items} == {1}  # no row was claimed twice
        assert sorted(i.reason for i in items).count("duplicate") == 150
        for account in ("PGC-1", "PGC-2"):
            customer = session.scalar(select(Customer).where(Customer.account_number == account))
            assert customer is not None
            assert customer.balance_minor == 125 * 100 == ledger_sum(session, customer.id)


def test_commands_on_a_postgresql_database_not_yet_upgraded_say_to_run_db_upgrade(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import subprocess
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from tests.integration.conftest import ADMIN_URL, VENV_BIN

    name = f"momo_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        result = subprocess.run(
            [str(VENV_BIN / "momo"), "token", "create", "--name", "a", "--role", "viewer"],
            env={
                "PATH": "/usr/bin:/bin",
                "MOMO_DATABASE_URL": url,
                "MOMO_BROKER_URL": "redis://127.0.0.1:1/0",
            },
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 1
        assert "momo db upgrade" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("seed", [3])
def test_long_ranges_equal_a_recount_of_the_slices_on_postgresql(
    fresh_pg_url: str, seed: int
) -> None:
    from matcher.db import make_engine
    from matcher.migrate import upgrade
    from tests.revenue_ranges import check_ranges, seed_slices

    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    runtime = build_runtime(Settings(database_url=fresh_pg_url, providers=mpesa_block(PATH_TOKEN)))
    try:
        with runtime.sessions.begin() as session:
            slices = seed_slices(session, seed)
        with runtime.sessions() as session:
            assert check_ranges(session, slices) > 500
    finally:
        runtime.close()
        engine.dispose()


def test_the_revenue_backfill_on_postgresql_matches_what_the_writers_keep(
    fresh_pg_url: str,
) -> None:
    from datetime import timedelta

    from matcher.check import check_invariants
    from matcher.db import make_engine
    from matcher.migrate import upgrade
    from tests.revenue_ranges import rebuild_from_0005, snapshot

    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    runtime = build_runtime(Settings(database_url=fresh_pg_url, providers=mpesa_block(PATH_TOKEN)))
    try:
        add_customer(runtime, "ACC1042", [])
        for n in range(30):
            doc = sample("c2b_confirmation_paybill_plain.json")
            doc.update(
                TransID=f"TKP{n:07d}",
                TransTime=f"202511{1 + n % 28:02d}1{n % 10}3015",
                BillRefNumber="ACC1042" if n % 3 else "NOBODY",
            )
            with runtime.sessions.begin() as session:
                session.add(
                    InboxItem(
                        provider="mpesa",
                        kind="c2b/confirmation",
                        body=json.dumps(doc).encode(),
                        headers={},
                        status="pending",
                        attempts=0,
                    )
                )
        drain_inbox(runtime)
        with runtime.sessions() as session:
            kept = snapshot(session)
            assert len(kept[1]) > 5
        rebuild_from_0005(runtime.engine)
        with runtime.sessions() as session:
            assert snapshot(session) == kept
            assert check_invariants(session, stuck_after=timedelta(minutes=5)) == []
    finally:
        runtime.close()
        engine.dispose()


def test_the_batch_path_and_the_row_by_row_path_come_to_the_same_books_on_postgresql() -> None:
    from tests.batch_parity import check_parity
    from tests.integration.conftest import migrated_runtime

    batch_runtimes, row_runtimes = migrated_runtime(), migrated_runtime()
    try:
        check_parity(next(batch_runtimes), next(row_runtimes))
    finally:
        next(batch_runtimes, None)
        next(row_runtimes, None)


def test_phones_held_are_asked_for_once_per_transaction_and_held_till_its_end(
    pg_runtime,  # type: ignore[no-untyped-def]
) -> None:
    from sqlalchemy import event, text

    from matcher.matching import PHONE_LOCK, _phone_key, hold_phones

    digest = "ab" * 32
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    def free_elsewhere() -> bool:
        with pg_runtime.engine.connect() as other:
            got = other.execute(
                text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                {"a": PHONE_LOCK, "b": _phone_key(digest)},
            ).scalar()
            other.rollback()
            return bool(got)

    event.listen(pg_runtime.engine, "before_cursor_execute", seen)
    try:
        with pg_runtime.sessions.begin() as session:
            hold_phones(session, [digest])
            asked = len(statements)
            hold_phones(session, [digest, None])
            assert len(statements) == asked  # already held: nothing asked
            assert not free_elsewhere()
        assert free_elsewhere()
        with pg_runtime.sessions.begin() as session:
            before = len(statements)
            hold_phones(session, [digest])
            assert len(statements) == before + 1  # a new transaction holds nothing yet
            with session.begin_nested():
                hold_phones(session, ["cd" * 32])
            nested = len(statements)
            hold_phones(session, ["cd" * 32])  # taken in a savepoint: asked again
            assert len(statements) > nested
    finally:
        event.remove(pg_runtime.engine, "before_cursor_execute", seen)
