"""What a running process shares: settings, the engine, the session factory, the nudge.

Each Flask app gets its own Runtime from ``create_app``; a Celery worker
process builds one lazily, after the fork, so no connection crosses a fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ingest.providers.base import ParseContext
from matcher.db import Deadlines, make_engine, make_session_factory
from momo.config import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    #: tells the workers there is new inbox work; set by whoever runs the queue
    nudge: Callable[[], None] = field(default=lambda: None)
    #: the object behind ``nudge`` (closed with the runtime)
    queue: Any = None
    #: this host's spool for callbacks that arrive while the database is down
    spool: Any = None
    #: background helpers (the spool drainer) closed with the runtime
    helpers: list[Any] = field(default_factory=list)
    #: (settings, shape context) made from them: the webhook asks on every request
    _shape: tuple[Settings, ParseContext] | None = field(default=None, repr=False, compare=False)

    @property
    def parse_context(self) -> ParseContext:
        s = self.settings
        return ParseContext(currency=s.currency, region=s.default_region, timezone=s.zone)

    @property
    def shape_context(self) -> ParseContext:
        """For the webhook, which only asks whether a body is the provider's shape."""
        if self._shape is None or self._shape[0] is not self.settings:
            self._shape = (self.settings, replace(self.parse_context, shape_only=True))
        return self._shape[1]

    def close(self) -> None:
        for helper in [self.queue, *self.helpers]:
            if helper is not None:
                helper.close()
        self.engine.dispose()


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or load_settings()
    deadlines = Deadlines.for_statements(settings.db_statement_timeout_seconds)
    engine = make_engine(settings.database_url, deadlines=deadlines)
    return Runtime(settings=settings, engine=engine, sessions=make_session_factory(engine))


_process_runtime: Runtime | None = None
_process_pid: int | None = None
_lock = threading.Lock()


def process_runtime() -> Runtime:
    """The runtime of this process (worker, beat, CLI), built on first use after any fork."""
    global _process_runtime, _process_pid
    with _lock:
        if _process_runtime is None or _process_pid != os.getpid():
            _process_runtime = build_runtime()
            _process_pid = os.getpid()
        return _process_runtime


def set_process_runtime(runtime: Runtime | None) -> None:
    """Install a runtime for this process (tests, ``momo serve``)."""
    global _process_runtime, _process_pid
    with _lock:
        _process_runtime = runtime
        _process_pid = os.getpid() if runtime is not None else None
