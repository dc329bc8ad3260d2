"""End to end: callbacks in over HTTP, credited balances out, with 1 and 2 worker processes.

    python -m bench.e2e [--seconds 10] [--rate N] [--workers 1 2]

First measures the naive handler (parse + one ORM insert per request, bench.baselines)
under the same gunicorn setup: the rate the whole pipeline is compared with. Then, for
each worker count, on a fresh database: offers callbacks as fast as the load generator
can (sustained credited payments/s), then at a fixed ``--rate`` (default: half the
naive rate; callback-to-credit latency p50/p99, from the inbox row's arrival to the
commit that credited it), then drains a backlog already in the inbox (the workers' own
capacity). Every credited/s is also given as a ratio to the naive rate. Also reports
the peak RSS of web and worker processes.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import redis
from sqlalchemy.engine import make_url

from bench.baselines import create_naive_table
from bench.common import (
    BIN,
    PATH_TOKEN,
    REDIS_URL,
    Server,
    bench_database,
    gunicorn,
    momo_env,
    rss_mb,
    say,
    write_json,
)
from bench.load import ACCOUNTS, account, body_template, run_load
from ingest.providers import load_settings
from tasks.celery_app import PROCESS_INBOX, make_producer

PATH = f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"


def naive_baseline(args: argparse.Namespace, logdir: Path) -> float:
    """The naive handler's req/s (median of runs) under the same gunicorn setup: the
    figure the whole pipeline is compared with."""
    with bench_database() as url:
        env = momo_env(url, BENCH_DATABASE_URL=url)
        create_naive_table(url)
        server, base = gunicorn("naive", "bench.baselines:naive_app()", env, logdir)
        try:
            run_load(base + PATH, "NWARM", min(2.0, args.seconds), args.connections)
            rates = []
            for n in range(args.baseline_runs):
                result = run_load(
                    base + PATH,
                    f"NB{n:02d}",
                    args.seconds,
                    args.connections,
                    python=args.python_load,
                )
                say(f"naive baseline run {n + 1}: {result.rps:.0f} req/s")
                rates.append(result.rps)
        finally:
            server.stop()
    return statistics.median(rates)


def seed_customers(dsn: str) -> None:
    now = datetime.now(UTC)
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY customers (account_number, account_key, name, balance_minor, created_at, "
            "updated_at) FROM STDIN"
        ) as copy,
    ):
        for n in range(ACCOUNTS):
            name = account(n)
            copy.write_row((name, name.lower(), name, 0, now, now))


def paced(url: str, prefix: str, rate: float, seconds: float, threads: int = 8) -> int:
    """Send ``rate`` callbacks a second for ``seconds``; returns how many were acknowledged."""
    parsed = urlparse(url)
    template = body_template()
    acked = [0] * threads
    start = time.monotonic() + 0.2
    interval = threads / rate

    def sender(t: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        i = 0
        while True:
            due = start + i * interval + t * interval / threads
            if due - start > seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = template % (f"{prefix}{t:02d}{i:07d}", account(i * threads + t))
            conn.request("POST", parsed.path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                acked[t] += 1
            i += 1
        conn.close()

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(acked)


def backlog(dsn: str, env: dict[str, str], prefix: str, rows: int) -> dict[str, Any]:
    """The workers' own capacity: ``rows`` callbacks already in the inbox, drained flat out."""
    template = body_template()
    now = datetime.now(UTC)
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY inbox (provider, kind, body, headers, status, code, attempts, received_at) "
            "FROM STDIN"
        ) as copy,
    ):
        for n in range(rows):
            code = f"{prefix}{n:08d}"
            body = (template % (code, account(n))).encode()
            copy.write_row(("mpesa", "c2b/confirmation", body, "{}", "pending", code, 0, now))
    producer = make_producer(load_settings(env))
    for _ in range(4):
        producer.send_task(PROCESS_INBOX)
    figures = drained(dsn, prefix, rows, timeout=600, from_first_processed=True)
    producer.close()
    return figures


def drained(
    dsn: str, prefix: str, expected: int, timeout: float, *, from_first_processed: bool = False
) -> dict[str, Any]:
    """Wait until every callback of the phase is credited, then read the figures."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            done = conn.execute(
                "SELECT count(*) FROM inbox WHERE code LIKE %s AND status <> 'pending'",
                (f"{prefix}%",),
            ).fetchone()[0]  # type: ignore[index]
            if done >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        start = "min(i.processed_at)" if from_first_processed else "min(i.received_at)"
        row = conn.execute(
            f"SELECT count(*), {start}, max(i.processed_at) FROM inbox i "  # noqa: S608
            "JOIN payments p ON p.id = i.payment_id "
            "WHERE i.code LIKE %s AND i.reason = 'credited'",
            (f"{prefix}%",),
        ).fetchone()
        latencies = [
            r[0] * 1000
            for r in conn.execute(
                "SELECT extract(epoch FROM processed_at - received_at) FROM inbox "
                "WHERE code LIKE %s AND reason = 'credited' ORDER BY 1",
                (f"{prefix}%",),
            )
        ]
    credited, first, last = row  # type: ignore[misc]
    span = (last - first).total_seconds() if credited else 0.0
    return {
        "offered": expected,
        "credited": credited,
        "credited_per_s": credited / span if span else 0.0,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan"),
        "complete": done >= expected,
    }


def run(workers: int, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    with bench_database() as url:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        env = momo_env(url, MOMO_SWEEP_AFTER_SECONDS="5", MOMO_SWEEP_INTERVAL_SECONDS="2")
        subprocess.run(
            [str(BIN / "momo"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        seed_customers(dsn)
        redis.Redis.from_url(REDIS_URL).flushdb()
        web, base = gunicorn(f"web-{workers}w", "momo.wsgi:web()", env, logdir)
        worker = Server(
            f"worker-{workers}w",
            [
                str(BIN / "momo"),
                "worker",
                "--concurrency",
                str(workers),
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            env,
            logdir,
        )
        beat = Server(
            f"beat-{workers}w",
            [str(BIN / "momo"), "beat", "--schedule", str(logdir / f"beat-{workers}")],
            env,
            logdir,
        )
        peaks = {"web": 0.0, "worker": 0.0}
        stop = threading.Event()

        def sample_rss() -> None:
            while not stop.is_set():
                peaks["web"] = max(peaks["web"], rss_mb(web.pids()))
                peaks["worker"] = max(peaks["worker"], rss_mb(worker.pids()))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        try:
            time.sleep(3)  # the worker connects to the broker
            say(f"{workers} worker process(es): offering at the maximum for {args.seconds:.0f} s")
            result = run_load(
                base + PATH, "EMAX", args.seconds, args.connections, python=args.python_load
            )
            maximum = drained(dsn, "EMAX", result.requests - result.non_2xx, timeout=300)
            maximum["offered_per_s"] = result.rps
            say(
                f"  offered {result.rps:.0f}/s, credited {maximum['credited_per_s']:.0f}/s, "
                f"p50 {maximum['p50_ms']:.0f} ms, p99 {maximum['p99_ms']:.0f} ms"
            )
            say(
                f"{workers} worker process(es): offering {args.rate:.0f}/s for {args.seconds:.0f} s"
            )
            acked = paced(base + PATH, "EFIX", args.rate, args.seconds)
            fixed = drained(dsn, "EFIX", acked, timeout=120)
            fixed["offered_per_s"] = args.rate
            say(
                f"  credited {fixed['credited_per_s']:.0f}/s, p50 {fixed['p50_ms']:.0f} ms, "
                f"p99 {fixed['p99_ms']:.0f} ms"
            )
            say(f"{workers} worker process(es): draining a backlog of {args.backlog} callbacks")
            drain = backlog(dsn, env, "EBKL", args.backlog)
            drain["offered_per_s"] = float("nan")
            say(f"  credited {drain['credited_per_s']:.0f}/s")
        finally:
            stop.set()
            for server in (beat, worker, web):
                server.stop()
    return {
        "max": maximum,
        "fixed": fixed,
        "backlog": drain,
        "peak_rss_mb": {k: round(v, 1) for k, v in peaks.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=None, help="fixed offered rate (default: half of naive)"
    )
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backlog", type=int, default=20000, help="callbacks in the backlog phase")
    parser.add_argument("--python-load", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, to check the bench works (CI)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.rate, args.workers, args.connections = 2.0, 50.0, [1], 4
        args.backlog, args.baseline_runs = 300, 1
    logdir = Path(tempfile.mkdtemp(prefix="momo-bench-e2e-"))
    naive = naive_baseline(args, logdir)
    if args.rate is None:
        args.rate = round(naive / 2)
    say(f"naive baseline {naive:.0f} req/s; fixed rate {args.rate:.0f}/s")
    results: dict[str, Any] = {"config": vars(args), "naive_rps": naive, "workers": {}}
    for workers in args.workers:
        results["workers"][str(workers)] = run(workers, args, logdir)
    print(f"naive handler (same gunicorn setup, this run): {naive:.0f} req/s")
    print(
        f"{'workers':8} {'offered/s':>10} {'credited/s':>11} {'x naive':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8}  phase"
    )
    for workers, r in results["workers"].items():
        for phase in ("max", "fixed", "backlog"):
            f = r[phase]
            # a ratio says something where the pipeline ran flat out, not at a set rate
            ratio = phase != "fixed" and naive
            f["x_naive"] = round(f["credited_per_s"] / naive, 2) if ratio else None
            shown = f"{f['x_naive']:8.2f}" if ratio else f"{'-':>8}"
            print(
                f"{workers:8} {f['offered_per_s']:10.0f} {f['credited_per_s']:11.0f} {shown} "
                f"{f['p50_ms']:8.0f} {f['p99_ms']:8.0f}  {phase}"
            )
        print(
            f"{'':8} peak RSS: web {r['peak_rss_mb']['web']} MB, "
            f"worker {r['peak_rss_mb']['worker']} MB"
        )
    say(f"written {write_json('e2e', results)} (logs in {logdir})")
    incomplete = [
        w
        for w, r in results["workers"].items()
        if not all(r[phase]["complete"] for phase in ("max", "fixed", "backlog"))
    ]
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
