"""Worker heartbeats: when each worker last finished a task, for ``/readyz``.

A row per worker (its Celery node name, or ``serve@<host>`` for the embedded worker),
written at most every few seconds by the worker itself; rows a week old are removed as
others are written. Kept in the database rather than the broker so that it reads the
same on Redis and RabbitMQ, and so that a worker that answers the broker but cannot
write to the database is not counted as working.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from matcher.db import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("hostname", sa.String(255), primary_key=True),
        sa.Column("seen_at", UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
