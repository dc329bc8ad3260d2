"""Accept path: how fast momo takes M-PESA confirmations, against baselines in the same run,
under each WSGI server.

    python -m bench.accept [--servers gunicorn-sync gunicorn-gthread granian]
                           [--seconds 10] [--runs 3] [--connections 16]
                           [--web-workers N] [--threads 4]

Under each server (``--web-workers`` workers; gthread and granian with ``--threads``
threads each) it serves ``hello`` (Flask POST, no work), ``naive`` (parse + one ORM insert
in the request), momo's webhook (``momo.wsgi:web()``, with Redis for the nudge) and the
operator API (``momo.wsgi:api()``: a 50-row payments page read with a viewer token), all on
the same PostgreSQL. One server runs at a time, started for its measurement and stopped
after it; the measurements go round robin (each run: every target under every server in
turn), so a noisy spell on a shared machine falls on every one alike. Prints medians of
``--runs`` runs with ratios to naive under gunicorn sync (the one baseline) and to naive
under the same server, writes bench/results/accept.json, and checks that every callback
acknowledged under every server is in the inbox and that nothing answered other than 2xx.
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
    SERVER_THREADS,
    SERVERS,
    WEB_WORKERS,
    bench_database,
    cpu_seconds,
    median,
    momo_env,
    rss_mb,
    say,
    serve,
    write_json,
)
from bench.load import LoadResult, run_gets, run_load
from bench.reads import seed
from matcher.models import InboxItem

TARGETS = {
    "hello": "bench.baselines:hello_app()",
    "naive": "bench.baselines:naive_app()",
    "momo": "momo.wsgi:web()",
    "api": "momo.wsgi:api()",
}
WEBHOOK_TARGETS = ("hello", "naive", "momo")
MOMO_PATH = f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"
API_PATH = "/api/v1/payments?limit=50"
BASELINE = ("gunicorn-sync", "naive")


def prefix() -> str:
    return "B" + "".join(random.choices(string.ascii_uppercase, k=4))


def viewer_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "momo"), "token", "create", "--name", "bench", "--role", "viewer"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def stored_with(url: str, prefixes: list[str]) -> int:
    """Inbox rows whose receipt code starts with one of ``prefixes``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sum(
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
    finally:
        engine.dispose()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="momo-bench-accept-"))
    results: dict[str, Any] = {"config": vars(args), "logs": str(logdir), "servers": {}}
    targets = [t for t in TARGETS if t != "api" or not args.no_api]
    with bench_database() as url:
        env = momo_env(url, BENCH_DATABASE_URL=url, MOMO_INSTANCE_PATH=str(logdir / "instance"))
        subprocess.run(
            [str(BIN / "momo"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        create_naive_table(url)
        headers: dict[str, str] = {}
        if "api" in targets:
            seed(url, customers=args.api_customers, payments=args.api_payments, seed_value=7)
            headers["Authorization"] = f"Bearer {viewer_token(env)}"
        redis.Redis.from_url(REDIS_URL).flushdb()
        runs: dict[tuple[str, str], list[LoadResult]] = {
            (kind, name): [] for kind in args.servers for name in targets
        }
        prefixes: dict[str, list[str]] = {kind: [] for kind in args.servers}
        peak = dict.fromkeys(runs, 0.0)
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in runs}

        def load(kind: str, name: str, base: str, seconds: float) -> LoadResult:
            if name == "api":
                return run_gets(
                    base + API_PATH, headers, seconds, args.connections, python=args.python_load
                )
            p = prefix()
            if name == "momo":
                prefixes[kind].append(p)
            return run_load(base + MOMO_PATH, p, seconds, args.connections, python=args.python_load)

        for n in range(args.runs):
            for name in targets:
                # the servers innermost: what they are compared on is measured side by side
                for kind in args.servers:
                    threads = 1 if kind == "gunicorn-sync" else args.threads
                    server, base = serve(
                        kind,
                        f"{kind}-{name}",
                        TARGETS[name],
                        env,
                        logdir,
                        workers=args.web_workers,
                        threads=threads,
                    )
                    try:
                        load(kind, name, base, min(2.0, args.seconds))  # warm-up, not counted
                        pids = server.pids()
                        used = cpu_seconds(pids)
                        result = load(kind, name, base, args.seconds)
                        used = cpu_seconds(pids) - used
                        peak[kind, name] = max(peak[kind, name], rss_mb(server.pids()))
                    finally:
                        server.stop()
                    runs[kind, name].append(result)
                    # the server's own CPU per answer: what the machine's other load cannot skew
                    cpu[kind, name].append(1000 * used / max(1, result.requests))
                    say(
                        f"{kind} {name} run {n + 1}: {result.rps:.0f} req/s, "
                        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                        f"non-2xx {result.non_2xx}, errors {result.errors}"
                    )
        for kind in args.servers:
            entries: dict[str, Any] = {}
            for name in targets:
                done = runs[kind, name]
                entry: dict[str, Any] = {
                    "rps": median([r.rps for r in done]),
                    "p50_ms": median([r.p50_ms for r in done]),
                    "p99_ms": median([r.p99_ms for r in done]),
                    "non_2xx": sum(r.non_2xx for r in done),
                    "errors": sum(r.errors for r in done),
                    "peak_rss_mb": round(peak[kind, name], 1),
                    "cpu_ms_per_request": median(cpu[kind, name]),
                    "generator": done[0].generator if done else None,
                    "runs": [r.__dict__ for r in done],
                }
                if name == "momo":
                    stored = stored_with(url, prefixes[kind])
                    acked = sum(r.requests - r.non_2xx for r in done)
                    entry.update(acked=acked, stored=stored, lost=max(0, acked - stored))
                entries[name] = entry
            results["servers"][kind] = entries
    redis.Redis.from_url(REDIS_URL).flushdb()
    return results


def failures(results: dict[str, Any]) -> list[str]:
    """What broke the bench's promises: a callback acknowledged and not stored, an answer
    other than 2xx."""
    found = []
    for kind, entries in results["servers"].items():
        for name, t in entries.items():
            if t.get("lost"):
                found.append(f"{kind} {name}: {t['lost']} acknowledged callbacks not in the inbox")
            if t["non_2xx"]:
                found.append(f"{kind} {name}: {t['non_2xx']} answers other than 2xx")
    return found


def report(results: dict[str, Any]) -> str:
    servers = results["servers"]
    base_kind, base_name = BASELINE
    baseline = servers[base_kind][base_name]["rps"] if base_kind in servers else float("nan")
    api_base = servers.get(base_kind, {}).get("api", {}).get("rps", float("nan"))
    header = (
        "server",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "x naive",
        "x n same",
        "CPU ms",
        "RSS MB",
        "non-2xx",
        "errors",
    )
    lines = [
        f"x naive: naive under {base_kind} (the one baseline); x n same: naive under the same "
        f"server; api: x naive is x api under {base_kind}; CPU ms: the server's processes' "
        "CPU time per answer",
        f"{header[0]:17} {header[1]:6} " + " ".join(f"{h:>8}" for h in header[2:]),
    ]
    for kind, entries in servers.items():
        same = entries["naive"]["rps"]
        for name, t in entries.items():
            first, second = (
                (t["rps"] / api_base, float("nan"))
                if name == "api"
                else (
                    t["rps"] / baseline,
                    t["rps"] / same,
                )
            )
            lines.append(
                f"{kind:17} {name:6} {t['rps']:8.0f} {t['p50_ms']:8.1f} {t['p99_ms']:8.1f} "
                f"{first:8.2f} {second:8.2f} {t['cpu_ms_per_request']:8.2f} "
                f"{t['peak_rss_mb']:8.1f} {t['non_2xx']:8d} "
                f"{t['errors']:8d}"
            )
    for kind, entries in servers.items():
        momo = entries["momo"]
        lines.append(
            f"momo under {kind}: acknowledged {momo['acked']}, in the inbox {momo['stored']}, "
            f"lost {momo['lost']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=SERVERS,
        default=list(SERVERS),
        help="the WSGI servers to compare (default: all); naive under gunicorn-sync is the "
        "baseline, so it is measured whatever this says",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--web-workers",
        type=int,
        default=WEB_WORKERS,
        help=f"workers of every server (default: cores + 1 = {WEB_WORKERS})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=SERVER_THREADS,
        help="threads per worker under gunicorn-gthread and granian (--blocking-threads); "
        f"gunicorn-sync has one (default: {SERVER_THREADS})",
    )
    parser.add_argument("--api-payments", type=int, default=100_000)
    parser.add_argument("--api-customers", type=int, default=10_000)
    parser.add_argument("--no-api", action="store_true", help="the webhook targets only")
    parser.add_argument(
        "--python-load",
        action="store_true",
        help="use the Python load generator even when wrk is installed",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, to check the bench works (CI)"
    )
    args = parser.parse_args(argv)
    if "gunicorn-sync" not in args.servers:
        args.servers.insert(0, "gunicorn-sync")
    if args.smoke:
        args.seconds, args.runs, args.connections = 1.0, 1, 4
        # one worker each: twelve servers start and stop, and starting is most of the time
        args.web_workers, args.threads = 1, 2
        args.api_payments, args.api_customers = 2000, 200
    results = measure(args)
    print(report(results))
    broken = failures(results)
    for line in broken:
        print(f"FAILED: {line}")
    say(f"written {write_json('accept', results)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
