"""Reliability: spooled callbacks keep their spool id; failed rows wait for their retry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:13:26.532428
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import matcher.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spool_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("next_attempt_at", matcher.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_unique_constraint("uq_inbox_spool_id", ["spool_id"])


def downgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbox_spool_id", type_="unique")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("spool_id")
