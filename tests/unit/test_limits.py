"""Unauthenticated webhook traffic is braked; authenticated callbacks never are.

The budget is an address's, whichever process of the host answers it: counted in
Redis with a Redis broker, else in a file every process of the host opens.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
from pathlib import Path

import fakeredis
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.config import Settings
from core.runtime import Runtime
from ingest.limits import (
    COUNTS_FILE,
    FailureLimiter,
    FileFailureLimiter,
    RedisFailureLimiter,
    failure_limiter,
)
from ingest.providers import build_runtime
from matcher.models import InboxItem
from momo.app import create_app
from tests.conftest import PATH_TOKEN, mpesa_block, sample_bytes, webhook_url

BODY = sample_bytes("c2b_confirmation_paybill_plain.json")


def post(client: FlaskClient, url: str, address: str = "203.0.113.9"):  # type: ignore[no-untyped-def]
    return client.post(
        url, data=BODY, content_type="application/json", environ_base={"REMOTE_ADDR": address}
    )


def inbox_rows(runtime: Runtime) -> int:
    with runtime.sessions.begin() as session:
        return int(session.scalar(select(func.count()).select_from(InboxItem)) or 0)


def test_the_limiter_counts_failures_per_address_per_minute() -> None:
    limiter = FailureLimiter(per_minute=3)
    assert [limiter.fail("a") for _ in range(5)] == [False, False, False, True, True]
    assert limiter.fail("b") is False


def test_the_limiter_forgets_the_oldest_addresses_past_its_bound() -> None:
    limiter = FailureLimiter(per_minute=1, max_addresses=2)
    limiter.fail("a")
    limiter.fail("b")
    limiter.fail("c")
    assert limiter.fail("a") is False  # "a" was forgotten: a fresh budget


def test_a_flood_of_wrong_tokens_gets_429_and_stores_nothing(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.with_overrides(unauthenticated_per_minute=5)
    client = create_app(runtime=runtime).test_client()
    statuses = [
        post(client, webhook_url("c2b/confirmation", "wrong")).status_code for _ in range(8)
    ]
    assert statuses == [404] * 5 + [429] * 3
    assert inbox_rows(runtime) == 0


def test_the_right_token_is_never_throttled_even_from_a_flooding_address(
    runtime: Runtime,
) -> None:
    runtime.settings = runtime.settings.with_overrides(unauthenticated_per_minute=2)
    client = create_app(runtime=runtime).test_client()
    for _ in range(5):
        post(client, webhook_url("c2b/confirmation", "wrong"))
    good = post(client, webhook_url("c2b/confirmation"))
    assert good.status_code == 200
    assert inbox_rows(runtime) == 1


def test_disallowed_addresses_are_braked_too(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.with_overrides(
        unauthenticated_per_minute=2,
        providers=mpesa_block(PATH_TOKEN, allowed_ips=(ipaddress.ip_network("196.201.214.0/24"),)),
    )
    client = create_app(runtime=runtime).test_client()
    statuses = [post(client, webhook_url("c2b/confirmation")).status_code for _ in range(4)]
    assert statuses == [403, 403, 429, 429]
    allowed = post(client, webhook_url("c2b/confirmation"), address="196.201.214.7")
    assert allowed.status_code == 200


# --- counted where every process of the host sees it -------------------------------------


def test_with_a_redis_broker_the_count_is_kept_in_redis_else_in_a_file_under_the_instance(
    tmp_path: Path,
) -> None:
    for broker in ("redis://127.0.0.1:6379/3", "rediss://cache:6380/0"):
        limiter = failure_limiter(Settings(broker_url=broker))
        assert isinstance(limiter, RedisFailureLimiter)
        limiter.close()
    for broker in (None, "amqp://guest@mq//"):
        limiter = failure_limiter(Settings(broker_url=broker, instance_path=tmp_path))
        assert isinstance(limiter, FileFailureLimiter)
        assert limiter.path == tmp_path / COUNTS_FILE


class TestRedisCount:
    def test_processes_sharing_a_redis_share_one_budget_per_address(self) -> None:
        server = fakeredis.FakeServer()
        workers = [
            RedisFailureLimiter(fakeredis.FakeRedis(server=server), per_minute=4) for _ in range(3)
        ]

        answers = [workers[n % 3].fail("203.0.113.9") for n in range(6)]

        assert answers == [False] * 4 + [True] * 2
        assert workers[0].fail("198.51.100.1") is False  # another address, its own budget

    def test_the_count_is_a_momo_key_that_ends_with_its_window(self) -> None:
        client = fakeredis.FakeRedis()
        RedisFailureLimiter(client, per_minute=4).fail("203.0.113.9")

        assert client.keys("*") == [b"momo:unauthenticated:203.0.113.9"]
        assert 0 < client.ttl("momo:unauthenticated:203.0.113.9") <= 60

    def test_a_count_left_without_an_end_gets_one(self) -> None:
        client = fakeredis.FakeRedis()
        client.set("momo:unauthenticated:203.0.113.9", 2)  # as if its window ended mid-count

        RedisFailureLimiter(client, per_minute=4).fail("203.0.113.9")

        assert client.get("momo:unauthenticated:203.0.113.9") == b"3"
        assert 0 < client.ttl("momo:unauthenticated:203.0.113.9") <= 60

    def test_while_redis_is_unreachable_the_process_counts_alone_and_never_raises(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        server = fakeredis.FakeServer()
        limiter = RedisFailureLimiter(
            fakeredis.FakeRedis(server=server), per_minute=2, retry_after=0
        )
        server.connected = False

        answers = [limiter.fail("203.0.113.9") for _ in range(4)]

        assert answers == [False, False, True, True]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # said once, not per request
        assert "Redis count failed" in warnings[0].getMessage()

    def test_a_redis_url_the_client_cannot_use_loosens_the_brake_and_fails_no_request(
        self,
    ) -> None:
        """Celery takes transport options in the broker URL that redis-py refuses."""
        url = "redis://127.0.0.1:1/0?visibility_timeout=3600"
        limiter = failure_limiter(Settings(broker_url=url, unauthenticated_per_minute=1))

        assert [limiter.fail("203.0.113.9") for _ in range(2)] == [False, True]
        limiter.close()

    def test_when_redis_answers_again_the_shared_count_is_used_again(self) -> None:
        server = fakeredis.FakeServer()
        client = fakeredis.FakeRedis(server=server)
        limiter = RedisFailureLimiter(client, per_minute=2, retry_after=0)
        server.connected = False
        limiter.fail("203.0.113.9")
        server.connected = True

        limiter.fail("203.0.113.9")

        assert client.get("momo:unauthenticated:203.0.113.9") == b"1"


def fail_in_a_process(
    path: str, per_minute: int, times: int, answers: multiprocessing.Queue
) -> None:
    limiter = FileFailureLimiter(Path(path), per_minute)
    answers.put([limiter.fail("203.0.113.9") for _ in range(times)])


class TestFileCount:
    def test_processes_of_one_host_share_one_budget_per_address(self, tmp_path: Path) -> None:
        context = multiprocessing.get_context("fork")
        answers: multiprocessing.Queue = context.Queue()
        path = str(tmp_path / COUNTS_FILE)
        processes = [
            context.Process(target=fail_in_a_process, args=(path, 50, 25, answers))
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        results = [answers.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)

        allowed = sum(answer is False for result in results for answer in result)
        assert allowed == 50  # 100 failures, 50 within the budget, whoever counted them

    def test_two_limiters_on_one_file_share_the_budget(self, tmp_path: Path) -> None:
        a = FileFailureLimiter(tmp_path / COUNTS_FILE, per_minute=3)
        b = FileFailureLimiter(tmp_path / COUNTS_FILE, per_minute=3)

        answers = [(a, b)[n % 2].fail("203.0.113.9") for n in range(5)]

        assert answers == [False, False, False, True, True]
        assert a.fail("198.51.100.1") is False

    def test_a_new_window_starts_a_minute_after_the_first_failure(self, tmp_path: Path) -> None:
        now = [1_000_000.0]
        limiter = FileFailureLimiter(tmp_path / COUNTS_FILE, per_minute=1, clock=lambda: now[0])
        assert [limiter.fail("a"), limiter.fail("a")] == [False, True]

        now[0] += 59.9
        assert limiter.fail("a") is True
        now[0] += 0.1
        assert limiter.fail("a") is False

    def test_an_unwritable_instance_folder_falls_back_to_the_process_count(
        self, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        limiter = FileFailureLimiter(blocker / COUNTS_FILE, per_minute=1)

        assert [limiter.fail("a"), limiter.fail("a")] == [False, True]


def test_two_web_processes_of_one_host_give_an_address_one_budget(runtime: Runtime) -> None:
    """As gunicorn's workers do: two apps, each with its own runtime, on one host."""
    settings = runtime.settings.with_overrides(unauthenticated_per_minute=3)
    runtimes = [build_runtime(settings) for _ in range(2)]
    try:
        clients = [create_app(runtime=rt).test_client() for rt in runtimes]
        wrong = webhook_url("c2b/confirmation", "wrong")

        statuses = [post(clients[n % 2], wrong).status_code for n in range(6)]

        assert statuses == [404, 404, 404, 429, 429, 429]
    finally:
        for rt in runtimes:
            rt.close()
