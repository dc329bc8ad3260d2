"""Migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from matcher.db import Base, make_engine
from matcher.migrate import current_revision, head_revision, upgrade
from matcher.migrations.env_filters import include_object


def schema_differences(url: str) -> list:  # type: ignore[type-arg]
    engine = make_engine(url)
    try:
        upgrade(engine)
        upgrade(engine)  # a second run changes nothing
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": include_object}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrading_sqlite_gives_the_models_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert schema_differences(f"sqlite:///{tmp_path / 'm.db'}") == []
