"""The queued-task flag: one Celery message per burst, and no inbox row left behind.

The web side sends ``momo.process_inbox`` only when it sets the Redis key; the
task deletes the key as it starts, before its first claim, so a row whose nudge
found the key set is claimed by the task waiting in the queue, and a row
committed after that claim finds the key free and sends a task of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from sqlalchemy import select

import tasks.embedded
import tasks.tasks
from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from ingest.store import InboxWriter, inbox_row
from matcher.models import INBOX_PENDING, InboxItem
from tasks.celery_app import PROCESS_INBOX
from tasks.embedded import attach_queue, broker_nudger
from tasks.nudge import QUEUED_KEY, QueuedFlag
from tasks.runtime import set_process_runtime
from tasks.work import DrainResult, drain_inbox
from tests.conftest import add_customer, sample_bytes
from tests.unit.test_nudge import wait_for

REDIS_BROKER = "redis://127.0.0.1:6379/5"


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def redis_client(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def flag(redis_client: fakeredis.FakeRedis) -> QueuedFlag:
    return QueuedFlag(redis_client)


class FakeProducer:
    """A Celery producer that records what it was asked to send, or fails like a broker down."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failing = False

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> None:
        if self.failing:
            raise ConnectionError("broker unreachable")
        self.sent.append(name)


# --- QueuedFlag ------------------------------------------------------------------------------


class TestQueuedFlag:
    def test_take_succeeds_once_and_not_again_while_the_key_is_set(
        self, flag: QueuedFlag, redis_client: fakeredis.FakeRedis
    ) -> None:
        assert flag.take() is True
        assert redis_client.exists(QUEUED_KEY) == 1
        assert flag.take() is False
        assert flag.take() is False

    def test_after_drop_the_next_take_succeeds(
        self, flag: QueuedFlag, redis_client: fakeredis.FakeRedis
    ) -> None:
        assert flag.take()
        flag.drop()

        assert redis_client.exists(QUEUED_KEY) == 0
        assert flag.take() is True
        assert flag.take() is False

    def test_two_handles_on_one_redis_share_the_flag(self, server: fakeredis.FakeServer) -> None:
        web = QueuedFlag(fakeredis.FakeRedis(server=server))
        worker = QueuedFlag(fakeredis.FakeRedis(server=server))

        assert web.take()
        assert not worker.take()
        worker.drop()
        assert web.take()

    def test_the_key_expires_after_its_ttl_so_a_lost_task_blocks_nudges_only_that_long(
        self, redis_client: fakeredis.FakeRedis
    ) -> None:
        flag = QueuedFlag(redis_client, ttl=0.2)

        assert flag.take()
        assert 0 < redis_client.pttl(QUEUED_KEY) <= 200
        time.sleep(0.4)

        assert redis_client.exists(QUEUED_KEY) == 0
        assert flag.take() is True

    def test_the_default_ttl_is_set_on_the_key(
        self, flag: QueuedFlag, redis_client: fakeredis.FakeRedis
    ) -> None:
        flag.take()

        assert 29_000 < redis_client.pttl(QUEUED_KEY) <= 30_000

    @pytest.mark.parametrize(
        "url", [None, "", "amqp://guest@localhost//", "amqps://h//", "memory://"]
    )
    def test_for_broker_gives_no_flag_off_redis(self, url: str | None) -> None:
        assert QueuedFlag.for_broker(url) is None

    @pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/5", "rediss://cache.example:6380/5"])
    def test_for_broker_on_redis_uses_the_brokers_database(self, url: str) -> None:
        flag = QueuedFlag.for_broker(url)  # connects lazily: nothing needs to be running

        assert flag is not None
        try:
            assert flag.client.connection_pool.connection_kwargs["db"] == 5
            assert flag.ttl_ms == 30_000
        finally:
            flag.close()


# --- the broker nudger's dispatch ------------------------------------------------------------


@pytest.fixture
def broker_runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings.with_overrides(broker_url=REDIS_BROKER))
    yield rt
    rt.close()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(tasks.embedded, "make_producer", lambda settings: fake)
    return fake


def use_flag(monkeypatch: pytest.MonkeyPatch, flag: QueuedFlag | None) -> list[str | None]:
    """Make the nudger's flag ``flag``; returns the broker URLs it was asked for."""
    seen: list[str | None] = []

    def for_broker(url: str | None) -> QueuedFlag | None:
        seen.append(url)
        return flag

    monkeypatch.setattr(QueuedFlag, "for_broker", staticmethod(for_broker))
    return seen


class TestBrokerNudger:
    def test_a_nudge_with_the_flag_free_sends_exactly_one_task_and_takes_the_flag(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        asked = use_flag(monkeypatch, flag)
        dispatch = broker_nudger(broker_runtime)._dispatch

        dispatch(True)

        assert asked == [REDIS_BROKER]
        assert producer.sent == [PROCESS_INBOX]
        assert redis_client.exists(QUEUED_KEY) == 1

    def test_a_nudge_while_the_flag_is_held_sends_nothing(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        flag: QueuedFlag,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_flag(monkeypatch, flag)
        dispatch = broker_nudger(broker_runtime)._dispatch
        assert flag.take()  # a task is already queued

        dispatch(True)
        dispatch(True)

        assert producer.sent == []

    def test_after_the_task_drops_the_flag_the_next_nudge_sends_again(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        flag: QueuedFlag,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_flag(monkeypatch, flag)
        dispatch = broker_nudger(broker_runtime)._dispatch

        dispatch(True)
        dispatch(True)
        flag.drop()  # what process_inbox does when it finds the inbox empty
        dispatch(True)

        assert producer.sent == [PROCESS_INBOX, PROCESS_INBOX]

    def test_an_idle_tick_sends_nothing(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_flag(monkeypatch, flag)
        dispatch = broker_nudger(broker_runtime)._dispatch

        dispatch(False)

        assert producer.sent == []
        assert redis_client.exists(QUEUED_KEY) == 0

    def test_a_failed_send_drops_the_flag_so_the_next_nudge_tries_again(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_flag(monkeypatch, flag)
        dispatch = broker_nudger(broker_runtime)._dispatch
        producer.failing = True

        with pytest.raises(ConnectionError):
            dispatch(True)

        assert redis_client.exists(QUEUED_KEY) == 0
        producer.failing = False
        dispatch(True)
        assert producer.sent == [PROCESS_INBOX]
        assert redis_client.exists(QUEUED_KEY) == 1

    def test_with_redis_unreachable_every_nudge_still_sends(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        server: fakeredis.FakeServer,
        flag: QueuedFlag,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_flag(monkeypatch, flag)
        dispatch = broker_nudger(broker_runtime)._dispatch
        server.connected = False

        dispatch(True)
        dispatch(True)

        assert producer.sent == [PROCESS_INBOX, PROCESS_INBOX]

    def test_off_redis_every_nudge_sends(
        self, broker_runtime: Runtime, producer: FakeProducer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        use_flag(monkeypatch, None)
        dispatch = broker_nudger(broker_runtime)._dispatch

        dispatch(True)
        dispatch(True)

        assert producer.sent == [PROCESS_INBOX, PROCESS_INBOX]

    def test_the_runtimes_nudge_reaches_the_broker_through_the_nudger_thread(
        self,
        broker_runtime: Runtime,
        producer: FakeProducer,
        flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_flag(monkeypatch, flag)
        attach_queue(broker_runtime)

        broker_runtime.nudge()

        assert wait_for(lambda: producer.sent == [PROCESS_INBOX])
        assert redis_client.exists(QUEUED_KEY) == 1
        assert flag in broker_runtime.helpers  # closed with the runtime


# --- process_inbox's side of the protocol ----------------------------------------------------


def add_pending(runtime: Runtime, code: str, account: str = "ACC1042") -> None:
    """A confirmation committed by the web side, as the inbox writer stores it."""
    body = sample_bytes("c2b_confirmation_paybill_plain.json")
    body = body.replace(b"TKQ4A91B2C", code.encode()).replace(b"ACC1042", account.encode())
    InboxWriter(runtime.engine, owned=False).store(
        inbox_row(provider="mpesa", kind="c2b/confirmation", body=body, code=code)
    )


def statuses(runtime: Runtime) -> dict[str, str]:
    with runtime.sessions() as session:
        return {
            item.code or "": item.status
            for item in session.scalars(select(InboxItem).order_by(InboxItem.id))
        }


@pytest.fixture
def worker_runtime(settings: Settings) -> Iterator[Runtime]:
    """The migrated test database as this process's runtime, as a worker process has it."""
    from matcher.db import make_engine
    from matcher.migrate import upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    rt = build_runtime(settings.with_overrides(broker_url=REDIS_BROKER, batch_size=2))
    set_process_runtime(rt)
    add_customer(rt, "ACC1042", [])
    yield rt
    set_process_runtime(None)
    rt.close()


@pytest.fixture
def task_flag(flag: QueuedFlag, monkeypatch: pytest.MonkeyPatch) -> QueuedFlag:
    monkeypatch.setattr(tasks.tasks, "queued_flag", lambda broker_url: flag)
    return flag


@pytest.fixture
def sent_by_task(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(
        tasks.tasks.process_inbox.app, "send_task", lambda name, *a, **k: sent.append(name)
    )
    return sent


class TestProcessInbox:
    def test_it_processes_every_pending_row_and_leaves_the_flag_free(
        self,
        worker_runtime: Runtime,
        task_flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        sent_by_task: list[str],
    ) -> None:
        for n in range(5):  # more than one batch of 2
            add_pending(worker_runtime, f"TKFLAG{n:04d}")
        assert task_flag.take()  # as the web side did before sending the task

        result = tasks.tasks.process_inbox.run()

        assert redis_client.exists(QUEUED_KEY) == 0
        assert statuses(worker_runtime) == {f"TKFLAG{n:04d}": "processed" for n in range(5)}
        assert result["claimed"] == 5
        assert result["more"] is False
        assert sent_by_task == []

    def test_the_flag_is_released_before_the_first_claim(
        self,
        worker_runtime: Runtime,
        task_flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        sent_by_task: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        add_pending(worker_runtime, "TKFIRST001")
        assert task_flag.take()
        flag_set_at_claim: list[int] = []

        def drain(runtime: Runtime, **kwargs: Any) -> DrainResult:
            flag_set_at_claim.append(int(redis_client.exists(QUEUED_KEY)))
            return drain_inbox(runtime, **kwargs)

        monkeypatch.setattr(tasks.tasks, "drain_inbox", drain)

        tasks.tasks.process_inbox.run()

        assert flag_set_at_claim == [0]
        assert statuses(worker_runtime) == {"TKFIRST001": "processed"}

    def test_a_row_whose_nudge_found_the_flag_set_is_claimed_by_the_queued_task(
        self,
        worker_runtime: Runtime,
        task_flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        sent_by_task: list[str],
    ) -> None:
        add_pending(worker_runtime, "TKSENT0001")
        assert task_flag.take()  # this nudge sends the task
        add_pending(worker_runtime, "TKSKIP0001")
        assert not task_flag.take()  # this one relies on the task already queued

        tasks.tasks.process_inbox.run()

        assert statuses(worker_runtime) == {"TKSENT0001": "processed", "TKSKIP0001": "processed"}
        assert redis_client.exists(QUEUED_KEY) == 0

    def test_a_row_committed_while_the_task_drains_gets_a_task_of_its_own(
        self,
        worker_runtime: Runtime,
        task_flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        sent_by_task: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """After the task's last claim the flag is free, so the late row's nudge sends."""
        add_pending(worker_runtime, "TKEARLY001")
        assert task_flag.take()
        late_nudge_sent: list[bool] = []

        def drain_then_a_callback_arrives(runtime: Runtime, **kwargs: Any) -> DrainResult:
            result = drain_inbox(runtime, **kwargs)
            add_pending(runtime, "TKLATE0001")
            late_nudge_sent.append(task_flag.take())  # the web side's nudge
            return result

        monkeypatch.setattr(tasks.tasks, "drain_inbox", drain_then_a_callback_arrives)
        tasks.tasks.process_inbox.run()

        assert late_nudge_sent == [True]
        # the flag now belongs to the task that nudge queued: this task must not free it
        assert redis_client.exists(QUEUED_KEY) == 1
        assert statuses(worker_runtime) == {"TKEARLY001": "processed", "TKLATE0001": "pending"}

        monkeypatch.setattr(tasks.tasks, "drain_inbox", drain_inbox)
        tasks.tasks.process_inbox.run()  # the task the late nudge sent

        assert statuses(worker_runtime) == {"TKEARLY001": "processed", "TKLATE0001": "processed"}
        assert redis_client.exists(QUEUED_KEY) == 0

    def test_with_redis_unreachable_the_task_still_drains_everything(
        self,
        worker_runtime: Runtime,
        task_flag: QueuedFlag,
        server: fakeredis.FakeServer,
        sent_by_task: list[str],
    ) -> None:
        for n in range(3):
            add_pending(worker_runtime, f"TKDOWN{n:04d}")
        server.connected = False

        result = tasks.tasks.process_inbox.run()

        assert result["claimed"] == 3
        assert set(statuses(worker_runtime).values()) == {"processed"}

    def test_off_redis_it_drains_without_a_flag(
        self, worker_runtime: Runtime, sent_by_task: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tasks.tasks, "queued_flag", lambda broker_url: None)
        add_pending(worker_runtime, "TKNOFLAG01")

        result = tasks.tasks.process_inbox.run()

        assert result["claimed"] == 1
        assert statuses(worker_runtime) == {"TKNOFLAG01": "processed"}

    def test_when_the_time_budget_runs_out_the_rest_goes_to_a_fresh_task(
        self,
        worker_runtime: Runtime,
        task_flag: QueuedFlag,
        redis_client: fakeredis.FakeRedis,
        sent_by_task: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        for n in range(3):
            add_pending(worker_runtime, f"TKBUDGT{n:03d}")
        assert task_flag.take()

        def one_batch_only(runtime: Runtime, **kwargs: Any) -> DrainResult:
            return drain_inbox(runtime, time_budget=-1.0)  # out of time after one batch

        monkeypatch.setattr(tasks.tasks, "drain_inbox", one_batch_only)

        result = tasks.tasks.process_inbox.run()

        assert result["more"] is True
        assert sent_by_task == [PROCESS_INBOX]
        assert INBOX_PENDING in statuses(worker_runtime).values()
        assert redis_client.exists(QUEUED_KEY) == 0
