"""The outbound client against a real HTTP server on loopback: what is retried, what is
never sent twice, and the shared token."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingest.providers.outbound import (
    NoAnswer,
    ProviderClient,
    ProviderUnavailable,
    Timeouts,
    TokenCache,
    json_object,
)

#: (status, body, seconds to wait before answering) per call, in order; the last repeats
Script = list[tuple[int, bytes, float]]


class Server:
    def __init__(self) -> None:
        self.script: Script = [(200, b'{"ok": true}', 0.0)]
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append((self.command, self.path, dict(self.headers)))
                index = min(len(outer.seen) - 1, len(outer.script) - 1)
                status, body, wait = outer.script[index]
                time.sleep(wait)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up waiting

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def client(url: str, **kwargs: object) -> ProviderClient:
    kwargs.setdefault("timeouts", Timeouts(connect=1.0, read=1.0))
    kwargs.setdefault("backoff", 0.0)
    return ProviderClient("acme", url, **kwargs)  # type: ignore[arg-type]


def test_5xx_is_retried_and_then_succeeds(server: Server) -> None:
    server.script = [(503, b"{}", 0.0), (500, b"{}", 0.0), (200, b'{"ok": true}', 0.0)]
    response = client(server.url).send("POST", "/pay", json={"amount": "10"})
    assert response.status_code == 200
    assert len(server.seen) == 3


def test_5xx_every_time_is_unavailable_after_the_retries(server: Server) -> None:
    server.script = [(503, b'{"error": "maintenance"}', 0.0)]
    with pytest.raises(ProviderUnavailable) as raised:
        client(server.url, retries=2).send("POST", "/pay", json={})
    assert len(server.seen) == 3
    assert "503" in raised.value.message and "maintenance" in raised.value.message


def test_a_request_sent_and_not_answered_is_never_sent_again(server: Server) -> None:
    server.script = [(200, b'{"ok": true}', 2.0)]
    with pytest.raises(NoAnswer):
        client(server.url, timeouts=Timeouts(connect=1.0, read=0.3)).send("POST", "/pay", json={})
    time.sleep(0.2)
    assert [(method, path) for method, path, _ in server.seen] == [("POST", "/pay")]


def test_a_refused_connection_is_unavailable_and_names_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderUnavailable) as raised:
        client(f"http://127.0.0.1:{port}", retries=1).send(
            "GET", "/token", auth=("consumer-key", "s3cret-consumer-secret")
        )
    assert "nothing was sent" in raised.value.message
    assert "s3cret" not in str(raised.value) and "s3cret" not in caplog.text


def test_a_refused_token_is_fetched_again_once(server: Server) -> None:
    server.script = [(401, b'{"error": "expired"}', 0.0), (200, b'{"ok": true}', 0.0)]
    tokens = iter(["first-token", "second-token"])
    cache = TokenCache(lambda: (next(tokens), 3600.0))
    response = client(server.url, token=cache).send("GET", "/status")
    assert response.status_code == 200
    assert cache.fetched == 2
    assert [headers["Authorization"] for _, _, headers in server.seen] == [
        "Bearer first-token",
        "Bearer second-token",
    ]


def test_a_token_refused_twice_is_the_providers_answer(server: Server) -> None:
    server.script = [(401, b'{"error": "bad credentials"}', 0.0)]
    cache = TokenCache(lambda: ("token", 3600.0))
    assert client(server.url, token=cache).send("GET", "/status").status_code == 401
    assert len(server.seen) == 2


def test_the_token_is_shared_by_threads_and_fetched_again_near_expiry() -> None:
    now = [1000.0]
    fetches: list[float] = []

    def fetch() -> tuple[str, float]:
        time.sleep(0.05)  # slow enough that every thread asks while it is fetched
        fetches.append(now[0])
        return f"token-{len(fetches)}", 3599.0

    cache = TokenCache(fetch, clock=lambda: now[0])
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(cache.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["token-1"] * 8
    now[0] += 3599.0 - 61.0
    assert cache.get() == "token-1"
    now[0] += 2.0  # within a minute of expiry
    assert cache.get() == "token-2"
    assert len(fetches) == 2


@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b"[1, 2]", b""])
def test_an_answer_that_is_not_a_json_object_is_no_answer(server: Server, body: bytes) -> None:
    server.script = [(200, body, 0.0)]
    response = client(server.url).send("POST", "/pay", json={})
    with pytest.raises(NoAnswer):
        json_object("acme", response, "the payment request")


def test_calls_are_counted_by_path(server: Server) -> None:
    c = client(server.url)
    for _ in range(3):
        c.send("GET", "/status")
    c.send("POST", "/pay", json=json.loads("{}"))
    assert c.calls == {"/status": 3, "/pay": 1}
