"""Alembic environment: runs on the connection momo hands it (see matcher.migrate)."""

from __future__ import annotations

from alembic import context

from matcher import models  # noqa: F401  (registers the tables on Base.metadata)
from matcher.db import Base
from matcher.migrations.env_filters import include_object

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # the database URL is never put in Alembic's config (see matcher.migrate)
        raise SystemExit("momo runs migrations on its own connection: use `momo db upgrade`")
    _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("momo runs migrations online only: use `momo db upgrade`")
run_migrations_online()
