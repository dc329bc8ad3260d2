"""The operator's desk: plans, purchases, idempotency keys, manual payment fields, search indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 14:07:03.827542
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import matcher.db

log = logging.getLogger("alembic.runtime.migration")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("actor", "key", name="uq_idempotency_keys_actor_key"),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("validity_minutes", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code", name="uq_plans_code"),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("plan_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("plan_code", sa.String(length=32), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("voucher_code", sa.String(length=32), nullable=False),
        sa.Column("valid_until", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", matcher.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_purchases_customer"),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name="fk_purchases_plan"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("voucher_code", name="uq_purchases_voucher_code"),
    )
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.create_index("ix_purchases_customer_id", ["customer_id"], unique=False)

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purchase_id", matcher.db.BigId, nullable=True))
        batch_op.create_foreign_key("fk_ledger_purchase", "purchases", ["purchase_id"], ["id"])
        batch_op.create_index("ix_ledger_entries_created_at_id", ["created_at", "id"], unique=False)

    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_payment_attempts_created_at", ["created_at"], unique=False)

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_payments_amount_minor", ["amount_minor"], unique=False)
        batch_op.create_index("ix_payments_code", ["code"], unique=False)

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
        # Without it search still works, by sequential scan; say so instead of failing.
        try:
            with bind.begin_nested():
                op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                op.execute(
                    "CREATE INDEX ix_payments_phone_trgm ON payments USING gin (phone gin_trgm_ops)"
                )
        except sa.exc.DBAPIError as exc:
            log.warning(
                "pg_trgm is not available (%s); partial phone search will not use an index. "
                "Run CREATE EXTENSION pg_trgm as a superuser and upgrade again.",
                exc.orig,
            )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_payments_phone_trgm")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_code")
        batch_op.drop_index("ix_payments_amount_minor")
        batch_op.drop_column("created_by")
        batch_op.drop_column("note")
        batch_op.drop_column("reference")

    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_attempts_created_at")

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_created_at_id")
        batch_op.drop_constraint("fk_ledger_purchase", type_="foreignkey")
        batch_op.drop_column("purchase_id")

    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_index("ix_purchases_customer_id")

    op.drop_table("purchases")
    op.drop_table("plans")
    op.drop_table("idempotency_keys")
