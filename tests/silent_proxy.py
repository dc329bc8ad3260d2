"""A loopback TCP forwarder that can go silent: a database that stops answering.

While silent it keeps accepting connections and keeps every connection open,
reads what either side sends and throws it away, and forwards nothing, not
even a closed connection until it speaks again. To the client that is a network partition or a
failover whose old address went quiet: its bytes are acknowledged (by this
host's kernel) and no answer ever comes. The integration tests and the chaos
bench put it between momo and a PostgreSQL of their own.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept, name="silent-proxy", daemon=True)

    def __enter__(self) -> SilentProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._acceptor.start()

    def go_silent(self) -> None:
        self._silent.set()

    def speak(self) -> None:
        """Forward again. Connections that sent bytes while silent have lost them for good."""
        self._silent.clear()

    @property
    def silent(self) -> bool:
        return self._silent.is_set()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            running = [2]  # pumps of this pair still running; the last one closes both
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink, running), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, running: list[int]) -> None:
        try:
            self._forward(source, sink)
        finally:
            with self._lock:
                running[0] -= 1
                last = running[0] == 0
                if last:
                    self._sockets.difference_update((source, sink))
            if last:
                source.close()
                sink.close()

    def _forward(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                # an end of stream is late, not lost: it gets through once the network heals
                while self._silent.is_set() and not self._closed.wait(0.1):
                    pass
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if self._silent.is_set():
                continue
            try:
                sink.sendall(data)
            except OSError:
                return
