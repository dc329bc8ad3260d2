"""The spool: callbacks acknowledged while the database is down are never lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from core.config import ConfigError, Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from ingest.refusal import UNSTORABLE
from ingest.spool import Spool, SpoolBusy, SpoolFull, _record, attach_spool
from matcher.db import make_engine, make_session_factory, utcnow
from matcher.migrate import upgrade
from matcher.models import Customer, InboxItem
from matcher.text import unfit
from momo.app import create_app
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, mpesa_block, sample, sample_bytes, webhook_url


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
            providers=mpesa_block(PATH_TOKEN),
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
            providers=mpesa_block(PATH_TOKEN),
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


def stk_failure(reference: str) -> bytes:
    """An unsuccessful STK result whose CheckoutRequestID (the inbox row's code) is ``reference``,
    written as JSON escapes, so the body itself is plain ASCII."""
    doc = sample("stk_callback_cancelled.json")
    doc["Body"]["stkCallback"]["CheckoutRequestID"] = reference
    return json.dumps(doc).encode()  # ensure_ascii: "\u0000", "\ud800" as escapes


def raw_record(spool: Spool, record: dict[str, Any]) -> None:
    """A record written into the spool as the webhook writes one, whatever it holds."""
    spool.directory.mkdir(parents=True, exist_ok=True)
    with spool.path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def spooled(code: str | None, **changes: Any) -> dict[str, Any]:
    original = item(code or "TKQ4A91B2C")
    original.received_at = utcnow()
    record = _record(original)
    record.update(spool_id=str(uuid.uuid4()), received_at=utcnow().isoformat(), code=code)
    record.update(changes)
    return record


def inbox_rows(runtime: Runtime) -> list[InboxItem]:
    with runtime.sessions.begin() as session:
        rows = list(session.scalars(select(InboxItem).order_by(InboxItem.id)))
        session.expunge_all()
        return rows


class TestUnstorableCallbacks:
    @pytest.mark.parametrize("reference", ["ws_CO_\x00191220", "ws_CO_\ud800191220"])
    def test_a_body_whose_text_no_database_stores_is_kept_as_rejected_and_answered_400(
        self, app: Flask, runtime: Runtime, reference: str
    ) -> None:
        # (a body the adapter refuses is never the fast path's: Flask answers it)
        body = stk_failure(reference)
        headers = {"Content-Type": "application/json"}
        response = app.test_client().post(webhook_url("stk"), data=body, headers=headers)

        assert response.status_code == 400
        answer = response.get_json()
        assert answer["ResultCode"] == 1
        # the adapter refuses a reference that cannot be one; the storability check is
        # behind it for whatever text the adapter lets through
        assert answer["reason"] in ("invalid_field", UNSTORABLE)
        [row] = inbox_rows(runtime)
        assert (row.status, row.reason) == ("rejected", answer["reason"])
        assert row.body == body  # the raw bytes, exactly as sent
        for text in (row.code, row.detail, row.reason):
            assert text is None or unfit(text) is None  # every stored text is storable
        assert runtime.spool is None or not runtime.spool.has_records()

    def test_during_an_outage_the_unstorable_callback_is_spooled_in_its_safe_form(
        self, tmp_path: Path
    ) -> None:
        db = tmp_path / "db" / "momo.db"
        settings = Settings(
            database_url=f"sqlite:///{db}",
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
        runtime = build_runtime(settings)
        runtime.spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        app = create_app(runtime=runtime)
        try:
            body = stk_failure("ws_CO_\ud800")
            response = app.test_client().post(
                webhook_url("stk"), data=body, content_type="application/json"
            )
            assert response.status_code == 400
            db.parent.mkdir()
            engine = make_engine(settings.database_url)
            upgrade(engine)
            engine.dispose()
            result = runtime.spool.drain(runtime.sessions)
            assert (result.stored, result.quarantined) == (1, 0)
            [row] = inbox_rows(runtime)
            assert row.status == "rejected"
            assert row.reason in ("invalid_field", UNSTORABLE)
            assert row.body == body
            assert all(text is None or unfit(text) is None for text in (row.code, row.detail))
        finally:
            runtime.close()


class TestPoisonInTheSpool:
    def test_a_poison_record_does_not_hold_back_the_good_ones_around_it(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.append(item("GOOD000001"))
        # what the webhook spooled before it knew better: a lone surrogate in the code
        raw_record(spool, spooled("ws_CO_\ud800"))
        spool.append(item("GOOD000002"))

        result = spool.drain(runtime.sessions)

        assert (result.stored, result.rejected, result.quarantined) == (3, 1, 0)
        assert not spool.has_records()
        rows = inbox_rows(runtime)
        assert [(r.code, r.status) for r in rows] == [
            ("GOOD000001", "pending"),
            ("ws_CO_\\ud800", "rejected"),
            ("GOOD000002", "pending"),
        ]
        assert rows[1].reason == UNSTORABLE
        assert "lone surrogate" in (rows[1].detail or "")

    def test_a_record_the_database_itself_refuses_is_stored_alone_in_its_safe_form(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        with runtime.engine.begin() as connection:
            # a refusal no check before the INSERT foresees; the safe form passes
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON inbox "
                "WHEN NEW.code = 'REFUSEDPEN' AND NEW.status <> 'rejected' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        spool.append(item("GOOD000001"))
        spool.append(item("REFUSEDPEN"))
        spool.append(item("GOOD000002"))

        result = spool.drain(runtime.sessions)

        assert (result.stored, result.rejected, result.quarantined) == (3, 1, 0)
        rows = {r.code: r for r in inbox_rows(runtime)}
        assert rows["GOOD000001"].status == rows["GOOD000002"].status == "pending"
        assert (rows["REFUSEDPEN"].status, rows["REFUSEDPEN"].reason) == ("rejected", UNSTORABLE)
        assert "refused by a trigger" in (rows["REFUSEDPEN"].detail or "")

    def test_what_no_database_takes_is_quarantined_once_and_blocks_nothing(
        self, runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        refused = spooled("REFUSED001", client_addr="refuse-me")
        with runtime.engine.begin() as connection:  # a database that refuses this row in any form
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.client_addr = 'refuse-me' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        spool.append(item("GOOD000001"))
        raw_record(spool, refused)
        raw_record(spool, {"spool_id": "not-a-record"})
        spool.append(item("GOOD000002"))

        result = spool.drain(runtime.sessions)

        assert (result.stored, result.quarantined) == (2, 2)
        assert not spool.has_records()
        assert sorted(r.code for r in inbox_rows(runtime)) == ["GOOD000001", "GOOD000002"]
        kept = [json.loads(line) for line in spool.quarantine_path.read_text().splitlines()]
        assert [k["record"] for k in kept] == [{"spool_id": "not-a-record"}, refused]
        assert "refused by a trigger" in kept[1]["reason"]
        assert "SPOOL RECORD QUARANTINED" in caplog.text
        assert str(spool.quarantine_path) in caplog.text
        # a drain that stopped after quarantining reads the record again: kept once
        raw_record(spool, refused)
        assert spool.drain(runtime.sessions).quarantined == 1
        assert len(spool.quarantine_path.read_text().splitlines()) == 2


class TestEveryHostsSpool:
    def test_a_drainer_drains_the_file_of_a_host_that_is_gone(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        directory = tmp_path / "spool"
        Spool(directory, max_bytes=1 << 20, host="old-name").append(item("ORPHAN0001"))

        result = Spool(directory, max_bytes=1 << 20, host="new-name").drain(runtime.sessions)

        assert (result.files, result.stored) == (1, 1)
        assert [r.code for r in inbox_rows(runtime)] == ["ORPHAN0001"]
        assert list(directory.glob("spool-*")) == []

    def test_writers_and_drainers_on_several_hosts_sharing_the_directory_lose_nothing(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
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

        def appender(host: str, n: int) -> None:
            spool = Spool(directory, max_bytes=1 << 26, host=host)
            for i in range(120):
                spool_id = spool.append(item(f"{host[-1]}{n}X{i:05d}"))
                with lock:
                    acknowledged.append(spool_id)

        def drainer(host: str) -> None:
            spool = Spool(directory, max_bytes=1 << 26, host=host)
            while not stop.is_set():
                spool.drain(runtime.sessions)

        # host-a only writes (its drainer is elsewhere), host-c only drains (a new container)
        writing, draining = ("host-a", "host-b"), ("host-b", "host-c")
        appenders = [
            threading.Thread(target=appender, args=(h, n)) for h in writing for n in (1, 2)
        ]
        drainers = [threading.Thread(target=drainer, args=(h,)) for h in draining]
        for t in [*appenders, *drainers]:
            t.start()
        for t in appenders:
            t.join()
        stop.set()
        for t in drainers:
            t.join()
        # no writing host drains last: the new one, with both hosts' leftovers to find
        Spool(directory, max_bytes=1 << 26, host="host-c").drain(runtime.sessions)

        with runtime.sessions.begin() as session:
            stored = list(session.scalars(select(InboxItem.spool_id)))
        assert len(acknowledged) == 480
        assert sorted(stored) == sorted(acknowledged)  # each once
        assert list(directory.glob("spool-*")) == []


class TestSpoolDirectoryAtStart:
    def test_a_web_app_whose_spool_directory_cannot_be_created_refuses_to_start(
        self, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            spool_dir=blocker / "spool",  # under a regular file: root cannot create it either
        )
        with pytest.raises(ConfigError) as refused:
            create_app(settings)
        message = str(refused.value)
        assert str(blocker / "spool") in message
        assert "MOMO_SPOOL_DIR" in message
        assert "Not a directory" in message

    def test_a_usable_spool_directory_is_created_at_start_and_left_empty(
        self, tmp_path: Path
    ) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            spool_dir=tmp_path / "new" / "spool",
            spool_drain_seconds=3600,
        )
        app = create_app(settings)
        try:
            assert (tmp_path / "new" / "spool").is_dir()
            assert list((tmp_path / "new" / "spool").iterdir()) == []
        finally:
            app.extensions["momo"].close()

    @pytest.mark.parametrize(
        "argv",
        [
            # one worker: when two fail to load at once, gunicorn itself may print a
            # traceback of its own while halting (a race in its arbiter, not momo's output)
            ["gunicorn", "--workers", "1", "--bind", "127.0.0.1:0", "momo.wsgi:web()"],
            ["momo", "serve", "--port", "0"],
        ],
        ids=["gunicorn", "momo-serve"],
    )
    def test_the_server_stops_with_one_line_naming_the_path_not_a_traceback(
        self, tmp_path: Path, argv: list[str]
    ) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOMO_")}
        env.update(
            MOMO_DATABASE_URL=f"sqlite:///{tmp_path / 'momo.db'}",
            MOMO_MPESA_PATH_TOKEN=PATH_TOKEN * 2,
            MOMO_INSTANCE_PATH=str(tmp_path / "instance"),
            MOMO_SPOOL_DIR=str(blocker / "spool"),
        )
        command = [str(Path(sys.executable).parent / argv[0]), *argv[1:]]
        try:
            done = subprocess.run(
                command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{argv[0]} started with an unusable spool directory")
        output = done.stdout + done.stderr
        assert done.returncode != 0
        assert "Traceback" not in output
        [line] = [line for line in output.splitlines() if "MOMO_SPOOL_DIR" in line][:1]
        assert str(blocker / "spool") in line


class TestAFullDisk:
    def test_a_record_the_disk_cuts_short_is_undone_and_never_acknowledged(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A file-size limit stands in for a full disk: write() takes part of the line."""
        scratch = Spool(tmp_path / "scratch", max_bytes=1 << 20, host="h1")
        scratch.append(item())
        line = scratch.path.stat().st_size
        limit = line * 5 // 2  # two whole records, and half of a third
        directory = tmp_path / "spool"
        script = (
            "import json, resource, signal, sys\n"
            "from pathlib import Path\n"
            "from ingest.spool import Spool\n"
            "from tests.unit.test_spool import item\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, host='h1')\n"
            "spool.directory.mkdir()\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))\n"
            "acked, failed = [], []\n"
            "for n in range(6):\n"
            "    try:\n"
            "        acked.append(spool.append(item(f'FULL{n:06d}')))\n"
            "    except OSError as exc:\n"
            "        failed.append(exc.errno)\n"
            "print(json.dumps({'acked': acked, 'failed': failed}))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(directory), str(limit)],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outcome = json.loads(done.stdout.splitlines()[-1])

        assert len(outcome["acked"]) == 2
        assert len(outcome["failed"]) == 4  # refused: the caller answers 503
        spool = Spool(directory, max_bytes=1 << 20, host="h1")
        raw = spool.path.read_bytes()
        assert raw.endswith(b"\n")  # the partial record was taken back
        assert [json.loads(x)["spool_id"] for x in raw.splitlines()] == outcome["acked"]
        result = spool.drain(runtime.sessions)
        assert (result.stored, result.unreadable) == (2, 0)


class TestTheBound:
    def test_files_a_failed_drain_left_behind_count_against_the_bound(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=4096, host="h1")
        Spool(spool.directory, max_bytes=4096, host="h2").append(item())  # another host's
        for _ in range(4):
            with pytest.raises(SpoolFull):
                for _ in range(10):
                    spool.append(item())
            # a drain claimed the live file, then could not store it (the database refused)
            spool._claim()

        waiting = sum(p.stat().st_size for p in spool.pending_files())
        assert 0 < waiting <= 4096
        assert spool.backlog() == {"files": len(spool.pending_files()), "bytes": waiting}
        assert f"SPOOL FULL: {spool.directory} holds" in caplog.text


def lock_holder(path: Path) -> subprocess.Popen[str]:
    """Another process holding the spool file's lock (a writer stuck in fsync, say)."""
    script = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    holder.communicate(timeout=30)  # its stdin closes: it exits, and the lock is free


class TestAHeldLock:
    def test_a_writer_gives_up_on_a_lock_held_too_long_and_the_callback_gets_503(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'missing' / 'momo.db'}",  # unreachable
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
        runtime = build_runtime(settings)
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1")
        spool.lock_timeout = 0.2
        runtime.spool = spool
        app = create_app(runtime=runtime)
        holder = lock_holder(spool.path)
        answers: list[int] = []

        def post() -> None:
            response = app.test_client().post(
                webhook_url("c2b/confirmation"),
                data=sample_bytes("c2b_confirmation_paybill_plain.json"),
                content_type="application/json",
            )
            answers.append(response.status_code)

        try:
            request = threading.Thread(target=post, daemon=True)
            request.start()
            request.join(timeout=60)  # a guard against hanging, not a measure of speed
            assert not request.is_alive(), "the webhook waited on the spool's lock for good"
            assert answers == [503]
            assert spool.path.read_bytes() == b""  # nothing written, nothing acknowledged
            assert "SPOOL LOCKED" in caplog.text
            assert str(spool.path) in caplog.text
        finally:
            release(holder)
            runtime.close()
        spool.append(item())  # the lock is free again: the spool takes callbacks
        assert spool.has_records()

    def test_append_raises_spool_busy_while_another_process_holds_the_lock(
        self, tmp_path: Path
    ) -> None:
        spool = Spool(tmp_path / "spool", max_bytes=1 << 20, host="h1", lock_timeout=0.1)
        holder = lock_holder(spool.path)
        try:
            with pytest.raises(SpoolBusy):
                spool.append(item())
        finally:
            release(holder)


def spool_drainer(runtime: Runtime) -> Any:
    """attach_spool's drain step, to run by hand (its thread ticks only once an hour here)."""
    [drainer] = [h for h in runtime.helpers if getattr(h, "_name", "") == "momo-spool-drainer"]
    return drainer._dispatch


class TestAnotherUsersFiles:
    def test_a_drain_lock_the_drainer_cannot_open_is_named_in_the_log_not_raised(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            spool_dir=tmp_path / "spool",
            spool_drain_seconds=3600,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        runtime = build_runtime(settings)
        try:
            spool = attach_spool(runtime)
            spool.append(item())
            (spool.directory / "drain.lock").mkdir()  # unusable even by root

            spool_drainer(runtime)(False)

            assert "SPOOL NOT DRAINED" in caplog.text
            assert str(spool.directory / "drain.lock") in caplog.text
            assert "chown" in caplog.text
            assert spool.has_records()
        finally:
            runtime.close()

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to act as root and as nobody")
    def test_a_drain_run_by_root_leaves_the_spool_usable_by_its_owner(self) -> None:
        import pwd
        import shutil
        import tempfile

        nobody = pwd.getpwnam("nobody")
        # not under pytest's tmp_path: its parents are root's alone
        base = Path(tempfile.mkdtemp(prefix="momo-spool-owner-"))
        try:
            base.chmod(0o755)
            directory = base / "spool"
            directory.mkdir()
            database = base / "momo.db"
            engine = make_engine(f"sqlite:///{database}")
            upgrade(engine)
            engine.dispose()
            root_spool = Spool(directory, max_bytes=1 << 20, host="h1")
            root_spool.append(item("FIRST00001"))
            for path in [base, directory, database, root_spool.path]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            runtime = build_runtime(
                Settings(database_url=f"sqlite:///{database}", providers=mpesa_block(PATH_TOKEN))
            )
            try:
                assert root_spool.drain(runtime.sessions).stored == 1  # as root, by hand
            finally:
                runtime.close()
            for path in base.iterdir():  # the database's journal files, made by root
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            # the web processes' own drainer, as the directory's owner (a fork: the
            # interpreter under /root is not for nobody to start)
            stored = as_user(nobody, lambda: drain_as_owner(directory, database))
            assert stored == 1
            lock = (directory / "drain.lock").stat()
            assert (lock.st_uid, lock.st_gid) == (nobody.pw_uid, nobody.pw_gid)
        finally:
            shutil.rmtree(base)


def drain_as_owner(directory: Path, database: Path) -> int:
    spool = Spool(directory, max_bytes=1 << 20, host="h1")
    spool.append(item("SECOND0001"))
    engine = make_engine(f"sqlite:///{database}")
    try:
        return spool.drain(make_session_factory(engine)).stored
    finally:
        engine.dispose()


def as_user(user: Any, work: Any) -> Any:
    """``work()`` run in a child process with ``user``'s ids: its (JSON) result, or its error."""
    import traceback

    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(readable)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            try:
                outcome = ("ok", work())
            except BaseException as exc:
                outcome = ("error", f"{exc!r}\n{traceback.format_exc()}")
            with os.fdopen(writable, "w") as out:
                json.dump(outcome, out)
            status = 0
        finally:
            os._exit(status)
    os.close(writable)
    with os.fdopen(readable) as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and data, "the child process failed before it could answer"
    kind, value = json.loads(data)
    assert kind == "ok", value
    return value
