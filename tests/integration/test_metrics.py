"""/metrics on PostgreSQL, and under granian's several workers with PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.runtime import Runtime
from momo.app import create_api_app
from tasks.work import drain_inbox
from tests.integration.conftest import free_port, migrated_runtime, stack_of_its_own, wait_until
from tests.integration.test_granian import confirmation, granian
from tests.unit.test_pipeline import put

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def pg_runtime() -> Iterator[Runtime]:
    yield from migrated_runtime()


def test_the_api_reads_its_gauges_from_postgresql_within_the_scrapes_deadline(
    pg_runtime: Runtime,
) -> None:
    put(pg_runtime, "c2b/confirmation", confirmation("TKMETRIC01"))
    drain_inbox(pg_runtime)  # unassociated: no customer has the number
    put(pg_runtime, "c2b/confirmation", b"waiting")
    response = create_api_app(runtime=pg_runtime).test_client().get("/metrics")
    assert response.status_code == 200
    found = samples(response.get_data(as_text=True))
    assert found[("momo_database_up", ())] == 1
    assert found[("momo_inbox_pending", ())] == 1
    assert found[("momo_inbox_lag_seconds", ())] >= 0
    assert found[("momo_unassociated_payments", ())] == 1
    assert found[("momo_unassociated_minor", ())] > 0


def test_under_granians_workers_metrics_adds_up_every_worker(
    fresh_pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    posted = 0
    with (
        granian(
            fresh_pg_url,
            redis_url,
            tmp_path,
            "--workers",
            "2",
            PROMETHEUS_MULTIPROC_DIR=str(folder),
        ) as server,
        ThreadPoolExecutor(8) as pool,
    ):
        # until both workers have taken a callback (each counts in a file of its own)
        while len(list(folder.glob("counter_*.db"))) < 2:
            assert posted < 400, "granian gave every callback to one worker"
            codes = [f"TKMPROC{n:04d}" for n in range(posted, posted + 16)]
            answers = pool.map(lambda code: server.post(confirmation(code)).status_code, codes)
            assert set(answers) == {200}
            posted += len(codes)
        text = requests.get(f"{server.base}/metrics", timeout=30).text
    found = samples(text)
    accepted = (("kind", "c2b/confirmation"), ("outcome", "accepted"), ("provider", "mpesa"))
    assert found[("momo_callbacks_total", accepted)] == posted
    fast = (("method", "POST"), ("route", "webhook_fast"), ("status", "200"))
    assert found[("momo_http_request_duration_seconds_count", fast)] == posted


def test_a_workers_metrics_port_shows_the_credit_its_pool_made(
    redis_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "worker-metrics"
    folder.mkdir()
    port = free_port()
    with stack_of_its_own(redis_url, tmp_path, lambda _: {}) as stack:
        # a worker of the stack's, but with its own listener and multiprocess directory
        stack.stop("worker")
        stack.env = {
            **stack.env,
            "MOMO_METRICS_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(folder),
        }
        stack.start_worker("metrics-worker", concurrency=2)
        stack.add_customer("ACC1042", "0799000111")
        assert stack.post("c2b/confirmation", confirmation("TKWORKER01")).status_code == 200

        def credited() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            found = samples(text)
            key = ("momo_callback_to_credit_seconds_count", (("provider", "mpesa"),))
            return found if found.get(key) == 1 else None

        found = wait_until(credited, timeout=60)
        assert stack.balance("ACC1042") != "0.00"
        # observed in a pool process, shown by the main one: through the shared directory
        inf = (("le", "+Inf"), ("provider", "mpesa"))
        assert found[("momo_callback_to_credit_seconds_bucket", inf)] == 1
