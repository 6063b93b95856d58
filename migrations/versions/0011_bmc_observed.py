"""bmc observed: the last power state a BMC reported (and when), and its last error

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bmc", sa.Column("power_state", sa.String(length=8), nullable=True))
    op.add_column("bmc", sa.Column("power_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("bmc", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("bmc", sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bmc") as batch:
        batch.drop_column("last_error_at")
        batch.drop_column("last_error")
        batch.drop_column("power_seen_at")
        batch.drop_column("power_state")
