"""Payment requests end to end against a fake Daraja: request-to-credit time, and how many
queries a request needs when its callback never comes.

    python -m bench.requests [--requests 40] [--concurrency 4] [--smoke]

Starts momo (gunicorn serving webhooks and the API, a Celery worker, beat) on a database
of its own and the fake Daraja of tests/fakes on loopback, and asks customers to pay over
the operator API. Times come from the database (the request's creation, the commit that
credited its payment), so the load generator's own delays do not count.

- baseline: plain C2B confirmations posted to the same stack in the same run; callback
  to credit (the inbox row's arrival to the credit's commit).
- callback: the fake posts each request's callback as soon as it is asked (no customer
  delay): request to credit, as a ratio to the baseline.
- no callback: the callbacks never come; each customer "answers" after a random 0 to
  2x MOMO_REQUEST_QUERY_AFTER_SECONDS; beat asks Daraja (STK query). Queries per settled
  request, and request to credit.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from sqlalchemy.engine import make_url

from bench.common import (
    BIN,
    PATH_TOKEN,
    REDIS_URL,
    Server,
    bench_database,
    free_port,
    momo_env,
    say,
    write_json,
)
from tests.fakes import NEVER, QUERY, DarajaFake, StkResult

QUERY_AFTER = 5


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def seconds_to_credit(dsn: str, ids: list[int]) -> list[float]:
    """Per paid request: its creation to the commit that credited its payment."""
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT EXTRACT(EPOCH FROM (MIN(e.created_at) - r.created_at)) "
            "FROM payment_requests r JOIN ledger_entries e ON e.payment_id = r.payment_id "
            "WHERE r.id = ANY(%s) AND r.status = 'paid' AND e.amount_minor > 0 GROUP BY r.id",
            (ids,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def callback_to_credit(dsn: str, prefix: str) -> list[float]:
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT EXTRACT(EPOCH FROM (MIN(e.created_at) - i.received_at)) "
            "FROM inbox i JOIN ledger_entries e ON e.payment_id = i.payment_id "
            "WHERE i.code LIKE %s AND e.amount_minor > 0 GROUP BY i.id",
            (prefix + "%",),
        ).fetchall()
    return [float(r[0]) for r in rows]


def wait_settled(base: str, headers: dict[str, str], ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for ident in list(pending):
            item = requests.get(
                f"{base}/api/v1/payment-requests/{ident}", headers=headers, timeout=10
            ).json()
            if item["status"] != "pending":
                pending.discard(ident)
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{len(pending)} requests still pending after {timeout:.0f} s")


def ask_many(
    base: str, headers: dict[str, str], accounts: list[str], concurrency: int
) -> list[dict[str, Any]]:
    def ask(account: str) -> dict[str, Any]:
        answer = requests.post(
            f"{base}/api/v1/payment-requests",
            json={"account_number": account, "amount": "100"},
            headers=headers,
            timeout=30,
        )
        answer.raise_for_status()
        item: dict[str, Any] = answer.json()
        return item

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(ask, accounts))


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p95_ms": round(percentile(values, 95) * 1000, 1),
        "max_ms": round(max(values, default=float("nan")) * 1000, 1),
    }


def run(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    daraja = DarajaFake().start()
    try:
        with bench_database() as url:
            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = momo_env(
                url,
                **daraja.momo_env(base),
                MOMO_REQUEST_QUERY_AFTER_SECONDS=str(QUERY_AFTER),
                MOMO_SWEEP_INTERVAL_SECONDS="1",
            )
            subprocess.run(
                [str(BIN / "momo"), "db", "upgrade"], env=env, check=True, capture_output=True
            )
            token = subprocess.run(
                [str(BIN / "momo"), "token", "create", "--name", "bench", "--role", "admin"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            headers = {"Authorization": f"Bearer {token}"}
            redis.Redis.from_url(REDIS_URL).flushdb()
            servers = [
                Server(
                    "web",
                    [
                        str(BIN / "gunicorn"),
                        "--workers",
                        "3",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--log-level",
                        "warning",
                        "momo.wsgi:app()",
                    ],
                    env,
                    logdir,
                ),
                Server(
                    "worker",
                    [str(BIN / "momo"), "worker", "--concurrency", "2", "--loglevel", "WARNING"],
                    env,
                    logdir,
                ),
                Server(
                    "beat",
                    [str(BIN / "momo"), "beat", "--schedule", str(logdir / "beat")],
                    env,
                    logdir,
                ),
            ]
            try:
                return measure(args, base, headers, dsn, daraja)
            finally:
                for server in reversed(servers):
                    server.stop()
    finally:
        daraja.close()


def measure(
    args: argparse.Namespace,
    base: str,
    headers: dict[str, str],
    dsn: str,
    daraja: DarajaFake,
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    accounts = [f"BENCH-R{n:04d}" for n in range(args.requests)]
    for n, account in enumerate(accounts):
        made = requests.post(
            f"{base}/api/v1/customers",
            json={"account_number": account, "name": account, "phones": [f"07120{n:05d}"]},
            headers=headers,
            timeout=10,
        )
        made.raise_for_status()
    time.sleep(3)  # the worker connects to the broker

    say(f"baseline: {args.requests} C2B confirmations")
    sample = Path(__file__).parents[1] / "tests/samples/mpesa/c2b_confirmation_paybill_plain.json"
    template = json.loads(sample.read_text())
    for n, account in enumerate(accounts):
        doc = dict(template)
        doc.update(TransID=f"BNCH{n:06d}", BillRefNumber=account, TransAmount="100.00")
        requests.post(
            f"{base}/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation", json=doc, timeout=10
        ).raise_for_status()
        time.sleep(0.05)
    time.sleep(3)
    baseline = callback_to_credit(dsn, "BNCH")

    say(f"callback: {args.requests} requests, {args.concurrency} at a time")
    daraja.default_outcome = StkResult()
    made = ask_many(base, headers, accounts, args.concurrency)
    ids = [m["id"] for m in made]
    wait_settled(base, headers, ids, timeout=60)
    with_callback = seconds_to_credit(dsn, ids)

    n_silent = max(1, args.requests // 2)
    say(f"no callback: {n_silent} requests; customers answer within {2 * QUERY_AFTER} s")
    daraja.default_outcome = None
    made = ask_many(base, headers, accounts[:n_silent], args.concurrency)
    rng = random.Random(7)
    timers = []
    for item in made:
        delay = rng.uniform(0, 2 * QUERY_AFTER)
        reference = item["provider_reference"]
        timer = threading.Timer(delay, daraja.decide, (reference, StkResult(callback=NEVER)))
        timer.start()
        timers.append(timer)
    silent_ids = [m["id"] for m in made]
    wait_settled(base, headers, silent_ids, timeout=120)
    for timer in timers:
        timer.join()
    references = {m["provider_reference"] for m in made}
    asked = [q.json["CheckoutRequestID"] for q in daraja.calls(QUERY)]
    per_request = [asked.count(r) for r in references]
    without_callback = seconds_to_credit(dsn, silent_ids)

    base_p50 = percentile(baseline, 50)
    return {
        "baseline_callback_to_credit": summary(baseline),
        "request_to_credit": {
            **summary(with_callback),
            "x_baseline_p50": round(percentile(with_callback, 50) / base_p50, 2),
        },
        "no_callback": {
            **summary(without_callback),
            "queries_per_settled_request_mean": round(statistics.mean(per_request), 2),
            "queries_per_settled_request_max": max(per_request),
            "query_after_seconds": QUERY_AFTER,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="a few requests (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.concurrency = 4, 2
    logdir = Path(tempfile.mkdtemp(prefix="momo-bench-requests-"))
    results = run(args, logdir)
    b, r, s = (
        results["baseline_callback_to_credit"],
        results["request_to_credit"],
        results["no_callback"],
    )
    print(f"callback to credit (C2B, baseline): p50 {b['p50_ms']} ms, p95 {b['p95_ms']} ms")
    print(
        f"request to credit (STK, callback at once): p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms"
        f" ({r['x_baseline_p50']}x the baseline p50)"
    )
    print(
        f"no callback (beat asks after {s['query_after_seconds']} s): queries per settled "
        f"request mean {s['queries_per_settled_request_mean']}, max "
        f"{s['queries_per_settled_request_max']}; request to credit p50 {s['p50_ms']} ms"
    )
    path = write_json("requests", results)
    print(f"figures in {path}; logs in {logdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
