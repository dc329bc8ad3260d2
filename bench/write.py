"""The webhook's inbox write alone: rows/s and CPU per row, group commit against one
INSERT and one commit per row.

    python -m bench.write [--seconds 3] [--threads 1 4 16 32] [--runs 1] [--smoke]

For each thread count, on a database of the bench's own, N threads each store rows
through the webhook's PostgreSQL writer (``InboxWriter.for_database``, 4 connections,
the 3 s write deadline) as fast as it takes them, first one INSERT and one commit per
row (``MOMO_DB_WRITE_BATCH=1``, the baseline), then with group commit (the default
batch), alternating when ``--runs`` is more than 1 so a noisy spell falls on both.
Reports rows/s, rows per commit (the writer's count; PostgreSQL's own transaction
count beside it), and CPU per stored row: of the bench process (all its threads:
building the row, the writer, psycopg) and of the PostgreSQL backends serving the
writer's connections (/proc of each backend, as ``ps`` shows it). Every figure of the
group writer is also given as a ratio to the baseline of the same run. The run fails
when a row the writer returned from is not in the inbox, or is there twice.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.common import bench_database, cpu_seconds, say, write_json
from ingest.store import WRITE_BATCH, InboxWriter, PostgresInboxWriter, inbox_row
from matcher.db import make_engine
from matcher.migrate import upgrade

CONNECTIONS = 4
DEADLINE_SECONDS = 3

BODY = {
    "TransactionType": "Pay Bill",
    "TransID": "@@CODE@@",
    "TransTime": "20251103143015",
    "TransAmount": "1500.00",
    "BusinessShortCode": "600984",
    "BillRefNumber": "ACC000123",
    "InvoiceNumber": "",
    "OrgAccountBalance": "",
    "ThirdPartyTransID": "",
    "MSISDN": "2547 ***** 126",
    "FirstName": "John",
}


@dataclass(frozen=True)
class Run:
    threads: int
    batch: int
    seconds: float
    rows: int
    commits: int
    xact_commits: int
    bench_cpu: float
    postgres_cpu: float
    failures: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def rows_per_commit(self) -> float:
        return self.rows / self.commits if self.commits else float("nan")

    def us_per_row(self, cpu: float) -> float:
        return cpu / self.rows * 1e6 if self.rows else float("nan")


def writer_backends(admin: psycopg.Connection[Any]) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'momo-webhook'"
    ).fetchall()
    return [pid for (pid,) in rows]


def xact_commits(admin: psycopg.Connection[Any]) -> int:
    admin.execute("SELECT pg_stat_clear_snapshot()")
    row = admin.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def one_run(url: str, threads: int, batch: int, seconds: float, tag: str) -> Run:
    engine = make_engine(url)
    writer = InboxWriter.for_database(
        engine, timeout=DEADLINE_SECONDS, connections=CONNECTIONS, batch=batch
    )
    assert isinstance(writer, PostgresInboxWriter)
    template = json.dumps(BODY)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    stop = threading.Event()
    counts = [0] * threads
    failures = [0] * threads
    start = threading.Barrier(threads + 1)

    def store_rows(n: int) -> None:
        start.wait()
        i = 0
        while not stop.is_set():
            code = f"{tag}{n:02d}{i:07d}"
            row = inbox_row(
                provider="mpesa",
                kind="c2b/confirmation",
                body=template.replace("@@CODE@@", code).encode(),
                headers={"Content-Type": "application/json"},
                client_addr="196.201.214.200",
                code=code,
            )
            try:
                writer.store(row)
            except Exception:  # counted: the run then fails, as a lost row would
                failures[n] += 1
            else:
                counts[n] += 1
            i += 1

    with psycopg.connect(dsn, autocommit=True) as admin:
        while writer_backends(admin):  # the last run's, still reporting as they exit
            time.sleep(0.05)
        workers = [threading.Thread(target=store_rows, args=(n,)) for n in range(threads)]
        for t in workers:
            t.start()
        commits_before = xact_commits(admin)
        cpu_before = time.process_time()
        began = time.perf_counter()
        start.wait()
        time.sleep(seconds)
        stop.set()
        for t in workers:
            t.join()
        elapsed = time.perf_counter() - began
        bench_cpu = time.process_time() - cpu_before
        # the writer's backends opened during the run: their CPU since they started
        postgres_cpu = cpu_seconds(writer_backends(admin))
        writer.close()
        engine.dispose()
        # a backend reports its transactions to pg_stat_database by the time it exits
        while writer_backends(admin):
            time.sleep(0.05)
        commits = xact_commits(admin) - commits_before
    run = Run(
        threads=threads,
        batch=batch,
        seconds=elapsed,
        rows=sum(counts),
        commits=writer.commits,
        xact_commits=commits,
        bench_cpu=bench_cpu,
        postgres_cpu=postgres_cpu,
        failures=sum(failures),
    )
    return run


def check_inbox(url: str, expected: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT code) FROM inbox").fetchone()
    assert row is not None
    total, distinct = row
    if (total, distinct) != (expected, expected):
        raise SystemExit(
            f"the inbox holds {total} rows ({distinct} distinct codes) where the writers "
            f"returned from {expected}: a row was lost or stored twice"
        )


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--runs", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--batch", type=int, default=WRITE_BATCH, help="group commit's cap")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, to check the bench works (CI)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.threads, args.runs = 0.5, [1, 8], 1
    modes = {"per-row": 1, "group": args.batch}
    results: dict[int, dict[str, list[Run]]] = {}
    with bench_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        returned = 0
        for threads in args.threads:
            results[threads] = {mode: [] for mode in modes}
            for r in range(args.runs):
                order = list(modes) if r % 2 == 0 else list(reversed(modes))
                for mode in order:
                    tag = f"W{threads:02d}{mode[0]}{r:02d}"
                    run = one_run(url, threads, modes[mode], args.seconds, tag)
                    returned += run.rows
                    results[threads][mode].append(run)
                    say(
                        f"{threads:>2} threads {mode:>7}: {run.rows_per_s:8.0f} rows/s, "
                        f"{run.rows_per_commit:5.1f} rows/commit "
                        f"({run.xact_commits} transactions for {run.rows} rows), "
                        f"bench {run.us_per_row(run.bench_cpu):5.0f} us/row, "
                        f"postgres {run.us_per_row(run.postgres_cpu):5.0f} us/row, "
                        f"{run.failures} failed"
                    )
        check_inbox(url, returned)
    failed = sum(r.failures for by_mode in results.values() for rs in by_mode.values() for r in rs)
    print()
    print(
        "| threads | per-row rows/s | group rows/s | x rows/s | rows/commit | "
        "bench CPU/row x | postgres CPU/row x | per-row bench us/row | per-row postgres us/row "
        "| failed per-row/group |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "rows": []}
    for threads, by_mode in results.items():
        base, group = by_mode["per-row"], by_mode["group"]

        def med(runs: list[Run], key: Any) -> float:
            return statistics.median(key(run) for run in runs)

        base_rate = med(base, lambda r: r.rows_per_s)
        group_rate = med(group, lambda r: r.rows_per_s)
        base_bench = med(base, lambda r: r.us_per_row(r.bench_cpu))
        group_bench = med(group, lambda r: r.us_per_row(r.bench_cpu))
        base_pg = med(base, lambda r: r.us_per_row(r.postgres_cpu))
        group_pg = med(group, lambda r: r.us_per_row(r.postgres_cpu))
        per_commit = med(group, lambda r: r.rows_per_commit)
        print(
            f"| {threads} | {base_rate:.0f} | {group_rate:.0f} | "
            f"**{ratio(group_rate, base_rate)}** | {per_commit:.1f} | "
            f"{ratio(group_bench, base_bench)} | {ratio(group_pg, base_pg)} | "
            f"{base_bench:.0f} | {base_pg:.0f} | "
            f"{sum(r.failures for r in base)}/{sum(r.failures for r in group)} |"
        )
        summary["rows"].append(
            {
                "threads": threads,
                "per_row": [run.__dict__ for run in base],
                "group": [run.__dict__ for run in group],
            }
        )
    path = write_json("write", summary)
    say(f"results: {path}")
    if failed:
        # not lost (check_inbox above): a webhook would have spooled and acknowledged them
        say(f"{failed} stores raised StoreFailed (every connection busy past the deadline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
