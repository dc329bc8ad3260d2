"""What the Prometheus metrics cost a request, in-process, against the same app without them.

    python -m bench.metrics_overhead [--requests 2000] [--rounds 5]

Builds ``momo serve``'s app on a SQLite file of its own (nothing else running) and calls
its WSGI callable directly, no server and no socket, for three kinds of request:

- ``webhook``: an M-PESA confirmation on the fast path (a new receipt each, one insert);
- ``api read``: ``GET /api/v1/payments/<id>`` with an operator token;
- ``not found``: ``GET`` of a path no route matches (no database at all: the floor, where
  the metrics' share is largest).

"without" is the same app with the access log's measure and the route note removed, the
only two things metrics add to a request. Rounds alternate with and without, so a machine
busy with other work slows both alike; each figure is the median over rounds of the mean
per request (CPU time of this thread, steadier than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from core.config import Settings
from core.logs import AccessLog
from core.metrics import _note_route, observe_request
from ingest.providers import build_runtime
from ingest.providers.mpesa import MpesaSettings
from matcher.db import make_engine
from matcher.migrate import upgrade
from momo.app import create_app

PATH_TOKEN = "bench-path-token-6b1f0e9d8c7a5b4e3d2c"  # noqa: S105 - a throw-away path segment for a local run
SAMPLE = Path(__file__).resolve().parents[1] / "tests/samples/mpesa"


def _environ(path: str, method: str = "GET", body: bytes = b"", **headers: str) -> dict[str, Any]:
    builder = EnvironBuilder(path=path, method=method, data=body or None, headers=headers or None)
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _call(app: Flask, environ: dict[str, Any]) -> str:
    status: list[str] = []

    def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status[:] = [code]

    for _ in app(environ, start):
        pass
    return status[0]


def _metrics(app: Flask, on: bool) -> None:
    log = app.wsgi_app
    assert isinstance(log, AccessLog)
    log.measure = observe_request if on else None
    teardowns = app.teardown_request_funcs.setdefault(None, [])
    if on and _note_route not in teardowns:
        teardowns.append(_note_route)
    if not on and _note_route in teardowns:
        teardowns.remove(_note_route)


def _timed(app: Flask, environs: Iterable[dict[str, Any]], expect: str) -> float:
    """CPU seconds per request over ``environs``."""
    total, count = 0.0, 0
    for environ in environs:
        started = time.thread_time()
        status = _call(app, environ)
        total += time.thread_time() - started
        count += 1
        assert status.startswith(expect), status
    return total / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind, per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating with and without")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="momo-metrics-bench-"))
    settings = Settings(
        database_url=f"sqlite:///{folder / 'momo.db'}",
        providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN)},
        instance_path=folder / "instance",
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    runtime = build_runtime(settings)
    app = create_app(runtime=runtime)

    from api.auth import create_token

    with runtime.sessions.begin() as session:
        token = create_token(session, name="bench", role="operator")
    template = json.loads((SAMPLE / "c2b_confirmation_paybill_plain.json").read_bytes())
    receipts = iter(range(10**9))

    def confirmations() -> Iterable[dict[str, Any]]:
        for _ in range(args.requests):
            body = json.dumps({**template, "TransID": f"BM{next(receipts):08d}"}).encode()
            yield _environ(
                f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation",
                "POST",
                body,
                **{"Content-Type": "application/json"},
            )

    def reads() -> Iterable[dict[str, Any]]:
        for _ in range(args.requests):
            yield _environ("/api/v1/payments/1", Authorization=f"Bearer {token}")

    def misses() -> Iterable[dict[str, Any]]:
        for _ in range(args.requests):
            yield _environ("/no/such/page")

    # the payment the reads ask for, and warm caches, before anything is timed
    _timed(app, (e for _, e in zip(range(1), confirmations(), strict=False)), "200")
    from tasks.work import drain_inbox

    drain_inbox(runtime)
    kinds: list[tuple[str, Callable[[], Iterable[dict[str, Any]]], str]] = [
        ("webhook", confirmations, "200"),
        ("api read", reads, "200"),
        ("not found", misses, "404"),
    ]
    results: dict[str, dict[bool, list[float]]] = {
        name: {True: [], False: []} for name, *_ in kinds
    }
    for round_ in range(args.rounds):
        for on in (round_ % 2 == 0, round_ % 2 == 1):
            _metrics(app, on)
            for name, make, expect in kinds:
                results[name][on].append(_timed(app, make(), expect))
    _metrics(app, True)
    runtime.close()

    print(f"{args.requests} requests per kind per round, {args.rounds} rounds (CPU µs/request)")
    print(f"{'request':<10} {'without':>9} {'with':>9} {'added':>8} {'ratio':>7}")
    for name, _, _ in kinds:
        without = statistics.median(results[name][False]) * 1e6
        with_ = statistics.median(results[name][True]) * 1e6
        print(
            f"{name:<10} {without:>9.1f} {with_:>9.1f} {with_ - without:>8.1f} "
            f"{with_ / without:>7.3f}"
        )


if __name__ == "__main__":
    main()
