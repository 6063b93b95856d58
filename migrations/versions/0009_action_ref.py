"""next_boot.ref and boot.action_ref: a one-shot action is consumed only by a completion
whose per-boot token was issued for that setting of the action, not by a token left from
an earlier one with the same profile

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: actions set before this revision keep matching by profile name, so a
    # boot in flight across the upgrade still completes its action.
    with op.batch_alter_table("next_boot") as batch:
        batch.add_column(sa.Column("ref", sa.String(length=32), nullable=True))
    with op.batch_alter_table("boot") as batch:
        batch.add_column(sa.Column("action_ref", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("boot") as batch:
        batch.drop_column("action_ref")
    with op.batch_alter_table("next_boot") as batch:
        batch.drop_column("ref")
