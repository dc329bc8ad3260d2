"""What a running process shares: settings, the engine, the session factory, the nudge.

Each Flask app gets its own Runtime from its factory; a Celery worker process builds
one lazily, after the fork, so no connection crosses a fork. Processes build theirs
with ``ingest.providers.build_runtime``, which gives it every registered provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from core.config import Settings
from core.providers import ParseContext, ProviderAdapter
from matcher.db import Deadlines, make_engine, make_session_factory
from matcher.models import InboxItem


class Closable(Protocol):
    """A background helper (a thread, a client) closed with the runtime."""

    def close(self) -> None: ...


class LocalSpool(Protocol):
    """Where the webhook keeps callbacks, fsynced, while the database cannot take them."""

    def append(self, item: InboxItem) -> str:
        """Keep ``item`` durably; its spool id."""
        ...

    def backlog(self) -> dict[str, int]:
        """What waits to be drained into the inbox (reported by the health check)."""
        ...


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    #: provider name -> adapter: the providers this process speaks
    providers: Mapping[str, ProviderAdapter]
    #: tells the workers there is new inbox work; set by whoever runs the queue
    nudge: Callable[[], None] = field(default=lambda: None)
    #: the object behind ``nudge`` (closed with the runtime)
    queue: Closable | None = None
    #: this host's spool for callbacks that arrive while the database is down
    spool: LocalSpool | None = None
    #: background helpers (the spool drainer) closed with the runtime
    helpers: list[Closable] = field(default_factory=list)
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


def build_runtime(
    settings: Settings, *, providers: Mapping[str, ProviderAdapter], **engine_options: Any
) -> Runtime:
    """A runtime on ``settings`` speaking ``providers`` (the registry itself, not a copy: a
    provider registered later is spoken too); ``engine_options`` go to its engine."""
    deadlines = Deadlines.for_statements(settings.db_statement_timeout_seconds)
    engine = make_engine(settings.database_url, deadlines=deadlines, **engine_options)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        providers=providers,
    )
