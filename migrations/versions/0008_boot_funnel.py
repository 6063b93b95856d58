"""The boot funnel: a per-profile stuck limit, and bootstrap and asset fetches found by
address

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(sa.Column("stuck_after", sa.Integer(), nullable=True))
    op.create_index(
        "ix_event_fetch_ip_at",
        "event",
        ["ip", "at"],
        postgresql_where=sa.text("kind IN ('bootstrap', 'asset')"),
        sqlite_where=sa.text("kind IN ('bootstrap', 'asset')"),
    )
    op.create_index(
        "ix_event_bootstrap_mac_at",
        "event",
        ["mac", "at"],
        postgresql_where=sa.text("kind = 'bootstrap' AND mac IS NOT NULL"),
        sqlite_where=sa.text("kind = 'bootstrap' AND mac IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_event_bootstrap_mac_at", table_name="event")
    op.drop_index("ix_event_fetch_ip_at", table_name="event")
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("stuck_after")
