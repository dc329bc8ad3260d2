"""End to end: callbacks in over HTTP, credited balances out, with 1 and 2 worker processes.

    python -m bench.e2e [--seconds 60] [--rate N] [--workers 1 2] [--servers gunicorn-sync granian]
        [--write-batches 1 64] [--backlog N]

First measures the naive handler (parse + one ORM insert per request, bench.baselines)
under the same gunicorn setup: its accept rate is what the whole pipeline is compared
with. Then, for each web server (``--servers``, see bench.common.SERVERS) and each worker
count, on a fresh database with the workers running:

- sustained: callbacks offered as fast as the load generator can for ``--seconds``
  (60 by default); the figure is the payments credited *while* they were offered, per
  second (credits that came after the load stopped do not count), and every
  acknowledged callback must be credited in the end;
- half: callbacks offered at a fixed ``--rate`` (default: half the sustained credited
  rate just measured); callback-to-credit latency p50/p99, from the inbox row's
  arrival to the commit that credited it;
- backlog: a backlog already in the inbox drained flat out (the workers' own capacity).

Every credited/s is also given as a ratio to naive's accept rate. Also reports the
peak RSS of web and worker processes.
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
    SERVERS,
    Server,
    bench_database,
    gunicorn,
    momo_env,
    rss_mb,
    say,
    serve,
    write_json,
)
from bench.load import ACCOUNTS, account, body_template, payer, put_backlog, run_load
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
            run_load(base + PATH, "NWARM", min(2.0, args.baseline_seconds), args.connections)
            rates = []
            for n in range(args.baseline_runs):
                result = run_load(
                    base + PATH,
                    f"NB{n:02d}",
                    args.baseline_seconds,
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
            n = i * threads + t
            body = template % (f"{prefix}{t:02d}{i:07d}", account(n), payer(n))
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
    put_backlog(dsn, prefix, rows)
    producer = make_producer(load_settings(env))
    nudged = datetime.now(UTC)
    for _ in range(4):
        producer.send_task(PROCESS_INBOX)
    figures = drained(dsn, prefix, rows, timeout=600, since=nudged)
    producer.close()
    return figures


def drained(
    dsn: str,
    prefix: str,
    expected: int,
    timeout: float,
    *,
    since: datetime | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """Wait until every callback of the phase is credited, then read the figures.

    ``credited_per_s`` is over the span from the first callback's arrival (or from
    ``since``, when the workers were told of a backlog) to the last credit; with
    ``window`` (when the load started and stopped) it counts only the payments credited
    within it: the rate the pipeline kept up while offered."""
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
        start = "%s::timestamptz" if since else "min(i.received_at)"
        during = 0
        if window is not None:
            during = conn.execute(
                "SELECT count(*) FROM inbox WHERE code LIKE %s AND reason = 'credited' "
                "AND processed_at BETWEEN %s AND %s",
                (f"{prefix}%", *window),
            ).fetchone()[0]  # type: ignore[index]
        row = conn.execute(
            f"SELECT count(*), {start}, max(i.processed_at) FROM inbox i "  # noqa: S608
            "JOIN payments p ON p.id = i.payment_id "
            "WHERE i.code LIKE %s AND i.reason = 'credited'",
            (*([since] if since else []), f"{prefix}%"),
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
    rate = credited / span if span else 0.0
    if window is not None:
        rate = during / (window[1] - window[0]).total_seconds()
    return {
        "offered": expected,
        "credited": credited,
        "credited_per_s": rate,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan"),
        "complete": done >= expected,
    }


def run(
    server: str, workers: int, write_batch: int | None, args: argparse.Namespace, logdir: Path
) -> dict[str, Any]:
    with bench_database() as url:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        env = momo_env(url, MOMO_SWEEP_AFTER_SECONDS="5", MOMO_SWEEP_INTERVAL_SECONDS="2")
        if write_batch is not None:
            env["MOMO_DB_WRITE_BATCH"] = str(write_batch)
        subprocess.run(
            [str(BIN / "momo"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        seed_customers(dsn)
        redis.Redis.from_url(REDIS_URL).flushdb()
        name = f"web-{server}-{workers}w" + (f"-wb{write_batch}" if write_batch else "")
        web, base = serve(server, name, "momo.wsgi:web()", env, logdir)
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
            began = datetime.now(UTC)
            result = run_load(
                base + PATH, "EMAX", args.seconds, args.connections, python=args.python_load
            )
            ended = datetime.now(UTC)
            acked = result.requests - result.non_2xx
            sustained = drained(dsn, "EMAX", acked, timeout=300, window=(began, ended))
            sustained.update(
                offered_per_s=result.rps, answered_5xx=result.non_2xx, errors=result.errors
            )
            say(
                f"  offered {result.rps:.0f}/s, credited while offered "
                f"{sustained['credited_per_s']:.0f}/s, {sustained['credited']} of {acked} "
                f"acknowledged credited, p50 {sustained['p50_ms']:.0f} ms, "
                f"p99 {sustained['p99_ms']:.0f} ms"
            )
            rate = args.rate or max(1.0, round(sustained["credited_per_s"] / 2))
            say(f"{workers} worker process(es): offering {rate:.0f}/s for {args.seconds:.0f} s")
            acked = paced(base + PATH, "EFIX", rate, args.seconds)
            half = drained(dsn, "EFIX", acked, timeout=120)
            half["offered_per_s"] = rate
            say(
                f"  credited {half['credited_per_s']:.0f}/s, p50 {half['p50_ms']:.0f} ms, "
                f"p99 {half['p99_ms']:.0f} ms"
            )
            # no offered rate: the backlog is in the inbox before the workers are told
            none = float("nan")
            drain = {"offered_per_s": none, "credited_per_s": none, "complete": True}
            drain |= {"p50_ms": none, "p99_ms": none}
            if args.backlog:
                say(f"{workers} worker process(es): draining a backlog of {args.backlog}")
                drain |= backlog(dsn, env, "EBKL", args.backlog)
                say(f"  credited {drain['credited_per_s']:.0f}/s")
        finally:
            stop.set()
            for server in (beat, worker, web):
                server.stop()
    return {
        "sustained": sustained,
        "half": half,
        "backlog": drain,
        "peak_rss_mb": {k: round(v, 1) for k, v in peaks.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="length of the sustained and half phases"
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=10.0, help="length of each naive run"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="fixed offered rate (default: half the sustained credited rate)",
    )
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["gunicorn-sync"],
        choices=SERVERS,
        help="what serves the webhook (naive is always under gunicorn sync)",
    )
    parser.add_argument(
        "--backlog", type=int, default=20000, help="callbacks in the backlog phase (0: none)"
    )
    parser.add_argument(
        "--write-batches",
        type=int,
        nargs="+",
        default=[None],
        metavar="N",
        help="run each server once per MOMO_DB_WRITE_BATCH given (default: momo's own)",
    )
    parser.add_argument("--python-load", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, to check the bench works (CI)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.rate, args.workers, args.connections = 2.0, 50.0, [1], 4
        args.baseline_seconds, args.servers = 2.0, ["gunicorn-sync", "granian"]
        args.backlog, args.baseline_runs = 300, 1
    logdir = Path(tempfile.mkdtemp(prefix="momo-bench-e2e-"))
    naive = naive_baseline(args, logdir)
    say(f"naive baseline {naive:.0f} req/s")
    results: dict[str, Any] = {"config": vars(args), "naive_rps": naive, "workers": {}}
    for server in args.servers:
        for workers in args.workers:
            for batch in args.write_batches:
                key = f"{server}/{workers}" + (f"/wb{batch}" if batch else "")
                results["workers"][key] = run(server, workers, batch, args, logdir)
    print(f"naive handler (same gunicorn setup, this run): {naive:.0f} req/s")
    print(
        f"{'server/workers':20} {'offered/s':>10} {'credited/s':>11} {'x naive':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8}  phase"
    )
    for workers, r in results["workers"].items():
        for phase in ("sustained", "half", "backlog"):
            f = r[phase]
            if phase == "backlog" and not args.backlog:
                continue
            # a ratio says something where the pipeline ran flat out, not at a set rate
            ratio = phase != "half" and naive
            f["x_naive"] = round(f["credited_per_s"] / naive, 2) if ratio else None
            shown = f"{f['x_naive']:8.2f}" if ratio else f"{'-':>8}"
            print(
                f"{workers:20} {f['offered_per_s']:10.0f} {f['credited_per_s']:11.0f} {shown} "
                f"{f['p50_ms']:8.0f} {f['p99_ms']:8.0f}  {phase}"
            )
        print(
            f"{'':20} sustained: {r['sustained']['credited']} of {r['sustained']['offered']} "
            f"acknowledged callbacks credited, {r['sustained']['answered_5xx']} non-2xx; "
            f"peak RSS: web {r['peak_rss_mb']['web']} MB, worker {r['peak_rss_mb']['worker']} MB"
        )
    say(f"written {write_json('e2e', results)} (logs in {logdir})")
    incomplete = [
        w
        for w, r in results["workers"].items()
        if not all(r[phase]["complete"] for phase in ("sustained", "half", "backlog"))
        or r["sustained"]["answered_5xx"]
    ]
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
