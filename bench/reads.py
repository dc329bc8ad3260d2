"""Operator reads at scale: lists, deep pages, search by every field, revenue.

    python -m bench.reads [--payments 1000000] [--customers 100000] [--samples 50]

Seeds its own database on the PostgreSQL server with COPY (progress shown), then
times each read through the real API (``momo.wsgi:api()`` under ``--server``, granian by
default, as the Procfile runs it) and reports p50/p95 per read, the deep page against
the first, and the API process's RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy.engine import make_url

from bench.common import BIN, SERVERS, bench_database, momo_env, rss_mb, say, serve, write_json
from matcher.revenue import fold_days, slice_of

BATCH = 50_000


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: Any, total: int) -> None:
    done = 0
    started = time.monotonic()
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            done += 1
            if done % BATCH == 0 or done == total:
                rate = done / max(time.monotonic() - started, 1e-6)
                print(f"\r  {table}: {done:,}/{total:,} rows ({rate:,.0f}/s)", end="", flush=True)
    print(flush=True)


def seed(url: str, *, customers: int, payments: int, seed_value: int) -> dict[str, Any]:
    """Customers with phones, payments (9 in 10 associated) and their ledger credits."""
    rnd = random.Random(seed_value)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    now = datetime.now(UTC)
    phones = [f"+2547{rnd.randrange(10**8):08d}" for _ in range(customers)]
    balances = [0] * customers
    say(f"seeding {customers:,} customers and {payments:,} payments")
    with psycopg.connect(dsn) as conn:
        _copy(
            conn,
            "customers",
            [
                "id",
                "account_number",
                "account_key",
                "name",
                "balance_minor",
                "created_at",
                "updated_at",
            ],
            (
                (n + 1, f"ACC{n + 1:06d}", f"acc{n + 1:06d}", f"Customer {n + 1}", 0, now, now)
                for n in range(customers)
            ),
            customers,
        )
        _copy(
            conn,
            "customer_phones",
            ["id", "customer_id", "e164", "sha256"],
            (
                (n + 1, n + 1, phones[n], hashlib.sha256(phones[n][1:].encode()).hexdigest())
                for n in range(customers)
            ),
            customers,
        )
        plan: list[tuple[int, int, int, str, datetime]] = []
        for n in range(payments):
            owner = rnd.randrange(customers) if rnd.random() < 0.9 else -1
            amount = rnd.choice([2000, 5000, 10000, 150000, rnd.randrange(100, 500000)])
            code = "T" + "".join(rnd.choices(string.ascii_uppercase + string.digits, k=9))
            plan.append(
                (n + 1, owner, amount, code, now - timedelta(seconds=rnd.randrange(366 * 86400)))
            )
            if owner >= 0:
                balances[owner] += amount

        def payment_rows():  # type: ignore[no-untyped-def]
            for ident, owner, amount, code, paid_at in plan:
                phone = phones[owner] if owner >= 0 else f"+2547{ident % 10**8:08d}"
                yield (
                    ident,
                    "mpesa",
                    "c2b",
                    f"{code}{ident:07d}"[:20],
                    amount,
                    "KES",
                    paid_at,
                    phone[1:],
                    "phone",
                    phone,
                    hashlib.sha256(phone[1:].encode()).hexdigest(),
                    "PAYER",
                    f"ACC{owner + 1:06d}" if owner >= 0 else "",
                    "associated" if owner >= 0 else "unassociated",
                    owner + 1 if owner >= 0 else None,
                    "account_number" if owner >= 0 else None,
                    None if owner >= 0 else "no_match",
                    "[]",
                    paid_at,
                    paid_at,
                )

        _copy(
            conn,
            "payments",
            [
                "id",
                "provider",
                "channel",
                "code",
                "amount_minor",
                "currency",
                "paid_at",
                "msisdn_raw",
                "msisdn_kind",
                "phone",
                "msisdn_sha256",
                "payer_name",
                "account_reference",
                "status",
                "customer_id",
                "match_method",
                "reason",
                "candidates",
                "created_at",
                "updated_at",
            ],
            payment_rows(),
            payments,
        )
        credited = [p for p in plan if p[1] >= 0]
        amounts: Counter[datetime] = Counter()
        counts: Counter[datetime] = Counter()
        received: Counter[datetime] = Counter()
        for _ident, owner, amount, _code, paid_at in plan:
            received[slice_of(paid_at)] += amount
            if owner >= 0:  # credited
                amounts[slice_of(paid_at)] += amount
                counts[slice_of(paid_at)] += 1
        _copy(
            conn,
            "revenue_slices",
            ["slice_start", "amount_minor", "payments", "received_minor"],
            ((s, amounts[s], counts[s], received[s]) for s in sorted(received)),
            len(received),
        )
        days = fold_days((s, amounts[s], counts[s], received[s]) for s in received)
        _copy(
            conn,
            "revenue_days",
            ["day_start", "amount_minor", "payments", "received_minor"],
            ((d, *days[d]) for d in sorted(days)),
            len(days),
        )
        _copy(
            conn,
            "ledger_entries",
            [
                "id",
                "customer_id",
                "amount_minor",
                "kind",
                "payment_id",
                "idempotency_key",
                "created_by",
                "created_at",
            ],
            (
                (
                    n + 1,
                    owner + 1,
                    amount,
                    "payment_credit",
                    ident,
                    f"payment:{ident}:credit:1",
                    "mpesa",
                    paid_at,
                )
                for n, (ident, owner, amount, _c, paid_at) in enumerate(credited)
            ),
            len(credited),
        )
        say("setting balances and sequences, ANALYZE")
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE b (id bigint, balance bigint)")
            with cur.copy("COPY b FROM STDIN") as copy:
                for n, balance in enumerate(balances):
                    copy.write_row((n + 1, balance))
            cur.execute("UPDATE customers c SET balance_minor = b.balance FROM b WHERE b.id = c.id")
            for table in ("customers", "customer_phones", "payments", "ledger_entries"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - fixed names
                    f"(SELECT max(id) FROM {table}))"
                )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        sample_payment = plan[len(plan) // 2]
    return {
        "account": f"ACC{sample_payment[1] + 1:06d}" if sample_payment[1] >= 0 else "ACC000001",
        "phone": phones[sample_payment[1]] if sample_payment[1] >= 0 else phones[0],
        "code": f"{sample_payment[3]}{sample_payment[0]:07d}"[:20],
        "amount": f"{sample_payment[2] / 100:.2f}",
    }


def time_in_turn(
    session: requests.Session,
    bases: dict[str, str],
    path: str,
    params: dict[str, str],
    samples: int,
) -> dict[str, dict[str, float]]:
    """``time_get`` on each of ``bases`` (name -> API root), one request on each in turn."""
    rounds = [
        {name: time_get(session, f"{base}{path}", params, 1) for name, base in bases.items()}
        for _ in range(samples)
    ]
    figures = {}
    for name in bases:
        timings = sorted(r[name]["p50_ms"] for r in rounds)
        figures[name] = {
            "p50_ms": statistics.median(timings),
            "p95_ms": timings[max(0, int(len(timings) * 0.95) - 1)],
            "items": rounds[-1][name]["items"],
        }
    return figures


def time_get(
    session: requests.Session, url: str, params: dict[str, str], samples: int
) -> dict[str, float]:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        response = session.get(url, params=params, timeout=60)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    timings.sort()
    return {
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[max(0, int(len(timings) * 0.95) - 1)],
        "items": len(response.json().get("items", [])) if "items" in response.json() else -1,
    }


def read_requests(
    known: dict[str, Any], cursor: str | None
) -> dict[str, tuple[str, dict[str, str]]]:
    """Each read an operator makes, by name: its path under /api/v1 and its parameters.
    ``known`` is what ``seed`` returned; ``cursor`` a page 10,000 rows deep."""
    phone = known["phone"]
    return {
        "first page": ("/payments", {}),
        "page 10,000 deep": ("/payments", {"cursor": cursor} if cursor else {}),
        "unassociated first page": ("/payments", {"status": "unassociated"}),
        "unassociated count": ("/payments/count", {"status": "unassociated"}),
        "associated count": ("/payments/count", {"status": "associated"}),
        "search account": ("/payments", {"q": known["account"].lower()}),
        "search phone +254": ("/payments", {"q": phone}),
        "search phone 07..": ("/payments", {"q": "0" + phone[4:]}),
        "search phone spaced": (
            "/payments",
            {"q": f"{phone[:4]} {phone[4:7]} {phone[7:10]} {phone[10:]}"},
        ),
        "search partial digits": ("/payments", {"q": phone[5:11]}),
        "search code": ("/payments", {"q": known["code"].lower()}),
        "search amount": ("/payments", {"q": known["amount"]}),
        "customer dropdown": ("/customers", {"q": known["account"][:7]}),
        "transactions first page": ("/transactions", {}),
        "revenue month by day": ("/dashboard/revenue", {"period": "day"}),
        "revenue year by month": ("/dashboard/revenue", {"period": "month"}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, to check the bench works (CI)"
    )
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        help="another checkout of momo (e.g. `git worktree add /tmp/before main`) whose API "
        "serves the same database too: each read is timed on both, request by request in "
        "turn, so before and after come from one run",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="granian",
        help="what serves the API (default: the Procfile's, granian)",
    )
    args = parser.parse_args(argv)
    if args.compare_with and args.server == "granian":
        parser.error(
            "--compare-with serves the other checkout with gunicorn's --chdir: "
            "add --server gunicorn-sync (or gunicorn-gthread)"
        )
    if args.smoke:
        args.payments, args.customers, args.samples = 3000, 300, 3
    logdir = Path(tempfile.mkdtemp(prefix="momo-bench-reads-"))
    results: dict[str, Any] = {"config": vars(args), "reads": {}}
    with bench_database() as url:
        env = momo_env(url)
        subprocess.run(
            [str(BIN / "momo"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        started = time.monotonic()
        known = seed(url, customers=args.customers, payments=args.payments, seed_value=args.seed)
        results["seed_seconds"] = round(time.monotonic() - started, 1)
        token = (
            subprocess.run(
                [str(BIN / "momo"), "token", "create", "--name", "bench", "--role", "viewer"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        server, base = serve(args.server, "api", "momo.wsgi:api()", env, logdir)
        other = None
        if args.compare_with:
            # gunicorn's --chdir puts that checkout first on sys.path
            other_env = {**env, "GUNICORN_CMD_ARGS": f"--chdir {Path(args.compare_with).resolve()}"}
            other = serve(args.server, "api-other", "momo.wsgi:api()", other_env, logdir)
        try:
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {token}"
            api = f"{base}/api/v1"
            # a cursor 10,000 rows deep, reached the way a client would
            cursor = None
            for _ in range(20):
                page = http.get(
                    f"{api}/payments",
                    params={"limit": "500", **({"cursor": cursor} if cursor else {})},
                    timeout=60,
                ).json()
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            reads = read_requests(known, cursor)
            bases = {"this": api, **({"other": f"{other[1]}/api/v1"} if other else {})}
            for name, (path, params) in reads.items():
                for where in bases.values():
                    time_get(http, f"{where}{path}", params, 2)  # warm
                both = time_in_turn(http, bases, path, params, args.samples)
                results["reads"][name] = both["this"]
                line = (
                    f"{name:26} p50 {both['this']['p50_ms']:7.1f} ms  "
                    f"p95 {both['this']['p95_ms']:7.1f} ms  items {both['this']['items']}"
                )
                if other:
                    results.setdefault("other", {})[name] = both["other"]
                    line += (
                        f"  | other p50 {both['other']['p50_ms']:7.1f} ms  "
                        f"p95 {both['other']['p95_ms']:7.1f} ms  "
                        f"p95 this/other {both['this']['p95_ms'] / both['other']['p95_ms']:.2f}"
                    )
                say(line)
            results["api_peak_rss_mb"] = round(rss_mb(server.pids()), 1)
            if other:
                results["other_api_peak_rss_mb"] = round(rss_mb(other[0].pids()), 1)
        finally:
            server.stop()
            if other:
                other[0].stop()
    first = results["reads"]["first page"]["p95_ms"]
    deep = results["reads"]["page 10,000 deep"]["p95_ms"]
    results["deep_over_first_p95"] = round(deep / first, 2) if first else None
    worst = max(results["reads"].items(), key=lambda kv: kv[1]["p95_ms"])
    print(
        f"reads: {args.payments:,} payments, {args.customers:,} customers; worst p95 "
        f"{worst[1]['p95_ms']:.1f} ms ({worst[0]}); "
        f"deep/first p95 {results['deep_over_first_p95']}; "
        f"api RSS {results['api_peak_rss_mb']} MB; seeded in {results['seed_seconds']} s"
    )
    say(f"written {write_json('reads', results)}")
    print(json.dumps({k: v["p95_ms"] for k, v in results["reads"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
