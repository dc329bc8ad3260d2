"""Writing a callback to the inbox in as few round trips as the database allows.

The webhook's whole job is this one write, so it skips what the ORM and a
pooled transaction cost: on PostgreSQL a single INSERT on an autocommit
connection commits by itself (one round trip, durable when it returns); no
BEGIN, no COMMIT, no ping before use. A connection found dead (say after a
database restart) is replaced and the write tried once more before the caller
falls back to the spool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from matcher.db import make_engine
from matcher.models import InboxItem

COLUMNS = [c.key for c in InboxItem.__table__.columns if c.key != "id"]


class InboxWriter:
    def __init__(self, engine: Engine, *, owned: bool) -> None:
        self.engine = engine
        self.owned = owned
        table: Table = InboxItem.__table__  # type: ignore[assignment]
        self._insert: Insert = insert(table)

    @classmethod
    def for_database(cls, engine: Engine) -> InboxWriter:
        if engine.dialect.name == "postgresql":
            url = engine.url.render_as_string(hide_password=False)
            # one sync web worker writes one row at a time: a couple of connections suffice
            own = make_engine(
                url,
                pool_size=2,
                max_overflow=4,
                pool_pre_ping=False,
                isolation_level="AUTOCOMMIT",
            )
            return cls(own, owned=True)
        return cls(engine, owned=False)

    def store(self, item: InboxItem) -> None:
        """Commit the row, or raise: the caller must not acknowledge without one or the other."""
        values: dict[str, Any] = {
            key: value for key in COLUMNS if (value := getattr(item, key)) is not None
        }
        for attempt in (1, 2):
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._insert, values)
                return
            except DBAPIError as exc:
                if attempt == 1 and exc.connection_invalidated:
                    continue  # a connection from before a restart: a fresh one may work
                raise

    def close(self) -> None:
        if self.owned:
            self.engine.dispose()
