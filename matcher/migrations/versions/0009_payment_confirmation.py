"""Payments entered by hand remember when a provider's own record confirmed them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from matcher.db import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("confirmed_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("payments", sa.Column("confirmed_by", sa.String(16), nullable=True))
    op.create_index(
        "ix_payments_channel_confirmed",
        "payments",
        ["channel", "confirmed_at", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_payments_channel_confirmed", "payments")
    op.drop_column("payments", "confirmed_by")
    op.drop_column("payments", "confirmed_at")
