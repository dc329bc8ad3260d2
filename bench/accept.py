"""Accept path: how fast momo takes M-PESA confirmations, against baselines in the same run.

    python -m bench.accept [--seconds 10] [--runs 3] [--connections 16]

Serves three apps with one gunicorn setup (cores + 1 sync workers unless --web-workers
says otherwise) on the same PostgreSQL:
``hello`` (Flask POST, no work), ``naive`` (parse + one ORM insert in the request) and
momo's webhook (``momo.wsgi:web()``, with Redis for the nudge). Prints medians of
``--runs`` runs as a table with ratios to the baselines, writes
bench/results/accept.json, and checks that every acknowledged callback is in the inbox.
"""

from __future__ import annotations

import argparse
import random
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, func, select

from bench.baselines import create_naive_table
from bench.common import (
    BIN,
    PATH_TOKEN,
    REDIS_URL,
    WEB_WORKERS,
    Server,
    bench_database,
    gunicorn,
    median,
    momo_env,
    rss_mb,
    say,
    write_json,
)
from bench.load import LoadResult, run_load
from matcher.models import InboxItem

TARGETS = {
    "hello": "bench.baselines:hello_app()",
    "naive": "bench.baselines:naive_app()",
    "momo": "momo.wsgi:web()",
}
MOMO_PATH = f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"


def prefix() -> str:
    return "B" + "".join(random.choices(string.ascii_uppercase, k=4))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="momo-bench-accept-"))
    results: dict[str, Any] = {"config": vars(args), "targets": {}}
    with bench_database() as url:
        env = momo_env(url, BENCH_DATABASE_URL=url)
        subprocess.run(
            [str(BIN / "momo"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        create_naive_table(url)
        redis.Redis.from_url(REDIS_URL).flushdb()
        servers: dict[str, tuple[Server, str]] = {}
        runs: dict[str, list[LoadResult]] = {name: [] for name in TARGETS}
        prefixes: list[str] = []
        peak = dict.fromkeys(TARGETS, 0.0)
        try:
            for name, target in TARGETS.items():
                servers[name] = gunicorn(
                    name, target, env, logdir, workers=args.web_workers, threads=args.threads
                )
            for _server, base in servers.values():
                run_load(
                    base + MOMO_PATH,
                    prefix(),
                    min(2.0, args.seconds),
                    args.connections,
                    python=args.python_load,
                )  # warm-up, not counted
            # Round robin, so a noisy spell on a shared machine falls on every target alike.
            for n in range(args.runs):
                for name, (server, base) in servers.items():
                    p = prefix()
                    if name == "momo":
                        prefixes.append(p)
                    result = run_load(
                        base + MOMO_PATH, p, args.seconds, args.connections, python=args.python_load
                    )
                    peak[name] = max(peak[name], rss_mb(server.pids()))
                    runs[name].append(result)
                    say(
                        f"{name} run {n + 1}: {result.rps:.0f} req/s, "
                        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                        f"non-2xx {result.non_2xx}, errors {result.errors}"
                    )
        finally:
            for server, _base in servers.values():
                server.stop()
        for name in TARGETS:
            done = runs[name]
            entry: dict[str, Any] = {
                "rps": median([r.rps for r in done]),
                "p50_ms": median([r.p50_ms for r in done]),
                "p99_ms": median([r.p99_ms for r in done]),
                "non_2xx": sum(r.non_2xx for r in done),
                "errors": sum(r.errors for r in done),
                "peak_rss_mb": round(peak[name], 1),
                "generator": done[0].generator if done else None,
                "runs": [r.__dict__ for r in done],
            }
            if name == "momo":
                engine = create_engine(url)
                with engine.connect() as conn:
                    stored = sum(
                        int(
                            conn.scalar(
                                select(func.count())
                                .select_from(InboxItem)
                                .where(InboxItem.code.like(f"{p}%"))
                            )
                            or 0
                        )
                        for p in prefixes
                    )
                engine.dispose()
                acked = sum(r.requests - r.non_2xx for r in done)
                entry.update(acked=acked, stored=stored, lost=max(0, acked - stored))
            results["targets"][name] = entry
    redis.Redis.from_url(REDIS_URL).flushdb()
    return results


def report(results: dict[str, Any]) -> str:
    targets = results["targets"]
    naive, hello = targets["naive"]["rps"], targets["hello"]["rps"]
    header = ("target", "req/s", "p50 ms", "p99 ms", "x naive", "x hello", "RSS MB")
    lines = [f"{header[0]:8} " + " ".join(f"{h:>8}" for h in header[1:])]
    for name, t in targets.items():
        lines.append(
            f"{name:8} {t['rps']:8.0f} {t['p50_ms']:8.1f} {t['p99_ms']:8.1f} "
            f"{t['rps'] / naive:8.2f} {t['rps'] / hello:8.2f} {t['peak_rss_mb']:8.1f}"
        )
    momo = targets["momo"]
    lines.append(
        f"momo: acknowledged {momo['acked']}, in the inbox {momo['stored']}, lost {momo['lost']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--web-workers",
        type=int,
        default=WEB_WORKERS,
        help=f"gunicorn workers for every target (default: cores + 1 = {WEB_WORKERS})",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="gthread workers with this many threads (1: sync)"
    )
    parser.add_argument(
        "--python-load",
        action="store_true",
        help="use the Python load generator even when wrk is installed",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, to check the bench works (CI)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.runs, args.connections = 1.0, 1, 4
    results = measure(args)
    print(report(results))
    say(f"written {write_json('accept', results)}")
    return 1 if results["targets"]["momo"]["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
