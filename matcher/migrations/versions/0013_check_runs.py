"""Check runs: each finished ``momo check`` (when, where, how many violations).

``/metrics`` on the api shows the last one from here, so the result reaches Prometheus
from wherever the check ran; runs older than 90 days are removed as new ones are written.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from matcher.db import BigId, UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "check_runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("violations", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
    )
    op.create_index("ix_check_runs_finished_at", "check_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_check_runs_finished_at", table_name="check_runs")
    op.drop_table("check_runs")
