"""The webhook edge under gunicorn with several workers, on real Redis: limits shared across
worker processes, and gunicorn's own logs. Sync workers (deploy/ runs threaded ones): a
request held open keeps its sync worker busy, which is how a test decides which process
answers the next."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
import requests

from tests.conftest import sample_bytes
from tests.integration.conftest import ON_RABBITMQ, PATH_TOKEN, VENV_BIN, free_port, wait_until
from tests.processes import start_process

pytestmark = pytest.mark.integration

PER_MINUTE = 5
#: what each worker writes per request: its pid, the status and the request line
ACCESS_FORMAT = '%(p)s %(s)s "%(r)s"'
ACCESS_LINE = re.compile(r'^<(\d+)> (\d{3}) "(.*)"$')


@dataclass
class Web:
    base: str
    access_log: Path
    server_log: Path

    def post(self, token: str, address: str) -> requests.Response:
        return requests.post(
            f"{self.base}/webhooks/mpesa/{token}/c2b/confirmation",
            data=sample_bytes("c2b_confirmation_paybill_plain.json"),
            headers={"Content-Type": "application/json", "X-Forwarded-For": address},
            timeout=30,
        )

    def posts_logged(self) -> list[tuple[int, int, str]]:
        """(worker pid, status, request line) of every POST in the access log."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        found = [ACCESS_LINE.match(line) for line in lines]
        return [(int(m[1]), int(m[2]), m[3]) for m in found if m and m[3].startswith("POST")]

    def wait_for_posts_logged(self, count: int) -> list[tuple[int, int, str]]:
        return wait_until(lambda: len(self.posts_logged()) >= count and self.posts_logged())


@pytest.fixture
def three_workers(fresh_pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Web]:
    """`momo.wsgi:web()` under gunicorn with 3 workers and its access log on, Redis broker.

    On a database of its own: the callbacks posted here must not reach the balances that
    the pipeline tests check in the session's database."""
    env = {
        **os.environ,
        "MOMO_DATABASE_URL": fresh_pg_url,
        "MOMO_BROKER_URL": redis_url,
        "MOMO_MPESA_PATH_TOKEN": PATH_TOKEN,
        "MOMO_UNAUTHENTICATED_PER_MINUTE": str(PER_MINUTE),
        # each test poses as an address of its own, so counts of other tests never mix in
        "MOMO_TRUSTED_PROXY_HOPS": "1",
        "MOMO_INSTANCE_PATH": str(tmp_path / "instance"),
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([str(VENV_BIN / "momo"), "db", "upgrade"], env=env, check=True, cwd=tmp_path)
    port = free_port()
    web = Web(f"http://127.0.0.1:{port}", tmp_path / "access.log", tmp_path / "gunicorn.log")
    with web.server_log.open("wb") as out:
        proc = start_process(
            [
                str(VENV_BIN / "gunicorn"),
                "--workers",
                "3",
                "--bind",
                f"127.0.0.1:{port}",
                "--access-logfile",
                str(web.access_log),
                "--access-logformat",
                ACCESS_FORMAT,
                "momo.wsgi:web()",
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: answers(f"{web.base}/healthz"), timeout=90, interval=0.5)
        yield web
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a worker still waits on a held request
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:  # workers still booting on a busy machine
        return False


def a_fresh_address(redis_url: str) -> str:
    address = f"203.0.113.{random.randrange(1, 255)}"
    if ON_RABBITMQ:
        return address  # counted in the instance folder's file, which is the test's own
    with redis.Redis.from_url(redis_url) as client:
        client.delete(f"momo:unauthenticated:{address}")
    return address


class Held:
    """A right-token callback whose body is withheld: the sync worker that took it is busy
    until ``release``, so the next requests go to the other workers."""

    def __init__(self, web: Web) -> None:
        doc = json.loads(sample_bytes("c2b_confirmation_paybill_plain.json"))
        doc["TransID"] = f"HLD{random.randrange(10**7):07d}"
        self.body = json.dumps(doc).encode()
        url = urlparse(web.base)
        self.conn = socket.create_connection((url.hostname, url.port), timeout=30)
        self.conn.sendall(
            f"POST /webhooks/mpesa/{PATH_TOKEN}/c2b/confirmation HTTP/1.1\r\n"
            f"Host: {url.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        # gunicorn says 100 Continue once a worker has the request and is about to read it
        assert self.conn.recv(4096).startswith(b"HTTP/1.1 100 Continue")

    def release(self) -> str:
        """Send the body; the status line of the answer."""
        answer = b""
        with self.conn:
            self.conn.sendall(self.body)
            while chunk := self.conn.recv(65536):
                answer += chunk
        return answer.decode(errors="replace").split("\r\n", 1)[0]


def test_an_address_gets_one_allowance_across_all_gunicorn_workers(
    three_workers: Web, redis_url: str
) -> None:
    address = a_fresh_address(redis_url)

    def wrong(times: int) -> list[int]:
        return [three_workers.post("a-wrong-path-token", address).status_code for _ in range(times)]

    held: list[Held] = []
    try:
        held += [Held(three_workers), Held(three_workers)]  # two of the three workers busy
        on_the_third = wrong(PER_MINUTE)  # so the third worker answers them all
        held.append(Held(three_workers))  # the only free worker takes it: all three busy
        assert held[0].release() == "HTTP/1.1 200 OK"
        on_the_first = wrong(3)  # so the first worker, free again, answers these

        assert on_the_third == [404] * PER_MINUTE
        assert on_the_first == [429] * 3
        assert [held[1].release(), held[2].release()] == ["HTTP/1.1 200 OK"] * 2
    finally:
        for request in held:
            request.conn.close()
    logged = three_workers.wait_for_posts_logged(PER_MINUTE + 3 + 3)
    wrongs = [(pid, status) for pid, status, _ in logged if status in (404, 429)]
    assert {pid for pid, status in wrongs if status == 404}.isdisjoint(
        {pid for pid, status in wrongs if status == 429}
    )  # answered by different workers, as the holding arranged
    assert three_workers.post(PATH_TOKEN, address).status_code == 200  # never braked


def test_gunicorns_logs_show_webhook_paths_with_the_token_masked(
    three_workers: Web, redis_url: str
) -> None:
    address = a_fresh_address(redis_url)

    assert three_workers.post(PATH_TOKEN, address).status_code == 200
    assert three_workers.post(PATH_TOKEN[:-1], address).status_code == 404

    logged = three_workers.wait_for_posts_logged(2)
    assert [(status, line) for _, status, line in logged] == [
        (200, "POST /webhooks/mpesa/***/c2b/confirmation HTTP/1.1"),
        (404, "POST /webhooks/mpesa/***/c2b/confirmation HTTP/1.1"),
    ]
    everything = three_workers.access_log.read_text() + three_workers.server_log.read_text()
    assert PATH_TOKEN[:-1] not in everything
