"""The operator API's own cost per request, in-process: everything but the view's SQL.

    python -m bench.api_floor [--payments 5000] [--customers 500] [--samples 200] [--profile]

Seeds a modest database of its own (the floor does not grow with the table), builds the
API app as ``momo.wsgi:api()`` does, and calls every read ``bench.reads`` times through
Flask's test client with a real viewer token. Each request's wall time is split into:

- ``view sql``: the view's statements (from SQLAlchemy's cursor events), with their count;
- ``token sql``: the token lookup and its ``last_used_at`` write;
- ``txn``: every other round trip to PostgreSQL (BEGIN, COMMIT, the pool's pre-ping);
- ``json``: encoding the answer (Flask's JSON provider);
- ``python``: the rest (Flask, auth, building rows or ORM objects and their dicts);
- ``cpu``: the API process's CPU time for the request (steadier on a busy machine).

The baseline, measured in the same run: the view's statements alone, run again as they
were sent on one raw connection. ``floor`` is request time minus view SQL time, and
``x sql`` the request's time over the statements' alone. Means per request, except p50.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from api.auth import create_token
from bench.common import bench_database, momo_env, say, write_json
from bench.reads import read_requests, seed
from ingest.providers import load_settings
from matcher.db import DeadlineConnection, make_engine
from matcher.migrate import upgrade
from momo.app import create_api_app


@dataclass
class Meter:
    """What one request spent where (ms), filled by the hooks below."""

    view_sql: float = 0.0
    view_statements: int = 0
    token_sql: float = 0.0
    waits: float = 0.0
    statement_waits: float = 0.0
    round_trips: int = 0
    json: float = 0.0
    statements: list[tuple[str, Any]] = field(default_factory=list)
    #: nesting: inside a cursor execute, round trips belong to the statement
    in_statement: bool = False


CURRENT = Meter()


def _instrument(app: Flask) -> None:
    """Hooks that time statements, round trips and JSON encoding for ``CURRENT``."""
    engine = app.extensions["momo"].engine

    @event.listens_for(engine, "before_cursor_execute")
    def _before(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        CURRENT.in_statement = True
        _before.started = time.perf_counter()  # type: ignore[attr-defined]

    @event.listens_for(engine, "after_cursor_execute")
    def _after(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        spent = (time.perf_counter() - _before.started) * 1000  # type: ignore[attr-defined]
        CURRENT.in_statement = False
        if "api_tokens" in statement:
            CURRENT.token_sql += spent
        else:
            CURRENT.view_sql += spent
            CURRENT.view_statements += 1
            CURRENT.statements.append((statement, params))

    original_wait = DeadlineConnection.wait

    def timed_wait(self: Any, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return original_wait(self, gen, interval, timeout)
        finally:
            spent = (time.perf_counter() - started) * 1000
            CURRENT.waits += spent
            CURRENT.round_trips += 1
            if CURRENT.in_statement:
                CURRENT.statement_waits += spent

    DeadlineConnection.wait = timed_wait  # type: ignore[method-assign]

    provider = app.json
    original_response = provider.response

    def timed_response(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_response(*args, **kwargs)
        finally:
            CURRENT.json += (time.perf_counter() - started) * 1000

    provider.response = timed_response  # type: ignore[method-assign]


@dataclass
class Figures:
    total: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    meters: list[Meter] = field(default_factory=list)

    def mean(self, name: str) -> float:
        return statistics.fmean(getattr(m, name) for m in self.meters)


def measure(client: FlaskClient, path: str, params: dict[str, str], samples: int) -> Figures:
    global CURRENT
    figures = Figures()
    for _ in range(samples):
        CURRENT = Meter()
        started, cpu = time.perf_counter(), time.process_time()
        response = client.get(path, query_string=params)
        figures.total.append((time.perf_counter() - started) * 1000)
        figures.cpu.append((time.process_time() - cpu) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path} {params}: {response.status_code} {response.get_data()!r}")
        figures.meters.append(CURRENT)
    return figures


def sql_alone(app: Flask, statements: list[tuple[str, Any]], samples: int) -> float:
    """Median ms to run ``statements`` as sent, fetching every row, on one raw connection
    in autocommit (no BEGIN or COMMIT): what the view's SQL costs with no API around it."""
    engine = app.extensions["momo"].engine
    raw = engine.raw_connection()
    try:
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        timings = []
        for _ in range(samples):
            started = time.perf_counter()
            cursor = raw.cursor()
            for statement, params in statements:
                cursor.execute(statement, params)
                if cursor.description is not None:
                    cursor.fetchall()
            cursor.close()
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings)
    finally:
        raw.driver_connection.autocommit = False  # type: ignore[union-attr]
        raw.close()


@contextmanager
def api(url: str) -> Iterator[tuple[Flask, str]]:
    env = momo_env(url)
    env.pop("MOMO_BROKER_URL")  # no nudges: the API reads only here
    app = create_api_app(load_settings(env))
    with app.extensions["momo"].sessions.begin() as session:
        token = create_token(session, name="floor", role="viewer")
    try:
        yield app, token
    finally:
        app.extensions["momo"].close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the first page")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.payments, args.customers, args.samples = 600, 60, 5
    results: dict[str, Any] = {"config": vars(args), "reads": {}}
    with bench_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        known = seed(url, customers=args.customers, payments=args.payments, seed_value=args.seed)
        with api(url) as (app, token):
            _instrument(app)
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            cursor = None
            for _ in range(4):
                page = client.get(
                    "/api/v1/payments",
                    query_string={"limit": "500", **({"cursor": cursor} if cursor else {})},
                ).get_json()
                cursor = page["next_cursor"] or cursor
            header = (
                f"{'read':26} {'p50':>6} {'mean':>6} {'cpu':>5} {'view sql':>12} {'token':>6} "
                f"{'txn':>5} {'json':>5} {'python':>6} {'rtrips':>6} {'floor':>6} "
                f"{'sql alone':>9} {'x sql':>6}"
            )
            print(header)
            for name, (path, params) in read_requests(known, cursor).items():
                measure(client, f"/api/v1{path}", params, 5)  # warm
                figures = measure(client, f"/api/v1{path}", params, args.samples)
                last = figures.meters[-1].statements
                alone = sql_alone(app, last, args.samples)
                mean_total = statistics.fmean(figures.total)
                view_sql = figures.mean("view_sql")
                txn = figures.mean("waits") - figures.mean("statement_waits")
                json_ms = figures.mean("json")
                token_sql = figures.mean("token_sql")
                python = mean_total - view_sql - token_sql - txn - json_ms
                row = {
                    "p50_ms": round(statistics.median(figures.total), 3),
                    "mean_ms": round(mean_total, 3),
                    "cpu_ms": round(statistics.fmean(figures.cpu), 3),
                    "view_sql_ms": round(view_sql, 3),
                    "view_statements": figures.mean("view_statements"),
                    "token_sql_ms": round(token_sql, 3),
                    "txn_ms": round(txn, 3),
                    "json_ms": round(json_ms, 3),
                    "python_ms": round(python, 3),
                    "round_trips": figures.mean("round_trips"),
                    "floor_ms": round(mean_total - view_sql, 3),
                    "sql_alone_ms": round(alone, 3),
                    "x_sql_alone": round(mean_total / alone, 2) if alone else None,
                }
                results["reads"][name] = row
                print(
                    f"{name:26} {row['p50_ms']:6.2f} {row['mean_ms']:6.2f} {row['cpu_ms']:5.2f} "
                    f"{row['view_sql_ms']:7.2f} ({row['view_statements']:.0f}) "
                    f"{row['token_sql_ms']:6.2f} {row['txn_ms']:5.2f} {row['json_ms']:5.2f} "
                    f"{row['python_ms']:6.2f} {row['round_trips']:6.1f} {row['floor_ms']:6.2f} "
                    f"{row['sql_alone_ms']:9.2f} {row['x_sql_alone'] or 0:6.2f}"
                )
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                measure(client, "/api/v1/payments", {}, args.samples)
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
                stats.print_stats(40)
                print(out.getvalue())
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue())
    first = results["reads"]["first page"]
    print(
        f"api floor: first page {first['mean_ms']:.2f} ms a request "
        f"({first['cpu_ms']:.2f} ms CPU in the API's process), view SQL "
        f"{first['view_sql_ms']:.2f} ms ({first['view_statements']:.0f} statements), "
        f"floor {first['floor_ms']:.2f} ms, {first['x_sql_alone']}x the SQL alone "
        f"({first['sql_alone_ms']:.2f} ms)"
    )
    say(f"written {write_json('api_floor', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
