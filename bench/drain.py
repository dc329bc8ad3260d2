"""Draining the inbox: how fast the worker's own code records a backlog, per batch size.

    python -m bench.drain [--rows 20000] [--batch-sizes 50 100 200 500] [--processes 2]
                          [--smoke] [--profile]

On a PostgreSQL database of its own, with no Celery and no HTTP: ``--rows`` C2B
confirmations for 1,000 customers are COPYed into the inbox as pending rows, then
drained by ``tasks.work.drain_inbox`` (what the task calls) in this process. The
baseline, measured first in the same run, is the same rows recorded row by row: the
path the worker falls back to when a batch's set-based write fails, one savepoint and
``record_payment`` per row. For each batch size it prints credited/s, CPU ms per
payment in this process (process time), statements per batch (counted at the
cursor), and the CPU the PostgreSQL backends serving the bench used per payment (read
from /proc; pg_stat_statements needs a server restart to load, which a bench must not
do). Figures are also given as ratios to the baseline.

``--processes N`` then drains a backlog with N processes at once (forked, each with its
own connections): the workers' throughput on this machine, shared with PostgreSQL.
``--profile`` prints the top of a cProfile of the batch path. ``--smoke`` runs a few
hundred rows in a few seconds, to check the bench still works.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import multiprocessing
import pstats
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

import matcher.inbox
from bench.common import PATH_TOKEN, bench_database, cpu_seconds, say, write_json
from bench.e2e import seed_customers
from bench.load import put_backlog
from core.config import Settings
from core.runtime import Runtime
from ingest.providers import build_runtime
from ingest.providers.mpesa import MpesaSettings
from matcher.db import make_engine
from matcher.migrate import upgrade
from tasks.work import drain_inbox


def backend_cpu(dsn: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to this database
    (other than the one asking); 0 when /proc cannot be read."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    return cpu_seconds(pids)


@contextmanager
def row_by_row() -> Iterator[None]:
    """The worker's fallback for every batch: its set-based write refuses, so each row
    is recorded on its own, in a savepoint, as when another worker stored a receipt."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("recorded row by row for the baseline")

    kept = matcher.inbox.record_payments
    matcher.inbox.record_payments = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        matcher.inbox.record_payments = kept


@dataclass
class Figures:
    label: str
    batch_size: int
    rows: int
    credited: int
    seconds: float
    cpu: float
    pg_cpu: float
    statements: int
    batches: int

    @property
    def per_s(self) -> float:
        return self.credited / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / max(self.credited, 1)

    @property
    def pg_ms(self) -> float:
        return 1000 * self.pg_cpu / max(self.credited, 1)

    @property
    def per_batch(self) -> float:
        return self.statements / max(self.batches, 1)


def drain(runtime: Runtime, dsn: str, label: str, rows: int, profile: bool = False) -> Figures:
    """Drain everything pending with the worker's own function; the figures."""
    statements = 0

    def count(*args: object) -> None:
        nonlocal statements
        statements += 1

    engine = runtime.engine
    event.listen(engine, "before_cursor_execute", count)
    # CPU time, not wall time: the machine is shared, and waits on PostgreSQL are its own figure
    profiler = cProfile.Profile(time.process_time) if profile else None
    try:
        pg_before = backend_cpu(dsn)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        batches = credited = 0
        if profiler:
            profiler.enable()
        while True:
            result = drain_inbox(runtime, time_budget=3600)
            batches += result.batches
            credited += result.outcomes.get("credited", 0)
            if not result.more:
                break
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        pg_cpu = backend_cpu(dsn) - pg_before
    finally:
        event.remove(engine, "before_cursor_execute", count)
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
    return Figures(
        label,
        runtime.settings.batch_size,
        rows,
        credited,
        seconds,
        cpu,
        pg_cpu,
        statements - 1,  # the empty claim that ends the drain
        batches,
    )


def runtime_for(url: str, batch_size: int) -> Runtime:
    return build_runtime(
        Settings(
            database_url=url,
            providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN)},
            batch_size=batch_size,
        )
    )


def _drain_in_child(url: str, batch_size: int, start: Any, done: Any, measured: Any) -> None:
    logging.disable(logging.WARNING)
    runtime = runtime_for(url, batch_size)
    with runtime.sessions.begin() as session:
        session.execute(text("SELECT 1"))  # connected before the clock starts
    start.wait()
    cpu = time.process_time()
    while drain_inbox(runtime, time_budget=3600).more:
        pass
    done.put(time.process_time() - cpu)
    measured.wait()  # the backends' CPU is read before their connections close
    runtime.close()


def parallel(url: str, dsn: str, batch_size: int, processes: int, rows: int) -> dict[str, Any]:
    """``processes`` workers at once on one backlog: credited/s from the first to the
    last commit, as bench.e2e measures the Celery workers."""
    context = multiprocessing.get_context("fork")
    start, done, measured = context.Event(), context.Queue(), context.Event()
    children = [
        context.Process(target=_drain_in_child, args=(url, batch_size, start, done, measured))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    time.sleep(2.0)  # let each child connect before the clock starts
    pg_before = backend_cpu(dsn)
    started = time.perf_counter()
    start.set()
    cpu = sum(done.get() for _ in children)
    seconds = time.perf_counter() - started
    pg_cpu = backend_cpu(dsn) - pg_before
    measured.set()
    for child in children:
        child.join()
    with psycopg.connect(dsn) as conn:
        credited = conn.execute(
            "SELECT count(*) FROM inbox WHERE status = 'processed' AND reason = 'credited'"
        ).fetchone()[0]  # type: ignore[index]
    return {
        "processes": processes,
        "batch_size": batch_size,
        "rows": rows,
        "credited": credited,
        "credited_per_s": credited / seconds,
        "cpu_ms_per_payment": 1000 * cpu / max(credited, 1),
        "pg_ms_per_payment": 1000 * pg_cpu / max(credited, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--baseline-batch", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2, help="0 to skip the parallel run")
    parser.add_argument("--parallel-batch", type=int, default=0, help="default: the fastest")
    parser.add_argument("--smoke", action="store_true", help="a few hundred rows, no parallel")
    parser.add_argument("--profile", action="store_true", help="cProfile the batch path")
    args = parser.parse_args()
    rows = 300 if args.smoke else args.rows
    sizes = [100] if args.smoke else args.batch_sizes
    processes = 0 if args.smoke else args.processes
    logging.disable(logging.WARNING)  # the baseline's fallback warns once per batch

    results: list[Figures] = []
    with bench_database() as url:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        seed_customers(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
        say(f"{rows} pending rows per phase, 1,000 customers")

        runtime = runtime_for(url, args.baseline_batch)
        try:
            # a short warm-up, so the first measured phase pays no imports or first plans
            put_backlog(dsn, "W", min(rows, 500))
            drain(runtime, dsn, "warm-up", 0)
            put_backlog(dsn, "R", rows, offset=rows)
            with row_by_row():
                baseline = drain(runtime, dsn, "row by row", rows)
        finally:
            runtime.close()
        results.append(baseline)
        for n, size in enumerate(sizes):
            runtime = runtime_for(url, size)
            try:
                put_backlog(dsn, f"B{n}", rows, offset=(n + 2) * rows)
                results.append(drain(runtime, dsn, "batch", rows, profile=args.profile))
            finally:
                runtime.close()

        print()
        print(
            "| path | batch | credited/s | x row by row | CPU ms/payment | x | "
            "PostgreSQL ms/payment | x | statements/batch |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for f in results:
            print(
                f"| {f.label} | {f.batch_size} | {f.per_s:,.0f} | {f.per_s / baseline.per_s:.2f} "
                f"| {f.cpu_ms:.3f} | {baseline.cpu_ms / f.cpu_ms:.2f} | {f.pg_ms:.3f} "
                f"| {baseline.pg_ms / f.pg_ms if f.pg_ms else float('nan'):.2f} "
                f"| {f.per_batch:.1f} |"
            )
        for f in results:
            assert f.credited == f.rows, f"{f.label} credited {f.credited} of {f.rows}"

        together: dict[str, Any] = {}
        if processes:
            best = args.parallel_batch or max(results[1:], key=lambda f: f.per_s).batch_size
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE inbox, payments, ledger_entries CASCADE")
                conn.execute("UPDATE customers SET balance_minor = 0")
            put_backlog(dsn, "P", rows)
            together = parallel(url, dsn, best, processes, rows)
            print(
                f"\n{processes} processes, batches of {best}: "
                f"{together['credited_per_s']:,.0f} credited/s "
                f"({together['credited_per_s'] / baseline.per_s:.2f}x one process row by row), "
                f"{together['cpu_ms_per_payment']:.3f} CPU ms/payment in the workers, "
                f"{together['pg_ms_per_payment']:.3f} in PostgreSQL"
            )
    write_json(
        "drain",
        {
            "rows": rows,
            "phases": [{**f.__dict__, "per_s": f.per_s} for f in results],
            "parallel": together,
        },
    )


if __name__ == "__main__":
    main()
