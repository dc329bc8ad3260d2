"""The spool: callbacks acknowledged while the database is down are never lost."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ingest.spool import Spool, SpoolFull, attach_spool
from matcher.db import make_engine
from matcher.migrate import upgrade
from matcher.models import Customer, InboxItem
from momo.app import create_app
from momo.config import Settings
from momo.runtime import Runtime, build_runtime
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, sample_bytes, webhook_url


def item(code: str = "TKQ4A91B2C") -> InboxItem:
    return InboxItem(
        provider="mpesa",
        kind="c2b/confirmation",
        body=sample_bytes("c2b_confirmation_paybill_plain.json"),
        headers={"Content-Type": "application/json"},
        client_addr="127.0.0.1",
        status="pending",
        code=code,
        attempts=0,
    )


def inbox_count(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return int(session.scalar(select(func.count()).select_from(InboxItem)) or 0)


class TestSpool:
    def test_a_spooled_callback_drains_into_the_inbox_once(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(item())
        spool.append(item("TKQ4A91B2D"))
        first = spool.drain(runtime.sessions)
        assert (first.stored, first.already_stored) == (2, 0)
        assert inbox_count(runtime) == 2
        assert not spool.has_records()
        assert spool.drain(runtime.sessions).stored == 0

    def test_a_drain_interrupted_after_storing_stores_nothing_twice(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(item())
        # a drain that committed but died before deleting its file leaves a .draining file
        claimed = spool._claim()
        with runtime.sessions.begin() as session:
            for record in Spool._records(claimed[0]):
                from ingest.spool import _item

                assert record is not None
                session.add(_item(record))
        result = spool.drain(runtime.sessions)
        assert (result.stored, result.already_stored) == (0, 1)
        assert inbox_count(runtime) == 1

    def test_the_spool_refuses_past_its_bound_and_says_so(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=3000, host="h1")
        spool.append(item())
        with pytest.raises(SpoolFull):
            for _ in range(10):
                spool.append(item())
        assert "SPOOL FULL" in caplog.text
        assert "MOMO_SPOOL_MAX_BYTES" in caplog.text

    def test_a_torn_last_line_is_skipped_and_counted(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(item())
        with spool.path.open("a") as f:
            f.write('{"spool_id": "half')
        result = spool.drain(runtime.sessions)
        assert (result.stored, result.unreadable) == (1, 1)

    def test_appends_racing_a_drain_are_all_stored(self, runtime: Runtime, tmp_path: Path) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 24, host="h1")
        stop = threading.Event()
        written: list[str] = []

        def writer() -> None:
            n = 0
            while not stop.is_set() or n < 50:
                written.append(spool.append(item(f"RACE{n:06d}")))
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        stored = 0
        for _ in range(20):
            stored += spool.drain(runtime.sessions).stored
        stop.set()
        thread.join()
        stored += spool.drain(runtime.sessions).stored
        assert stored == len(written) == inbox_count(runtime)

    def test_records_keep_the_raw_bytes_and_the_original_time(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        original = item()
        spool.append(original)
        line = json.loads(spool.path.read_text())
        assert line["spool_id"] == original.spool_id
        spool.drain(runtime.sessions)
        with runtime.sessions.begin() as session:
            stored = session.scalars(select(InboxItem)).one()
            assert stored.body == sample_bytes("c2b_confirmation_paybill_plain.json")
            assert stored.received_at == original.received_at
            assert stored.spool_id == original.spool_id


class TestWebhookDuringAnOutage:
    def test_a_callback_is_acknowledged_spooled_and_credited_when_the_database_is_back(
        self, tmp_path: Path
    ) -> None:
        db = tmp_path / "db" / "momo.db"
        settings = Settings(
            database_url=f"sqlite:///{db}",
            mpesa_path_token=PATH_TOKEN,
            instance_path=tmp_path / "instance",
            spool_drain_seconds=3600,  # drained by hand below
        )
        runtime = build_runtime(settings)
        spool = attach_spool(runtime)
        app = create_app(runtime=runtime)
        try:
            # the database's folder does not exist yet: every write fails
            response = app.test_client().post(
                webhook_url("c2b/confirmation"),
                data=sample_bytes("c2b_confirmation_paybill_plain.json"),
                content_type="application/json",
            )
            assert response.status_code == 200
            assert response.get_json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
            assert spool.has_records()

            db.parent.mkdir()
            engine = make_engine(settings.database_url)
            upgrade(engine)
            engine.dispose()
            add_customer(runtime, "ACC1042", [])
            assert spool.drain(runtime.sessions).stored == 1
            drain_inbox(runtime)
            with runtime.sessions.begin() as session:
                assert session.scalar(select(Customer.balance_minor)) == 150000
        finally:
            runtime.close()

    def test_when_neither_database_nor_spool_can_take_it_the_answer_is_503(
        self, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'missing' / 'momo.db'}",
            mpesa_path_token=PATH_TOKEN,
            spool_dir=blocker / "spool",  # under a file: cannot be created
            spool_drain_seconds=3600,
        )
        runtime = build_runtime(settings)
        attach_spool(runtime)
        app = create_app(runtime=runtime)
        try:
            response = app.test_client().post(
                webhook_url("c2b/confirmation"),
                data=sample_bytes("c2b_confirmation_paybill_plain.json"),
                content_type="application/json",
            )
            assert response.status_code == 503
            assert response.get_json()["ResultCode"] != 0
        finally:
            runtime.close()


class TestSpoolRaces:
    def test_a_record_appended_after_a_torn_line_is_kept(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(item("ACKED00001"))
        with spool.path.open("a") as f:
            f.write('{"spool_id": "torn-by-a-kill')  # a writer died mid-line
        spool.append(item("ACKED00002"))
        spool.append(item("ACKED00003"))
        result = spool.drain(runtime.sessions)
        assert (result.stored, result.unreadable) == (3, 1)
        with runtime.sessions.begin() as session:
            codes = sorted(session.scalars(select(InboxItem.code)))
        assert codes == ["ACKED00001", "ACKED00002", "ACKED00003"]

    def test_appenders_and_several_drainers_on_one_host_lose_nothing(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every web process drains its host's spool; acknowledged records must all arrive."""
        import fcntl
        import random
        import time

        import ingest.spool

        real_flock = fcntl.flock

        def slow_flock(fd: int, operation: int) -> None:
            time.sleep(random.uniform(0, 0.002))  # widen every race window
            real_flock(fd, operation)

        class SlowFcntl:
            LOCK_EX, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_NB
            flock = staticmethod(slow_flock)

        monkeypatch.setattr(ingest.spool, "fcntl", SlowFcntl)
        directory = tmp_path / "spool"
        acknowledged: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def appender(n: int) -> None:
            spool = Spool(directory, max_bytes=1 << 26, host="h1")
            for i in range(150):
                spool_id = spool.append(item(f"A{n}X{i:05d}"))
                with lock:
                    acknowledged.append(spool_id)

        def drainer() -> None:
            spool = Spool(directory, max_bytes=1 << 26, host="h1")
            while not stop.is_set():
                spool.drain(runtime.sessions)

        appenders = [threading.Thread(target=appender, args=(n,)) for n in range(3)]
        drainers = [threading.Thread(target=drainer) for _ in range(2)]
        for t in [*appenders, *drainers]:
            t.start()
        for t in appenders:
            t.join()
        stop.set()
        for t in drainers:
            t.join()
        Spool(directory, max_bytes=1 << 26, host="h1").drain(runtime.sessions)
        with runtime.sessions.begin() as session:
            stored = set(session.scalars(select(InboxItem.spool_id)))
        assert len(acknowledged) == 450
        assert set(acknowledged) <= stored
