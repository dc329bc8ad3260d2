"""Search indexes: customer, phone and amount each with paid_at, so a probe reads newest first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:14:05.820736
"""

from collections.abc import Sequence

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


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_phone_paid")
        batch_op.drop_index("ix_payments_customer_paid")
        batch_op.drop_index("ix_payments_amount_paid")
        batch_op.create_index(batch_op.f("ix_payments_phone"), ["phone"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_payments_amount_minor"), ["amount_minor"], unique=False
        )
