"""The HTTP server behind ``momo serve``: Werkzeug's, with bounds it lacks by default.

Werkzeug's threaded server starts a thread for every connection and lets each wait on
its socket forever, so a few dozen half-sent requests hold as many threads (and, on
PostgreSQL, as many inbox connections) for as long as their senders like. Here every
read and write on a connection gives up after ``timeout`` seconds, and at most
``threads`` requests are served at once: further connections wait in the listen
backlog until a thread is free. Production runs granian (Procfile) or gunicorn (deploy/); this is
for the embedded default and for trying momo out, and must not fall over doing that.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

#: default of ``momo serve --threads``: requests served at once
THREADS = 32
#: default of ``momo serve --timeout``: a connection silent this long (mid-request, or idle
#: between keep-alive requests) is closed; a provider sends its callback at once
TIMEOUT_SECONDS = 10


class BoundedWSGIServer(ThreadedWSGIServer):
    """A thread per request, at most ``threads`` at once, each connection with a timeout."""

    def __init__(
        self, host: str, port: int, app: Any, *, threads: int, timeout: float, **kwargs: Any
    ) -> None:
        # a class of its own, so the timeout stays with this server
        handler = type(
            "TimedRequestHandler",
            (WSGIRequestHandler,),
            # momo's own access log (core.logs) writes each request, its query string left
            # out: Werkzeug's line would repeat it with the query (a searched phone) in it
            {"timeout": timeout, "log_request": lambda self, code="-", size="-": None},
        )
        super().__init__(host, port, app, handler=handler, **kwargs)
        self.threads = threads
        self._slots = threading.BoundedSemaphore(threads)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Called by the accepting loop: while every thread is busy it waits here, and new
        # connections queue in the kernel's backlog instead of each getting a thread.
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a sender that went quiet past the timeout, or hung up, is no server error
        if isinstance(sys.exc_info()[1], TimeoutError | ConnectionError):
            return
        super().handle_error(request, client_address)


def make_server(
    host: str,
    port: int,
    app: Any,
    *,
    threads: int = THREADS,
    timeout: float = TIMEOUT_SECONDS,
) -> BoundedWSGIServer:
    return BoundedWSGIServer(host, port, app, threads=threads, timeout=timeout)
