"""Forget operator token secrets kept with idempotency records.

A token created over the API with an Idempotency-Key had its whole answer
recorded to be replayed, secret included. Secrets are shown once and kept only
as hashes: the secret is taken out of every recorded answer that holds one (a
repeat of such a request is now answered 409, naming the token).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    keys = sa.table(
        "idempotency_keys", sa.column("id", sa.BigInteger()), sa.column("response", sa.JSON())
    )
    recorded = bind.execute(
        sa.select(keys.c.id, keys.c.response).where(
            sa.cast(keys.c.response, sa.Text).like('%"token"%')
        )
    ).all()
    for ident, response in recorded:
        # a token's answer: the token's fields and its secret; no other answer has both
        if isinstance(response, dict) and "token" in response and "role" in response:
            kept = {key: value for key, value in response.items() if key != "token"}
            bind.execute(keys.update().where(keys.c.id == ident).values(response=kept))


def downgrade() -> None:
    """Nothing to undo: a forgotten secret stays forgotten."""
