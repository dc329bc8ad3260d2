"""Payment requests: momo asks a customer to pay, and settles the request once.

Payments keep the id of the request they answered, so a request the provider names
only after its answer arrived still finds it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from matcher.db import BigId, UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_requests",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_reference", sa.String(128), nullable=True),
        sa.Column("merchant_reference", sa.String(128), nullable=True),
        sa.Column(
            "customer_id",
            BigId,
            sa.ForeignKey("customers.id", name="fk_payment_requests_customer"),
            nullable=False,
        ),
        sa.Column("account_number", sa.String(64), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("result_code", sa.String(64), nullable=True),
        sa.Column("result_description", sa.Text(), nullable=True),
        sa.Column(
            "payment_id",
            BigId,
            sa.ForeignKey("payments.id", name="fk_payment_requests_payment"),
            nullable=True,
        ),
        sa.Column("query_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "provider", "provider_reference", name="uq_payment_requests_provider_reference"
        ),
    )
    op.create_index("ix_payment_requests_status_id", "payment_requests", ["status", "id"])
    op.create_index("ix_payment_requests_customer_id", "payment_requests", ["customer_id", "id"])
    op.create_index(
        "ix_payment_requests_status_query_at", "payment_requests", ["status", "query_at"]
    )

    op.add_column("payments", sa.Column("request_reference", sa.String(128), nullable=True))
    op.create_index("ix_payments_request_reference", "payments", ["provider", "request_reference"])


def downgrade() -> None:
    op.drop_index("ix_payments_request_reference", "payments")
    op.drop_column("payments", "request_reference")
    op.drop_table("payment_requests")
