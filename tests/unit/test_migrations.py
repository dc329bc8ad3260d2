"""Migrations build exactly the schema the models describe."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from matcher.db import Base, make_engine
from matcher.migrate import current_revision, head_revision, upgrade
from matcher.migrations.env_filters import include_object
from matcher.models import IdempotencyRecord


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


def forgets_recorded_token_secrets(url: str) -> None:
    """Upgrading takes secrets out of answers recorded before 0007, and nothing else."""
    engine = make_engine(url)
    try:
        upgrade(engine, "0006")
        token = {"id": 3, "name": "erin", "role": "operator", "token": "momo_s3cret"}
        payment = {"id": 9, "code": "TKQ4A91B2C", "reference": "token"}
        with engine.begin() as connection:
            for key, response in (("k-token", token), ("k-payment", payment)):
                connection.execute(
                    IdempotencyRecord.__table__.insert().values(
                        actor="token-id:1",
                        key=key,
                        request_hash="0" * 64,
                        status_code=201,
                        response=response,
                        created_at=datetime.now(UTC),
                    )
                )

        upgrade(engine)

        with engine.connect() as connection:
            kept = dict(
                connection.execute(select(IdempotencyRecord.key, IdempotencyRecord.response)).all()
            )
            everything = str(connection.execute(select(IdempotencyRecord.__table__)).all())
        assert kept == {
            "k-token": {"id": 3, "name": "erin", "role": "operator"},
            "k-payment": payment,
        }
        assert "momo_s3cret" not in everything
    finally:
        engine.dispose()


def test_upgrading_sqlite_forgets_token_secrets_kept_with_idempotency_records(tmp_path) -> None:  # type: ignore[no-untyped-def]
    forgets_recorded_token_secrets(f"sqlite:///{tmp_path / 'm.db'}")
