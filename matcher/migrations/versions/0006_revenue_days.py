"""Revenue days and received totals: long ranges and unassociated money from running totals.

Each revenue slice now also keeps what was received (every payment's amount,
associated or not), so unassociated money is received minus revenue instead
of a sum over every unassociated payment on each call. Each UTC day's slices
are added up in revenue_days, so a year reads ~365 rows, not ~35,000 slices.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:20:00
"""

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import matcher.db
from matcher.revenue import fold_days, slice_of

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("revenue_slices") as batch:
        batch.add_column(
            sa.Column("received_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "revenue_days",
        sa.Column("day_start", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("received_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day_start"),
    )
    bind = op.get_bind()
    payments = sa.table(
        "payments",
        sa.column("paid_at", matcher.db.UTCDateTime()),
        sa.column("amount_minor", sa.BigInteger()),
    )
    slices = sa.table(
        "revenue_slices",
        sa.column("slice_start", matcher.db.UTCDateTime()),
        sa.column("amount_minor", sa.BigInteger()),
        sa.column("payments", sa.Integer()),
        sa.column("received_minor", sa.BigInteger()),
    )
    received: Counter = Counter()
    for paid_at, amount in bind.execute(sa.select(payments.c.paid_at, payments.c.amount_minor)):
        received[slice_of(paid_at)] += amount
    present = {start for (start,) in bind.execute(sa.select(slices.c.slice_start))}
    missing = [s for s in sorted(received) if s not in present]
    if missing:
        op.bulk_insert(
            slices,
            [
                {"slice_start": s, "amount_minor": 0, "payments": 0, "received_minor": 0}
                for s in missing
            ],
        )
    if received:
        bind.execute(
            slices.update()
            .where(slices.c.slice_start == sa.bindparam("start"))
            .values(received_minor=sa.bindparam("received")),
            [{"start": s, "received": received[s]} for s in sorted(received)],
        )
    days = fold_days(
        bind.execute(
            sa.select(
                slices.c.slice_start,
                slices.c.amount_minor,
                slices.c.payments,
                slices.c.received_minor,
            )
        )
    )
    if days:
        op.bulk_insert(
            sa.table(
                "revenue_days",
                sa.column("day_start", matcher.db.UTCDateTime()),
                sa.column("amount_minor", sa.BigInteger()),
                sa.column("payments", sa.Integer()),
                sa.column("received_minor", sa.BigInteger()),
            ),
            [
                {"day_start": d, "amount_minor": a, "payments": c, "received_minor": r}
                for d, (a, c, r) in sorted(days.items())
            ],
        )


def downgrade() -> None:
    op.drop_table("revenue_days")
    with op.batch_alter_table("revenue_slices") as batch:
        batch.drop_column("received_minor")
