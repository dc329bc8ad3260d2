"""The chaos run's short form: callbacks through a real momo while workers, Redis, PostgreSQL
and the web server are broken on purpose; nothing acknowledged is lost or credited twice,
and no callback goes unanswered but one a crash cut (the short form's web restart is
graceful, on a socket that outlives the server: none).

It needs no shared services: ``bench.chaos`` starts its own PostgreSQL (``initdb``/``pg_ctl``
on PATH), Redis (``redis-server``), gunicorn, Celery workers and beat, and stops them.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, lacking
from tests.integration.conftest import redis_only
from tests.processes import start_process

# its faults include Redis stopped and flushed, on a Redis of its own
pytestmark = [pytest.mark.integration, redis_only]

FAULTS = (
    "worker_kill",
    "redis_stop",
    "redis_flush",
    "pg_restart",
    "web_restart",
    "poison_spool",
    "pg_silent",
)
SUMMARY = re.compile(r"^chaos: sent=.*$", re.MULTILINE)


def _missing_tools() -> list[str]:
    return [
        tool for tool in ("initdb", "pg_ctl", "postgres", "redis-server") if not shutil.which(tool)
    ]


@pytest.mark.timeout(600)
def test_chaos_short_form_loses_and_doubles_nothing(tmp_path: Path) -> None:
    missing = _missing_tools()
    if missing:
        message = f"the chaos run starts its own services and needs {', '.join(missing)} on PATH"
        lacking(message)

    figures = tmp_path / "chaos.json"
    proc = start_process(
        [sys.executable, "-m", "bench.chaos", "--short", "--json", str(figures)],
        # the run stops everything it started, its PostgreSQL included, on SIGTERM
        on_parent_death=signal.SIGTERM,
        stop_within=180,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the run stop the services it started before it exits.
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"the chaos run did not finish in 540s:\n{output[-6000:]}")

    summary = SUMMARY.search(output)
    assert summary, f"no summary line; exit {proc.returncode}:\n{output[-6000:]}"
    line = summary.group(0)
    unanswered = re.search(r" unanswered=(\d+) ", line)
    cut = re.search(r" cut_by_crash=(\d+) ", line)
    assert unanswered and cut, f"unanswered= and cut_by_crash= expected in: {line}"
    assert unanswered.group(1) == cut.group(1), (
        f"callbacks unanswered not because a crash cut them: {line}\n"
        f"{json.loads(figures.read_text()).get('unanswered_by_cause')}"
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {line}\n{output[-6000:]}"
    for figure in ("lost=0", "doubled=0", "mismatches=0", "check=ok"):
        assert f" {figure} " in f" {line} ", f"{figure} expected in: {line}"
    faults = re.search(r" faults=(.*?) elapsed=", line)
    assert faults, line
    for fault in FAULTS:
        assert re.search(rf"\b{fault}\b", faults.group(1)), f"{fault} not injected: {line}"
    assert figures.exists()
