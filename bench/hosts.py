"""More than one host: credited payments per second with one host, then with two.

    python -m bench.hosts [--seconds 20] [--cpus-per-host 0.5] [--connections 8]
        [--web-workers 1] [--worker-concurrency 1] [--smoke]

Each host is a network namespace of this machine (tests/hosts.py) running momo's web
server and one Celery worker, with a spool of its own; the hosts share one PostgreSQL
database (through its Unix socket) and one Redis that this script starts. A host is given
``--cpus-per-host`` CPUs' time (a cgroup of its own), as a machine of that size would
have: on this 2-core machine the load generator and PostgreSQL need the rest. Needs root.

For one host, then two (the second joins the first; beat runs on the first only),
callbacks are offered flat out for ``--seconds`` by ``--connections`` in all, split
evenly between the hosts, after 3 s of warm-up on a host just started; the figure is
the payments credited *while* they were offered, per second.
Every acknowledged callback must be credited once in the end: the script reports
``lost`` (acknowledged, never credited) and ``doubled`` (a payment credited more than
once) and exits 1 unless both are 0. The result: two hosts' rate as a ratio of one's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.common import BIN, PATH_TOKEN, bench_database, free_port, say, write_json
from bench.e2e import drained, seed_customers
from bench.load import LoadResult, run_python
from tests.hosts import Cluster, Host, hosts, unavailable

PATH = f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"


def offer(
    targets: list[Host], cluster: Cluster, prefix: str, seconds: float, connections: int
) -> list[LoadResult]:
    """Callbacks flat out to every host in ``targets`` at once; their load results."""
    results: list[LoadResult] = []
    lock = threading.Lock()

    def load(n: int, host: Host) -> None:
        result = run_python(
            host.url(cluster.web_port, PATH),
            f"{prefix}{n}",
            seconds,
            max(1, connections // len(targets)),
        )
        with lock:
            results.append(result)

    threads = [threading.Thread(target=load, args=(n, h)) for n, h in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def warm_up(targets: list[Host], cluster: Cluster) -> None:
    """A few seconds of callbacks to hosts just started, not counted: a first request
    pays for imports and connections that later ones do not."""
    offer(targets, cluster, "HW", 3.0, 4)


def doubled(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT payment_id FROM ledger_entries "
            "WHERE payment_id IS NOT NULL GROUP BY payment_id HAVING count(*) > 1) AS d"
        ).fetchone()
    return int(row[0]) if row else 0


def phase(
    name: str, targets: list[Host], cluster: Cluster, dsn: str, args: argparse.Namespace
) -> dict[str, Any]:
    prefix = f"HB{len(targets)}"
    say(f"{name}: offering at the maximum for {args.seconds:.0f} s")
    began = datetime.now(UTC)
    results = offer(targets, cluster, prefix, args.seconds, args.connections)
    ended = datetime.now(UTC)
    acked = sum(r.requests - r.non_2xx for r in results)
    figures = drained(dsn, prefix, acked, timeout=300, window=(began, ended))
    figures.update(
        offered_per_s=sum(r.rps for r in results),
        errors=sum(r.errors for r in results),
        answered_non_2xx=sum(r.non_2xx for r in results),
        lost=acked - figures["credited"],
        by_host={h.name: cluster.credited_by(h) for h in targets},
    )
    say(
        f"  offered {figures['offered_per_s']:.0f}/s, credited while offered "
        f"{figures['credited_per_s']:.0f}/s; {figures['credited']} of {acked} acknowledged "
        f"credited; by host so far {figures['by_host']}"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cpus-per-host", type=float, default=0.5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--worker-concurrency", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="2 s a phase: checks it works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds = 2.0
    why = unavailable()
    if why is not None:
        print(f"bench.hosts cannot run here: {why}", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="momo-bench-hosts-"))
    say(f"logs in {workdir}")
    with bench_database() as url, hosts(2) as (one, two):
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        cluster = Cluster(url, workdir, PATH_TOKEN, redis_port=free_port())
        sizes = {
            "cpus": args.cpus_per_host or None,
            "web_workers": args.web_workers,
            "worker_concurrency": args.worker_concurrency,
        }
        try:
            cluster.start_redis([one, two])
            local = cluster.env(None)
            subprocess.run(
                [str(BIN / "momo"), "db", "upgrade"], env=local, check=True, capture_output=True
            )
            seed_customers(dsn)
            cluster.start_host(one, beat=True, **sizes)
            warm_up([one], cluster)
            single = phase("one host", [one], cluster, dsn, args)
            cluster.start_host(two, **sizes)
            warm_up([two], cluster)
            double = phase("two hosts", [one, two], cluster, dsn, args)
            twice = doubled(dsn)
        finally:
            cluster.stop_all()
    ratio = double["credited_per_s"] / single["credited_per_s"] if single["credited_per_s"] else 0
    lost = single["lost"] + double["lost"]
    say(
        f"credited/s while offered: one host {single['credited_per_s']:.0f}, two hosts "
        f"{double['credited_per_s']:.0f}: {ratio:.2f}x; lost={lost} doubled={twice}"
    )
    path = write_json(
        "hosts",
        {"args": vars(args), "one": single, "two": double, "ratio": ratio, "doubled": twice},
    )
    say(f"figures in {path}")
    return 0 if lost == 0 and twice == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
