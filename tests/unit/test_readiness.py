"""/readyz says whether payments would be worked end to end now, and names what fails;
workers note their heartbeat for it; a worker's limits and its SIGTERM.

The database, broker and worker parts fail here one at a time: an unreachable
PostgreSQL, a broker on a closed port, a worker never or long not heard of.
tests/integration/test_readiness.py asks a real stack.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from core.config import ConfigError, Settings, load_settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from matcher.db import Base, utcnow
from matcher.heartbeats import FORGET_AFTER, last_heartbeat, record_heartbeat
from matcher.models import InboxItem, WorkerHeartbeat
from momo.app import create_api_app, create_web_app
from tasks import heartbeat, work
from tasks.celery_app import (
    PROCESS_INBOX,
    PULL_PAYMENTS,
    SETTLE_REQUESTS,
    SWEEP_INBOX,
    celery_config,
    time_limits,
    visibility_timeout,
)
from tests.conftest import BuildClient, sample_bytes

HEARTBEATS = Base.metadata.tables["worker_heartbeats"]


def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seen(runtime: Runtime, ago: timedelta, hostname: str = "worker@host") -> None:
    with runtime.sessions.begin() as session:
        record_heartbeat(session, hostname, now=utcnow() - ago)


@pytest.fixture(autouse=True)
def _fresh_heartbeat_state() -> Iterator[None]:
    heartbeat._last = None
    work.stopping.clear()
    yield
    heartbeat._last = None
    work.stopping.clear()


class TestReady:
    def test_the_embedded_default_with_its_worker_heard_of_answers_200_ready(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        seen(runtime, timedelta(seconds=5))

        response = client.get("/readyz")

        assert response.status_code == 200
        assert response.get_json() == {
            "status": "ready",
            "database": "ok",
            "broker": "embedded",
            "worker": "ok",
        }

    @pytest.mark.parametrize("make", [create_web_app, create_api_app], ids=["web", "api"])
    def test_web_and_api_each_answer_it(self, runtime: Runtime, make: Callable[..., Flask]) -> None:
        seen(runtime, timedelta(0))
        app = make(runtime=runtime)

        response = app.test_client().get("/readyz")

        assert response.status_code == 200
        assert response.get_json()["status"] == "ready"


class TestNotReady:
    def test_no_worker_ever_heard_of_answers_503_naming_the_worker(
        self, client: FlaskClient
    ) -> None:
        response = client.get("/readyz")

        assert response.status_code == 503
        assert response.get_json() == {
            "status": "not_ready",
            "database": "ok",
            "broker": "embedded",
            "worker": "not seen yet",
        }

    def test_a_worker_last_heard_of_too_long_ago_is_named_with_when(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        within = runtime.settings.worker_seen_within_seconds
        seen(runtime, timedelta(seconds=within + 30), "worker@old")
        with runtime.sessions() as session:
            when = last_heartbeat(session)
        assert when is not None

        body = client.get("/readyz").get_json()

        assert body["status"] == "not_ready"
        assert body["database"] == "ok"
        assert body["worker"] == f"not seen since {when.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def test_the_latest_of_several_workers_counts(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        seen(runtime, timedelta(hours=3), "worker@gone")
        seen(runtime, timedelta(seconds=1), "worker@here")

        assert client.get("/readyz").status_code == 200

    def test_an_unreachable_database_answers_503_naming_it_and_the_worker_unknown(
        self, build_client: BuildClient
    ) -> None:
        url = f"postgresql+psycopg://momo@127.0.0.1:{closed_port()}/momo"
        client, _ = build_client(database_url=url)

        response = client.get("/readyz")

        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "not_ready"
        assert body["database"] == "OperationalError"
        assert body["broker"] == "embedded"
        assert body["worker"] == "unknown: the database did not answer"
        # /healthz keeps its own answer
        assert client.get("/healthz").get_json()["database"] == "OperationalError"

    @pytest.mark.parametrize("scheme", ["redis", "amqp"])
    def test_a_broker_on_a_closed_port_answers_503_naming_the_broker(
        self,
        build_client: BuildClient,
        runtime: Runtime,
        scheme: str,
    ) -> None:
        seen(runtime, timedelta(0))
        client, _ = build_client(broker_url=f"{scheme}://127.0.0.1:{closed_port()}/0")

        response = client.get("/readyz")

        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "not_ready"
        assert body["database"] == "ok"
        assert body["broker"] not in ("ok", "embedded")
        assert body["broker"].endswith("Error")
        assert body["worker"] == "ok"

    @pytest.mark.parametrize("scheme", ["redis", "amqp"])
    def test_a_broker_that_takes_the_connection_and_never_answers_is_given_up_on(
        self,
        build_client: BuildClient,
        runtime: Runtime,
        scheme: str,
    ) -> None:
        seen(runtime, timedelta(0))
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)  # the kernel takes the connection; nobody ever answers
            port = silent.getsockname()[1]
            client, _ = build_client(
                broker_url=f"{scheme}://127.0.0.1:{port}/0", db_write_timeout_seconds=1
            )

            body = client.get("/readyz").get_json()

        assert body["status"] == "not_ready"
        assert body["broker"] in ("TimeoutError", "OperationalError")
        assert body["worker"] == "ok"

    def test_a_database_without_the_heartbeats_table_names_the_worker_unknown(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        # a web process started before `momo db upgrade` added the table
        HEARTBEATS.drop(runtime.engine)

        body = client.get("/readyz").get_json()

        assert body["database"] == "ok"
        assert body["worker"].startswith("unknown: ")


# --- the heartbeat ------------------------------------------------------------------------


def add_pending(runtime: Runtime, count: int) -> None:
    body = sample_bytes("c2b_confirmation_paybill_plain.json")
    with runtime.sessions.begin() as session:
        for n in range(count):
            code = f"TKBEAT{n:04d}"
            session.add(
                InboxItem(
                    provider="mpesa",
                    kind="c2b/confirmation",
                    body=body.replace(b"TKQ4A91B2C", code.encode()),
                    headers={},
                )
            )


def heartbeats(runtime: Runtime) -> dict[str, object]:
    with runtime.sessions() as session:
        rows = session.execute(select(WorkerHeartbeat.hostname, WorkerHeartbeat.seen_at))
        return {hostname: seen_at for hostname, seen_at in rows}


class TestHeartbeat:
    def test_a_drain_notes_this_workers_heartbeat(self, runtime: Runtime) -> None:
        heartbeat.name_this_worker("worker@drain")
        try:
            work.drain_inbox(runtime)
        finally:
            heartbeat.name_this_worker(f"serve@{socket.gethostname()}")

        assert list(heartbeats(runtime)) == ["worker@drain"]

    def test_a_process_notes_it_at_most_every_half_sweep_interval(self, runtime: Runtime) -> None:
        assert heartbeat.beat(runtime) is True
        first = heartbeats(runtime)

        assert heartbeat.beat(runtime) is False
        assert heartbeats(runtime) == first

    def test_a_database_that_cannot_take_it_is_logged_and_tried_again_next_time(
        self, runtime: Runtime, caplog: pytest.LogCaptureFixture
    ) -> None:
        HEARTBEATS.drop(runtime.engine)

        assert heartbeat.beat(runtime) is False
        assert "cannot note this worker's heartbeat" in caplog.text
        HEARTBEATS.create(runtime.engine)
        assert heartbeat.beat(runtime) is True

    def test_a_worker_silent_for_a_week_is_forgotten_as_others_beat(self, runtime: Runtime) -> None:
        seen(runtime, FORGET_AFTER + timedelta(minutes=1), "worker@gone")
        seen(runtime, timedelta(0), "worker@here")

        assert list(heartbeats(runtime)) == ["worker@here"]


class TestStopping:
    def test_a_stopping_drain_ends_after_the_batch_in_hand(self, runtime: Runtime) -> None:
        rt = build_runtime(runtime.settings.with_overrides(batch_size=2))
        try:
            add_pending(rt, 5)
            work.stopping.set()

            result = work.drain_inbox(rt)
        finally:
            rt.close()

        assert (result.batches, result.claimed, result.more) == (1, 2, True)
        with runtime.sessions() as session:
            statuses = sorted(session.scalars(select(InboxItem.status)))
        assert statuses == ["pending"] * 3 + ["processed"] * 2


# --- settings and the worker's limits -----------------------------------------------------


class TestWorkerSeenWithin:
    def test_it_is_a_minute_by_default_or_four_sweep_intervals_when_longer(self) -> None:
        assert load_settings({}).worker_seen_within_seconds == 60
        longer = {"MOMO_SWEEP_INTERVAL_SECONDS": "30"}
        assert load_settings(longer).worker_seen_within_seconds == 120

    def test_less_than_two_sweep_intervals_is_refused_naming_both(self) -> None:
        env = {"MOMO_SWEEP_INTERVAL_SECONDS": "15", "MOMO_WORKER_SEEN_WITHIN_SECONDS": "20"}
        with pytest.raises(ConfigError) as raised:
            load_settings(env)
        assert "MOMO_WORKER_SEEN_WITHIN_SECONDS=20 must be at least 30" in str(raised.value)
        assert "MOMO_SWEEP_INTERVAL_SECONDS (15)" in str(raised.value)

    def test_a_short_one_is_taken_with_a_short_sweep_interval(self) -> None:
        env = {"MOMO_SWEEP_INTERVAL_SECONDS": "1", "MOMO_WORKER_SEEN_WITHIN_SECONDS": "3"}
        assert load_settings(env).worker_seen_within_seconds == 3


class TestTimeLimits:
    def test_every_task_has_a_hard_limit_above_its_soft_one(self) -> None:
        limits = time_limits(Settings())

        assert set(limits) == {PROCESS_INBOX, SWEEP_INBOX, SETTLE_REQUESTS, PULL_PAYMENTS}
        for name, limit in limits.items():
            assert limit["time_limit"] > limit.get("soft_time_limit", 0), name

    def test_process_inbox_has_no_soft_limit_and_outlasts_its_drain_budget(self) -> None:
        limit = time_limits(Settings())[PROCESS_INBOX]

        assert "soft_time_limit" not in limit
        assert limit["time_limit"] > work.DRAIN_BUDGET_SECONDS

    def test_they_grow_with_the_statement_timeout(self) -> None:
        short = time_limits(Settings(db_statement_timeout_seconds=5))
        long = time_limits(Settings(db_statement_timeout_seconds=60))

        for name in short:
            assert long[name]["time_limit"] > short[name]["time_limit"], name

    def test_the_visibility_timeout_outlasts_every_hard_limit(self) -> None:
        settings = Settings(db_statement_timeout_seconds=60)
        config = celery_config(settings)

        longest = max(limit["time_limit"] for limit in time_limits(settings).values())
        assert config["broker_transport_options"]["visibility_timeout"] >= 2 * longest
        assert (
            visibility_timeout(settings) == config["broker_transport_options"]["visibility_timeout"]
        )
        assert config["task_annotations"] == time_limits(settings)

    def test_pool_processes_are_replaced_by_task_count_and_by_memory(self) -> None:
        config = celery_config(Settings())

        assert config["worker_max_tasks_per_child"] > 0
        assert config["worker_max_memory_per_child"] > 0
