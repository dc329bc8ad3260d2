"""momo on two hosts: web and worker on each, in network namespaces of this machine (own
ports, own spool), sharing one PostgreSQL database and one broker (README "Scaling out").

A provider may deliver the same callback to either host (a retry lands wherever the load
balancer sends it): each payment is credited once, by one worker, whichever host took it.
How much faster two hosts are is measured by ``python -m bench.hosts``, not here; here the
second host is shown to take a share of the work.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from sqlalchemy.engine import make_url

from tests.conftest import lacking, sample_bytes
from tests.hosts import Cluster, Host, hosts, unavailable
from tests.integration.conftest import (
    PATH_TOKEN,
    VENV_BIN,
    free_port,
    redis_only,
    wait_until,
)

pytestmark = [pytest.mark.integration, redis_only]

ACCOUNTS = 12


@pytest.fixture
def two_hosts() -> Iterator[list[Host]]:
    why = unavailable()
    if why is not None:
        lacking(f"momo on two hosts needs network namespaces: {why}")
    with hosts(2) as made:
        yield made


def callback(code: str, n: int) -> bytes:
    doc = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
    doc.update(
        TransID=code,
        TransAmount=f"{100 + n % 7}.00",
        BillRefNumber=f"HOST{n % ACCOUNTS:03d}",
        MSISDN=f"2547{n % ACCOUNTS:08d}",
    )
    return json.dumps(doc).encode()


def post(host: Host, cluster: Cluster, body: bytes) -> int:
    return requests.post(
        host.url(cluster.web_port, f"/webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation"),
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    ).status_code


def pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def psql(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_a_second_host_takes_a_share_and_no_payment_is_credited_twice(
    two_hosts: list[Host], fresh_pg_url: str, tmp_path: Path
) -> None:
    one, two = two_hosts
    cluster = Cluster(fresh_pg_url, tmp_path, PATH_TOKEN, redis_port=free_port())
    dsn = psql(fresh_pg_url)
    try:
        broker = cluster.start_redis(two_hosts)
        wait_until(lambda: pings(broker), timeout=30)
        local = cluster.env(None)
        subprocess.run([str(VENV_BIN / "momo"), "db", "upgrade"], env=local, check=True)
        token = subprocess.run(
            [str(VENV_BIN / "momo"), "token", "create", "--name", "hosts", "--role", "admin"],
            env=local,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()[-1]

        cluster.start_host(one, beat=True)
        api = one.url(cluster.web_port, "/api/v1")
        auth = {"Authorization": f"Bearer {token}"}
        for n in range(ACCOUNTS):
            made = requests.post(
                f"{api}/customers",
                json={"account_number": f"HOST{n:03d}", "name": f"Customer {n}"},
                headers=auth,
                timeout=30,
            )
            assert made.status_code == 201, made.text

        def credited() -> int:
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM ledger_entries WHERE payment_id IS NOT NULL"
                ).fetchone()
            return int(row[0]) if row else 0

        # one host: its worker credits everything
        first = [f"TKH1{n:06d}" for n in range(40)]
        for n, code in enumerate(first):
            assert post(one, cluster, callback(code, n)) == 200
        wait_until(lambda: credited() == len(first), timeout=90)
        assert cluster.credited_by(one) == len(first)

        # a second host joins; every callback is delivered to both hosts, in either order
        cluster.start_host(two)
        second = [f"TKH2{n:06d}" for n in range(160)]
        answers: list[int] = []
        lock = threading.Lock()

        def deliver(part: int) -> None:
            for n in range(part, len(second), 8):
                body = callback(second[n], n)
                order = (one, two) if n % 2 else (two, one)
                statuses = [post(host, cluster, body) for host in order]
                with lock:
                    answers.extend(statuses)

        senders = [threading.Thread(target=deliver, args=(part,)) for part in range(8)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=300)
        assert answers == [200] * (2 * len(second))

        total = len(first) + len(second)
        wait_until(lambda: credited() == total, timeout=120)
        with psycopg.connect(dsn) as conn:
            payments = conn.execute(
                "SELECT count(*), count(DISTINCT code), sum(amount_minor) FROM payments"
            ).fetchone()
            per_payment = conn.execute(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM ledger_entries "
                "WHERE payment_id IS NOT NULL GROUP BY payment_id) AS credits"
            ).fetchone()
            balances = conn.execute("SELECT sum(balance_minor) FROM customers").fetchone()
            workers = {row[0] for row in conn.execute("SELECT hostname FROM worker_heartbeats")}
        assert payments is not None and per_payment is not None and balances is not None
        assert payments[0] == payments[1] == total
        assert per_payment[0] == 1
        assert balances[0] == payments[2]
        expected = sum(Decimal(100 + n % 7) for n in range(len(first))) + sum(
            Decimal(100 + n % 7) for n in range(len(second))
        )
        assert Decimal(payments[2]) / 100 == expected
        assert {f"worker@{one.name}", f"worker@{two.name}"} <= workers

        # every credit was made by exactly one host's worker, and the new host made some
        by_one, by_two = cluster.credited_by(one), cluster.credited_by(two)
        assert by_one + by_two == total, (by_one, by_two)
        assert by_two > 0, "the second host's worker credited nothing"
        assert by_one > len(first), "the first host's worker credited nothing once two ran"

        # each host kept its own spool folder, under its own instance folder
        for host in two_hosts:
            assert (tmp_path / host.name / "instance" / "spool").is_dir()
    finally:
        cluster.stop_all()
