"""Search indexes: customer, phone and amount each with paid_at, so a probe reads newest first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:14:05.820736
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_amount_minor"))
        batch_op.drop_index(batch_op.f("ix_payments_customer_id"))
        batch_op.drop_index(batch_op.f("ix_payments_phone"))
        batch_op.create_index(
            "ix_payments_amount_paid", ["amount_minor", "paid_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_payments_customer_paid", ["customer_id", "paid_at", "id"], unique=False
        )
        batch_op.create_index("ix_payments_phone_paid", ["phone", "paid_at", "id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL only (outside the models): the dropdown's account-prefix and name
        # searches, and revenue sums read from the index alone.
        op.execute(
            "CREATE INDEX ix_customers_account_key_pattern "
            "ON customers (account_key varchar_pattern_ops)"
        )
        op.execute(
            "CREATE INDEX ix_payments_revenue_pg "
            "ON payments (status, paid_at) INCLUDE (amount_minor)"
        )
        trigram = (
            op.get_bind()
            .execute(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"))
            .scalar()
        )
        if trigram:
            op.execute(
                "CREATE INDEX ix_customers_name_trgm "
                "ON customers USING gin (lower(name) gin_trgm_ops)"
            )


def downgrade() -> None:
    for name in (
        "ix_customers_account_key_pattern",
        "ix_payments_revenue_pg",
        "ix_customers_name_trgm",
    ):
        op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_phone_paid")
        batch_op.drop_index("ix_payments_customer_paid")
        batch_op.drop_index("ix_payments_amount_paid")
        batch_op.create_index(batch_op.f("ix_payments_phone"), ["phone"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_payments_amount_minor"), ["amount_minor"], unique=False
        )
