"""A real stack's /readyz, and a real worker stopped with SIGTERM in the middle of a backlog.

Each test runs a stack of its own (its own database and Redis database): stopping its
worker must not stop the session's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from matcher.models import InboxItem, Payment
from tasks.celery_app import PROCESS_INBOX, make_producer
from tests.conftest import sample
from tests.integration.conftest import (
    VENV_BIN,
    Stack,
    momo_serve,
    other_redis_db,
    running_stack,
    wait_until,
)


@contextmanager
def own_stack(fresh_pg_url: str, redis_url: str, workdir: Path, **env: str) -> Iterator[Stack]:
    with running_stack(fresh_pg_url, other_redis_db(redis_url), workdir, **env) as stack:
        yield stack


def readiness(stack: Stack) -> tuple[int, dict[str, Any]]:
    answer = requests.get(f"{stack.base}/readyz", timeout=20)
    return answer.status_code, answer.json()


def test_readyz_is_200_with_a_worker_and_503_naming_the_worker_once_it_stopped(
    fresh_pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    # beat sends the sweeper every second; a worker silent for 3 s is not ready
    with own_stack(fresh_pg_url, redis_url, tmp_path, MOMO_WORKER_SEEN_WITHIN_SECONDS="3") as stack:
        _, body = wait_until(lambda: (r := readiness(stack))[0] == 200 and r)
        assert body == {"status": "ready", "database": "ok", "broker": "ok", "worker": "ok"}

        stack.stop("worker")

        _, body = wait_until(lambda: (r := readiness(stack))[0] == 503 and r)
        assert body["status"] == "not_ready"
        assert (body["database"], body["broker"]) == ("ok", "ok")
        assert body["worker"].startswith("not seen since ")
        # liveness is not readiness: the node still takes callbacks
        assert requests.get(f"{stack.base}/healthz", timeout=20).status_code == 200


def test_momo_serve_on_the_embedded_default_is_ready_once_its_own_worker_drained(
    tmp_path: Path,
) -> None:
    """No broker, no services: the in-process worker notes its heartbeat as it sweeps."""
    with momo_serve(tmp_path, MOMO_SWEEP_INTERVAL_SECONDS="1") as (base, _env, _proc):

        def ready() -> dict[str, Any] | None:
            answer = requests.get(f"{base}/readyz", timeout=20)
            return answer.json() if answer.status_code == 200 else None

        assert wait_until(ready) == {
            "status": "ready",
            "database": "ok",
            "broker": "embedded",
            "worker": "ok",
        }


BACKLOG = 3000
BATCH = 20


def queue_backlog(stack: Stack) -> None:
    template = sample("c2b_confirmation_paybill_plain.json")
    rows = []
    for n in range(BACKLOG):
        body = {**template, "TransID": f"TKSTOP{n:04d}", "BillRefNumber": f"NOBODY{n}"}
        rows.append(
            InboxItem(
                provider="mpesa",
                kind="c2b/confirmation",
                body=json.dumps(body).encode(),
                headers={},
            )
        )
    with stack.runtime.sessions.begin() as session:
        session.add_all(rows)


def counts(stack: Stack) -> dict[str, int]:
    with stack.runtime.sessions() as session:
        rows = session.execute(select(InboxItem.status, func.count()).group_by(InboxItem.status))
        return {status: count for status, count in rows}


@pytest.mark.parametrize("signalled", ["group", "worker"])
def test_a_sigterm_mid_backlog_finishes_the_batch_in_hand_and_exits_0(
    fresh_pg_url: str, redis_url: str, tmp_path: Path, signalled: str
) -> None:
    """``group``: every process of the worker gets SIGTERM (systemd's default, a terminal,
    honcho); ``worker``: only the worker itself (a container's PID 1)."""
    with own_stack(fresh_pg_url, redis_url, tmp_path, MOMO_BATCH_SIZE=str(BATCH)) as stack:
        stack.stop("worker")
        queue_backlog(stack)
        stack.start_worker("backlog")
        make_producer(stack.runtime.settings).send_task(PROCESS_INBOX)
        wait_until(lambda: counts(stack).get("processed", 0) >= BATCH, interval=0.02)

        worker = stack.processes.pop("backlog")
        if signalled == "group":
            os.killpg(worker.pid, signal.SIGTERM)
        else:
            os.kill(worker.pid, signal.SIGTERM)
        try:
            exit_code = worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)

        log = stack.log("backlog")
        assert exit_code == 0, log[-3000:]
        assert "stopping: the batch in hand is done" in log
        for lost in ("WorkerLostError", "exited prematurely", "Traceback"):
            assert lost not in log, log[-3000:]
        stopped_at = counts(stack)
        # stopped mid-backlog, between batches: nothing half done
        assert stopped_at.get("pending", 0) > 0, stopped_at
        assert stopped_at.get("processed", 0) % BATCH == 0, stopped_at

        stack.start_worker("worker-again")
        wait_until(lambda: counts(stack) == {"processed": BACKLOG}, timeout=120)
        with stack.runtime.sessions() as session:
            payments = session.scalar(select(func.count()).select_from(Payment))
            codes = session.scalar(select(func.count(func.distinct(Payment.code))))
            attempts = set(session.scalars(select(InboxItem.attempts).distinct()))
        assert payments == codes == BACKLOG
        assert attempts == {1}
        check = subprocess.run(
            [str(VENV_BIN / "momo"), "check"],
            env=stack.env,
            cwd=stack.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
