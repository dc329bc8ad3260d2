"""Schema migrations (Alembic), applied by ``momo db upgrade`` and the embedded default."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")

#: the PostgreSQL advisory lock key that serialises upgrades of one database ("momo" + 1)
UPGRADE_LOCK = 0x6D6F6D6F_0001


def alembic_config() -> Config:
    """Alembic's settings: where the migrations are, and nothing else.

    No database URL: migrations run on the connection momo hands over (see ``upgrade``),
    and Alembic's config is an INI parser, to which the ``%`` of a URL-escaped password is
    interpolation syntax (and whose errors would print the password).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision``; running it again changes nothing.

    Upgrades started together (two units at boot) take turns: on PostgreSQL each
    holds a database-wide lock for its whole transaction, so the second waits and
    then finds nothing left to do. SQLite's single writer already serialises them.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # transaction-scoped: released by the commit that makes the new schema visible
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine | None = None) -> str | None:
    """The newest revision there is (the same for every database)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
