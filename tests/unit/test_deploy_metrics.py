"""deploy/'s alert rules and Grafana dashboard read only metrics momo shows."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from core.runtime import Runtime
from matcher.check import record_check_run
from momo.app import create_app
from tasks.work import drain_inbox
from tests.conftest import ROOT, add_customer, sample_bytes
from tests.deploy_units import DEPLOY, unit
from tests.unit.test_metrics import FakeSpool, post, scrape


def every_metric(runtime: Runtime) -> str:
    """A /metrics answer with every series momo has: a request, a callback, a credit, a
    spool, a check."""
    runtime.spool = FakeSpool(files=1, size=10)
    add_customer(runtime, "ACC1042", ["0799000111"])
    client = create_app(runtime=runtime).test_client()
    assert post(client, sample_bytes("c2b_confirmation_paybill_plain.json")) == 200
    drain_inbox(runtime)
    with runtime.sessions.begin() as session:
        record_check_run(session, 0, "host-a")
    return scrape(client)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bmomo_[a-z_]+", expr))


def test_every_alert_rule_names_metrics_that_exist(runtime: Runtime) -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    [group] = rules["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    # the four the operators asked for, at least
    assert {"MomoInboxLagging", "MomoDeadLetters", "MomoSpoolNotEmpty", "MomoCheckFailing"} <= set(
        alerts
    )
    text = every_metric(runtime)
    shown = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    for name, rule in alerts.items():
        assert rule["annotations"]["summary"], name
        names = metric_names(rule["expr"])
        assert names, name
        for metric in names:
            assert metric in shown, f"{name} reads {metric}, which momo does not show"


def test_every_dashboard_panel_names_metrics_that_exist(runtime: Runtime) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/momo-dashboard.json").read_text())
    text = every_metric(runtime)
    shown = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:
        for metric in metric_names(expr):
            assert metric in shown, f"the dashboard reads {metric}, which momo does not show"


@pytest.mark.parametrize("name", ["momo-web", "momo-api", "momo-worker"])
def test_the_pre_forking_units_count_in_a_directory_of_their_own_made_at_each_start(
    name: str,
) -> None:
    # gunicorn's workers, and the worker's prefork pool, each count in a process of its own
    service = unit(DEPLOY / f"{name}.service")
    [directory] = service["Service.RuntimeDirectory"]
    assert f"PROMETHEUS_MULTIPROC_DIR=/run/{directory}" in service["Service.Environment"]
    assert directory == f"{name}-metrics"  # no two servers share one
    # emptied: removed at each stop, made anew at each start
    assert service.get("Service.RuntimeDirectoryPreserve", ["no"]) == ["no"]
