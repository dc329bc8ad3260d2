"""Revenue slices: associated amounts per UTC quarter hour, kept as payments are credited.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 15:40:21.753580
"""

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import matcher.db
from matcher.revenue import slice_of

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revenue_slices",
        sa.Column("slice_start", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("slice_start"),
    )
    # Revenue so far, from the payments associated now (their net credits).
    bind = op.get_bind()
    amounts: Counter = Counter()
    counts: Counter = Counter()
    payments = sa.table(
        "payments",
        sa.column("paid_at", matcher.db.UTCDateTime()),
        sa.column("amount_minor", sa.BigInteger()),
        sa.column("status", sa.String()),
    )
    rows = bind.execute(
        sa.select(payments.c.paid_at, payments.c.amount_minor).where(
            payments.c.status == "associated"
        )
    )
    for paid_at, amount in rows:
        at = slice_of(paid_at)
        amounts[at] += amount
        counts[at] += 1
    if amounts:
        slices = sa.table(
            "revenue_slices",
            sa.column("slice_start", matcher.db.UTCDateTime()),
            sa.column("amount_minor", sa.BigInteger()),
            sa.column("payments", sa.Integer()),
        )
        op.bulk_insert(
            slices,
            [
                {"slice_start": k, "amount_minor": amounts[k], "payments": counts[k]}
                for k in sorted(amounts)
            ],
        )


def downgrade() -> None:
    op.drop_table("revenue_slices")
