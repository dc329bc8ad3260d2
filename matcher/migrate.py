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


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision``; running it again changes nothing.

    Upgrades started together (two units at boot) take turns: on PostgreSQL each
    holds a database-wide lock for its whole transaction, so the second waits and
    then finds nothing left to do. SQLite's single writer already serialises them.
    """
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # transaction-scoped: released by the commit that makes the new schema visible
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
