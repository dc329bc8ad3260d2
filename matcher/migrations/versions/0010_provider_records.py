"""The provider's own record: what pulls, statements and lookups said moved, and the
spans of time they covered, so momo's books can be reconciled against them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from matcher.db import BigId, UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_records",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("msisdn_raw", sa.String(128), nullable=True),
        sa.Column("account_reference", sa.String(128), nullable=True),
        sa.Column("reverses", sa.String(64), nullable=True),
        sa.Column("inbox_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("provider", "kind", "code", name="uq_provider_records_kind_code"),
    )
    op.create_index(
        "ix_provider_records_provider_paid", "provider_records", ["provider", "paid_at", "id"]
    )
    op.create_table(
        "provider_coverage",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_provider_coverage_provider_ends", "provider_coverage", ["provider", "ends_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_provider_coverage_provider_ends", "provider_coverage")
    op.drop_table("provider_coverage")
    op.drop_index("ix_provider_records_provider_paid", "provider_records")
    op.drop_table("provider_records")
