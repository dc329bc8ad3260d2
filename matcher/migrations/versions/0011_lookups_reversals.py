"""Lookups (asking a provider about one transaction code) and reversals (asking it to give
a payment's money back), and the payment's own record of being reversed.

Reversals are a table of their own rather than columns on payments: a request the
provider refuses may be made again, each with the ids its answer is matched by, and who
asked and why is kept per request. Whether a payment was reversed is one fact of the
payment (``reversed_at``, ``reversal_receipt``), set once under its row lock, however
the reversal was learnt (its result, or a statement).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from matcher.db import BigId, UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("reversed_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("payments", sa.Column("reversal_receipt", sa.String(64), nullable=True))
    op.create_table(
        "lookups",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("originator_id", sa.String(128), nullable=True),
        sa.Column("conversation_id", sa.String(128), nullable=True),
        sa.Column("result_code", sa.String(64), nullable=True),
        sa.Column("result_description", sa.Text(), nullable=True),
        sa.Column(
            "payment_id",
            BigId,
            sa.ForeignKey("payments.id", name="fk_lookups_payment"),
            nullable=True,
        ),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lookups_provider_conversation", "lookups", ["provider", "conversation_id"])
    op.create_index("ix_lookups_provider_originator", "lookups", ["provider", "originator_id"])
    op.create_table(
        "reversals",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "payment_id",
            BigId,
            sa.ForeignKey("payments.id", name="fk_reversals_payment"),
            nullable=False,
        ),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("originator_id", sa.String(128), nullable=True),
        sa.Column("conversation_id", sa.String(128), nullable=True),
        sa.Column("result_code", sa.String(64), nullable=True),
        sa.Column("result_description", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reversals_payment_id", "reversals", ["payment_id", "id"])
    op.create_index(
        "ix_reversals_provider_conversation", "reversals", ["provider", "conversation_id"]
    )
    op.create_index("ix_reversals_provider_originator", "reversals", ["provider", "originator_id"])


def downgrade() -> None:
    op.drop_table("reversals")
    op.drop_table("lookups")
    op.drop_column("payments", "reversal_receipt")
    op.drop_column("payments", "reversed_at")
