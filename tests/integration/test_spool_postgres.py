"""The spool and the webhook on real PostgreSQL, when the database refuses a row for its content.

PostgreSQL refuses a NUL character in text and cannot be sent a lone surrogate at all;
the SQLite default takes the first. Either way such a callback is kept as a rejected row
(raw bytes intact) and never holds back the callbacks around it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import Engine, make_url

from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from ingest.refusal import UNSTORABLE
from ingest.spool import Spool, _record, attach_spool
from matcher.db import make_engine, utcnow
from matcher.migrate import upgrade
from matcher.models import InboxItem
from momo.app import create_app
from momo.cli import main
from tests.conftest import PATH_TOKEN, mpesa_block, sample, sample_bytes, webhook_url

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(fresh_pg_url: str, tmp_path: Path) -> Iterator[Runtime]:
    engine = make_engine(fresh_pg_url)
    upgrade(engine)
    engine.dispose()
    rt = build_runtime(
        Settings(
            database_url=fresh_pg_url,
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
    )
    yield rt
    rt.close()


@pytest.fixture
def engine(runtime: Runtime) -> Engine:
    return runtime.engine


def stk_failure(reference: str) -> bytes:
    doc = sample("stk_callback_cancelled.json")
    doc["Body"]["stkCallback"]["CheckoutRequestID"] = reference
    return json.dumps(doc).encode()  # "\u0000" and "\ud800" as JSON escapes


def confirmation(code: str) -> InboxItem:
    return InboxItem(
        provider="mpesa",
        kind="c2b/confirmation",
        body=sample_bytes("c2b_confirmation_paybill_plain.json").replace(
            b"TKQ4A91B2C", code.encode()
        ),
        headers={"Content-Type": "application/json"},
        client_addr="196.201.214.200",
        status="pending",
        code=code,
        received_at=utcnow(),
        attempts=0,
    )


def poison(spool: Spool, code: str, **changes: Any) -> dict[str, Any]:
    """A record as the webhook spooled one before it checked the text: written raw."""
    record = _record(confirmation("TKQ4A91B2C"))
    record.update(spool_id=str(uuid.uuid4()), code=code, **changes)
    spool.directory.mkdir(parents=True, exist_ok=True)
    with spool.path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def rows(runtime: Runtime) -> list[tuple[str | None, str, str | None]]:
    with runtime.sessions.begin() as session:
        return [
            (r.code, r.status, r.reason)
            for r in session.scalars(select(InboxItem).order_by(InboxItem.id))
        ]


class TestWebhook:
    @pytest.mark.parametrize("reference", ["ws_CO_\x00X", "ws_CO_\ud800X"], ids=["nul", "lone"])
    def test_a_callback_postgresql_cannot_store_is_kept_as_rejected_and_answered_400(
        self, runtime: Runtime, tmp_path: Path, reference: str
    ) -> None:
        runtime.spool = spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        app = create_app(runtime=runtime)
        body = stk_failure(reference)

        response = app.test_client().post(
            webhook_url("stk"), data=body, content_type="application/json"
        )

        assert response.status_code == 400
        # the adapter refuses a reference that cannot be one; the storability check is
        # behind it for whatever text the adapter lets through
        reason = response.get_json()["reason"]
        assert reason in ("invalid_field", UNSTORABLE)
        assert not spool.has_records()  # not taken for "database down"
        with runtime.sessions.begin() as session:
            row = session.scalars(select(InboxItem)).one()
            assert (row.status, row.reason) == ("rejected", reason)
            assert row.body == body
        # the web thread's connection is still good for the next callback
        ok = app.test_client().post(
            webhook_url("c2b/confirmation"),
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            content_type="application/json",
        )
        assert ok.status_code == 200
        assert [status for _, status, _ in rows(runtime)] == ["rejected", "pending"]

    def test_a_forwarded_address_longer_than_its_column_never_costs_the_callback(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        settings = runtime.settings.with_overrides(trusted_proxy_hops=1)
        rt = build_runtime(settings)
        try:
            rt.spool = spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
            forwarded = "proxy-said-" + "x" * 200  # what an odd proxy put in X-Forwarded-For
            response = (
                create_app(runtime=rt)
                .test_client()
                .post(
                    webhook_url("c2b/confirmation"),
                    data=sample_bytes("c2b_confirmation_paybill_plain.json"),
                    content_type="application/json",
                    headers={"X-Forwarded-For": forwarded},
                )
            )

            assert response.status_code == 200
            assert not spool.has_records()
            with rt.sessions.begin() as session:
                row = session.scalars(select(InboxItem)).one()
                assert (row.status, row.code) == ("pending", "TKQ4A91B2C")
                assert row.client_addr == forwarded[:64]  # a note, cut to its column
        finally:
            rt.close()


class TestDrain:
    def test_a_nul_in_a_spooled_record_does_not_hold_back_the_good_ones(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(confirmation("GOOD000001"))
        poison(spool, "AB\x00CD")
        poison(spool, "ws_CO_\ud800")
        spool.append(confirmation("GOOD000002"))

        result = spool.drain(runtime.sessions)

        assert (result.stored, result.rejected, result.quarantined) == (4, 2, 0)
        assert not spool.has_records()
        assert rows(runtime) == [
            ("GOOD000001", "pending", None),
            ("AB\\x00CD", "rejected", UNSTORABLE),
            ("ws_CO_\\ud800", "rejected", UNSTORABLE),
            ("GOOD000002", "pending", None),
        ]

    def test_a_chunk_postgresql_refuses_is_stored_record_by_record(
        self, runtime: Runtime, engine: Engine, tmp_path: Path
    ) -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                """
                CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.code = 'REFUSEDPEN' AND NEW.status <> 'rejected' THEN
                        RAISE EXCEPTION 'refused by a trigger' USING ERRCODE = 'check_violation';
                    END IF;
                    IF NEW.client_addr = 'refuse-me' THEN
                        RAISE EXCEPTION 'refused in any form' USING ERRCODE = '22023';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION refuse();
                """
            )
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(confirmation("GOOD000001"))
        spool.append(confirmation("REFUSEDPEN"))
        kept = poison(spool, "REFUSEDALL", client_addr="refuse-me")
        spool.append(confirmation("GOOD000002"))

        result = spool.drain(runtime.sessions)

        assert (result.stored, result.rejected, result.quarantined) == (3, 1, 1)
        assert rows(runtime) == [
            ("GOOD000001", "pending", None),
            ("REFUSEDPEN", "rejected", UNSTORABLE),
            ("GOOD000002", "pending", None),
        ]
        [entry] = [json.loads(line) for line in spool.quarantine_path.read_text().splitlines()]
        assert entry["record"] == kept
        assert "refused in any form" in entry["reason"]
        assert not spool.has_records()


def test_momo_spool_drain_on_postgresql_reports_and_exits_0(
    runtime: Runtime, fresh_pg_url: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="another-host")
    spool.append(confirmation("GOOD000001"))
    poison(spool, "AB\x00CD")

    result = CliRunner().invoke(
        main,
        ["spool", "drain"],
        env={
            "MOMO_DATABASE_URL": fresh_pg_url,
            "MOMO_SPOOL_DIR": str(spool.directory),
            "MOMO_BROKER_URL": None,
        },
    )

    assert result.exit_code == 0, (result.output, result.exception)
    assert "2 callback(s) moved to the inbox" in result.output
    assert "1 of them the database refused as sent" in result.output
    assert [status for _, status, _ in rows(runtime)] == ["pending", "rejected"]


def set_read_only(url: str, on: bool) -> None:
    """What a failover onto a read-only standby looks like to new connections."""
    name = make_url(url).database
    admin = make_url(url).set(database="postgres", drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
        if on:
            c.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        else:
            c.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


class TestADatabaseThatRefusesWrites:
    def test_the_spool_keeps_its_files_and_its_bound_and_healthz_says_503(
        self, fresh_pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        engine = make_engine(fresh_pg_url)
        upgrade(engine)
        engine.dispose()
        set_read_only(fresh_pg_url, True)
        settings = Settings(
            database_url=fresh_pg_url,
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
            spool_dir=tmp_path / "spool",
            spool_max_bytes=4096,
            spool_drain_seconds=3600,  # the drainer's ticks are run by hand below
        )
        runtime = build_runtime(settings)
        try:
            spool = attach_spool(runtime)
            [drainer] = [h for h in runtime.helpers if h._name == "momo-spool-drainer"]
            tick = drainer._dispatch
            client = create_app(runtime=runtime).test_client()
            answers = []
            for n in range(12):
                response = client.post(
                    webhook_url("c2b/confirmation"),
                    data=confirmation(f"RO{n:08d}").body,
                    content_type="application/json",
                )
                answers.append(response.status_code)
                tick(False)  # the drainer, every few seconds meanwhile

            # acknowledged while the spool had room, refused (503) once its bound was reached
            assert answers[0] == 200 and 503 in answers
            assert answers == sorted(answers)
            acknowledged = answers.count(200)
            waiting = spool.pending_files()
            assert [p.name for p in waiting] == [spool.path.name]  # never renamed away
            assert sum(p.stat().st_size for p in waiting) <= 4096
            assert "the database takes no writes" in caplog.text
            assert "read-only" in caplog.text

            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.get_json()["database"] == "read_only"
            assert health.get_json()["spool"]["files"] == 1

            said = CliRunner().invoke(
                main,
                ["spool", "drain"],
                env={
                    "MOMO_DATABASE_URL": fresh_pg_url,
                    "MOMO_SPOOL_DIR": str(spool.directory),
                    "MOMO_BROKER_URL": None,
                },
            )
            assert said.exit_code == 1
            assert "takes no writes" in said.output
            assert "primary (read-write) database" in said.output

            # the primary is back: new connections take writes, and the spool drains
            set_read_only(fresh_pg_url, False)
            runtime.engine.dispose()
            tick(False)
            assert not spool.has_records()
            assert len(rows(runtime)) == acknowledged
            assert client.get("/healthz").status_code == 200

            # the webhook kept no connection that was made read-only: the next callback
            # goes straight to the inbox, not to the spool
            response = client.post(
                webhook_url("c2b/confirmation"),
                data=confirmation("RW00000001").body,
                content_type="application/json",
            )
            assert response.status_code == 200
            assert not spool.has_records()
            assert len(rows(runtime)) == acknowledged + 1
        finally:
            runtime.close()
