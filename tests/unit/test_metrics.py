"""Prometheus at /metrics: what each request, callback and credit adds, and what a scrape
reads from the database, the spool and momo check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from core.config import ConfigError
from core.metrics import check_file, metrics_listen
from core.runtime import Runtime
from matcher.check import last_check_run, record_check_run
from matcher.models import CheckRun
from momo.app import create_api_app, create_web_app
from tasks.work import drain_inbox
from tests.conftest import (
    PATH_TOKEN,
    ROOT,
    add_customer,
    sample,
    sample_bytes,
    webhook_url,
)
from tests.unit.test_pipeline import confirmation, put

REQUESTS = "momo_http_request_duration_seconds"
CONFIRMATION = "c2b/confirmation"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(route: str, method: str, status: str) -> float:
    return value(f"{REQUESTS}_count", route=route, method=method, status=status)


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def post(client: FlaskClient, body: bytes, token: str = PATH_TOKEN) -> int:
    response = client.post(
        webhook_url(CONFIRMATION, token), data=body, content_type="application/json"
    )
    return response.status_code


class FakeSpool:
    def __init__(self, files: int = 0, size: int = 0) -> None:
        self.files, self.size = files, size

    def append(self, item: object) -> str:
        raise AssertionError("nothing is spooled in these tests")

    def backlog(self) -> dict[str, int]:
        return {"files": self.files, "bytes": self.size}


# --- requests -------------------------------------------------------------------------------


def test_each_request_adds_one_under_its_route_template_and_status(
    client: FlaskClient, operator_headers: dict[str, str]
) -> None:
    route = "/api/v1/payments/<payment_id>"
    before = requests(route, "GET", "404"), requests("/healthz", "GET", "200")
    assert client.get("/api/v1/payments/999", headers=operator_headers).status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    after = requests(route, "GET", "404"), requests("/healthz", "GET", "200")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 2)


def test_a_path_no_route_matches_is_one_label_whatever_the_path(client: FlaskClient) -> None:
    before = requests("unmatched", "GET", "404")
    for path in ("/no/such/page", "/another/0712345678"):
        assert client.get(path).status_code == 404
    assert requests("unmatched", "GET", "404") - before == 2
    assert "0712345678" not in scrape(client)


def test_a_method_a_client_invents_adds_no_series(client: FlaskClient) -> None:
    before = requests("unmatched", "other", "405")
    assert client.open("/healthz", method="BREW").status_code == 405
    assert requests("unmatched", "other", "405") - before == 1


def test_webhook_requests_never_show_the_path_token(client: FlaskClient) -> None:
    fast = requests("webhook_fast", "POST", "200")
    wrong = requests("/webhooks/<provider>/<token>/<path:kind>", "POST", "404")
    assert post(client, sample_bytes("c2b_confirmation_paybill_plain.json")) == 200
    assert post(client, b"{}", token="not-the-token-at-all-0123456789") == 404
    assert requests("webhook_fast", "POST", "200") - fast == 1
    assert requests("/webhooks/<provider>/<token>/<path:kind>", "POST", "404") - wrong == 1
    text = scrape(client)
    assert PATH_TOKEN not in text
    assert "not-the-token-at-all" not in text


def test_latency_is_a_histogram_with_its_buckets(client: FlaskClient) -> None:
    client.get("/healthz")
    found = samples(scrape(client))
    buckets = {
        dict(labels)["le"]
        for (name, labels) in found
        if name == f"{REQUESTS}_bucket" and dict(labels)["route"] == "/healthz"
    }
    assert {"0.005", "0.1", "1.0", "+Inf"} <= buckets


def test_metrics_asks_no_token(app: Flask) -> None:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert "momo_http_request_duration_seconds" in response.get_data(as_text=True)


# --- callbacks ------------------------------------------------------------------------------


def callbacks(outcome: str) -> float:
    return value("momo_callbacks_total", provider="mpesa", kind=CONFIRMATION, outcome=outcome)


def test_an_accepted_callback_is_counted_once(client: FlaskClient) -> None:
    before = callbacks("accepted"), callbacks("rejected")
    doc = confirmation(TransID="TKM0000001")
    assert post(client, json.dumps(doc).encode()) == 200
    assert (callbacks("accepted") - before[0], callbacks("rejected") - before[1]) == (1, 0)


def test_a_malformed_callback_is_counted_as_rejected(client: FlaskClient) -> None:
    before = callbacks("accepted"), callbacks("rejected")
    assert post(client, b'{"TransID": 5}') == 400
    assert (callbacks("accepted") - before[0], callbacks("rejected") - before[1]) == (0, 1)


class BrokenMetric:
    """A metric whose storage is gone (a full disk under PROMETHEUS_MULTIPROC_DIR)."""

    def labels(self, *_: str) -> BrokenMetric:
        raise OSError("No space left on device")


def test_a_callback_is_stored_and_acknowledged_when_counting_fails(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.metrics

    monkeypatch.setattr(core.metrics, "CALLBACKS", BrokenMetric())
    monkeypatch.setattr(core.metrics, "REQUEST_SECONDS", BrokenMetric())
    assert post(client, json.dumps(confirmation(TransID="TKM0000009")).encode()) == 200
    assert client.get("/healthz").status_code == 200
    found = samples(scrape(create_api_app(runtime=runtime).test_client()))
    assert found[("momo_inbox_pending", ())] == 1  # stored all the same


# --- credits --------------------------------------------------------------------------------


def credits() -> float:
    return value("momo_callback_to_credit_seconds_count", provider="mpesa")


def test_a_credited_payment_is_observed_once_it_is_committed(runtime: Runtime) -> None:
    add_customer(runtime, "ACC1042", ["0799000111"])
    put(runtime, CONFIRMATION, sample_bytes("c2b_confirmation_paybill_plain.json"))
    put(runtime, CONFIRMATION, confirmation(TransID="TKN0000002", BillRefNumber="NOBODY"))
    before = credits()
    result = drain_inbox(runtime)
    assert result.outcomes == {"credited": 1, "unassociated": 1}
    assert credits() - before == 1  # the unassociated payment credited nobody
    assert value("momo_callback_to_credit_seconds_bucket", provider="mpesa", le="+Inf") >= 1


# --- what a scrape reads --------------------------------------------------------------------


def test_the_api_reads_the_inbox_unassociated_money_and_dead_rows(runtime: Runtime) -> None:
    put(runtime, CONFIRMATION, confirmation(TransID="TKP0000001", BillRefNumber="NOBODY"))
    drain_inbox(runtime)
    put(runtime, CONFIRMATION, b"not json at all")  # pending: nothing works the queue here
    found = samples(scrape(create_api_app(runtime=runtime).test_client()))
    assert found[("momo_database_up", ())] == 1
    assert found[("momo_inbox_pending", ())] == 1
    assert found[("momo_inbox_lag_seconds", ())] >= 0
    assert found[("momo_inbox_dead", ())] == 0
    assert found[("momo_unassociated_payments", ())] == 1
    amount = int(sample("c2b_confirmation_paybill_plain.json")["TransAmount"].split(".")[0])
    assert found[("momo_unassociated_minor", ())] == amount * 100
    assert ("momo_spool_bytes", ()) not in found  # the api has no spool


def test_the_web_reads_its_spool_and_not_the_database(runtime: Runtime) -> None:
    runtime.spool = FakeSpool(files=2, size=4096)
    found = samples(scrape(create_web_app(runtime=runtime).test_client()))
    assert found[("momo_spool_bytes", ())] == 4096
    assert found[("momo_spool_files", ())] == 2
    assert not [name for name, _ in found if name.startswith(("momo_inbox", "momo_database"))]


def test_a_database_that_does_not_answer_is_reported_not_a_failed_scrape(
    runtime: Runtime,
) -> None:
    runtime.engine.dispose()
    Path(runtime.settings.database_url.removeprefix("sqlite:///")).unlink()
    Path(runtime.settings.database_url.removeprefix("sqlite:///")).mkdir()  # unopenable
    found = samples(scrape(create_api_app(runtime=runtime).test_client()))
    assert found[("momo_database_up", ())] == 0
    assert ("momo_inbox_lag_seconds", ()) not in found


def test_the_last_momo_check_from_any_host_is_shown_by_the_api(runtime: Runtime) -> None:
    client = create_api_app(runtime=runtime).test_client()
    assert not [name for name, _ in samples(scrape(client)) if name.startswith("momo_check")]
    then = datetime.fromtimestamp(1_800_000_000, UTC)
    with runtime.sessions.begin() as session:
        record_check_run(session, 3, "host-a", now=then)
        record_check_run(session, 0, "host-b", now=then - timedelta(hours=1))  # older
    found = samples(scrape(client))
    assert found[("momo_check_ok", ())] == 0
    assert found[("momo_check_violations", ())] == 3
    assert found[("momo_check_last_run_timestamp_seconds", ())] == 1_800_000_000
    with runtime.sessions.begin() as session:
        record_check_run(session, 0, "host-b", now=then + timedelta(minutes=5))
    assert samples(scrape(client))[("momo_check_ok", ())] == 1
    # the webhook's own /metrics does not repeat it (one scrape target for each number)
    web = create_web_app(runtime=runtime).test_client()
    assert not [name for name, _ in samples(scrape(web)) if name.startswith("momo_check")]


def test_check_runs_are_forgotten_after_ninety_days(runtime: Runtime) -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with runtime.sessions.begin() as session:
        record_check_run(session, 0, "a", now=now - timedelta(days=91))
        record_check_run(session, 1, "a", now=now - timedelta(days=89))
        record_check_run(session, 0, "a", now=now)
    with runtime.sessions() as session:
        kept = session.scalars(select(CheckRun.finished_at).order_by(CheckRun.id)).all()
    assert kept == [now - timedelta(days=89), now]


def test_momo_check_leaves_its_result(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from momo.cli import main

    settings = runtime.settings
    monkeypatch.setenv("MOMO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MOMO_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("MOMO_MPESA_PATH_TOKEN", PATH_TOKEN)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    text = check_file(settings.instance_path).read_text()
    assert "momo_check_ok 1.0" in text
    with runtime.sessions() as session:
        last = last_check_run(session)
    assert last is not None and last.violations == 0
    assert last.host == socket.gethostname()
    found = samples(scrape(create_api_app(runtime=runtime).test_client()))
    assert found[("momo_check_ok", ())] == 1


# --- more than one process ------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from core.config import Settings
    from ingest.providers import build_runtime
    from momo.app import create_api_app

    database_url, instance, what = sys.argv[1:4]
    runtime = build_runtime(Settings(database_url=database_url, instance_path=Path(instance)))
    client = create_api_app(runtime=runtime).test_client()
    if what == "show":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    else:
        for _ in range(int(what)):
            assert client.get("/healthz").status_code == 200
    runtime.close()
    """
)


def test_under_a_multiprocess_dir_metrics_adds_up_every_process(
    runtime: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    settings = runtime.settings

    def run(what: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, settings.database_url, str(settings.instance_path), what],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    run("2")
    run("3")
    found = samples(run("show"))
    labels = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    assert found[(f"{REQUESTS}_count", labels)] == 5
    assert found[("momo_database_up", ())] == 1  # the app's own gauges are there too


def test_a_multiprocess_dir_that_is_not_there_stops_the_start(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        create_api_app(runtime=runtime)


# --- the worker's listener ------------------------------------------------------------------


def test_metrics_port_is_a_port_on_loopback_or_a_host_and_port() -> None:
    assert metrics_listen({}) is None
    assert metrics_listen({"MOMO_METRICS_PORT": "9102"}) == ("127.0.0.1", 9102)
    assert metrics_listen({"MOMO_METRICS_PORT": "10.0.0.5:9102"}) == ("10.0.0.5", 9102)
    with pytest.raises(ConfigError, match="MOMO_METRICS_PORT"):
        metrics_listen({"MOMO_METRICS_PORT": "ninety"})


def test_a_worker_with_a_metrics_port_answers_prometheus_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket
    import urllib.request

    from tasks.celery_app import _serve_metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MOMO_METRICS_PORT", str(port))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server, thread = _serve_metrics()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert "momo_callback_to_credit_seconds" in text


def test_a_worker_without_a_metrics_port_listens_nowhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.celery_app import _serve_metrics

    monkeypatch.delenv("MOMO_METRICS_PORT", raising=False)
    assert _serve_metrics() is None
