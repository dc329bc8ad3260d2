"""How the chaos run names a callback that got no answer: a connection a crash cut, at
any point of the answer, is "cut" (and may be forgiven as cut by the crash); a refused
one is "refused"."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from bench.chaos import unanswered_cause


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server that reads a request and sends the next canned reply, then
    closes: what a worker killed at that point leaves on the wire."""
    replies: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if replies:
                    conn.sendall(replies.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/", replies
    listener.close()


def cause(url: str) -> str:
    with pytest.raises(requests.RequestException) as failed:
        requests.post(url, data=b"{}", timeout=5)
    return unanswered_cause(failed.value)


def test_a_connection_closed_before_any_answer_is_cut(server: tuple[str, list[bytes]]) -> None:
    url, _ = server
    assert cause(url) == "cut"


def test_an_answer_whose_body_never_came_is_cut(server: tuple[str, list[bytes]]) -> None:
    url, replies = server
    replies.append(b"HTTP/1.1 200 OK\r\nContent-Length: 41\r\n\r\n")  # the head alone
    assert cause(url) == "cut"


def test_a_refused_connection_is_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    assert cause(f"http://127.0.0.1:{port}/") == "refused"
