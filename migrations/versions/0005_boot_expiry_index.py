"""boot.expires_at is indexed: ``bootbrain prune`` deletes boot records a while after
their token expired, in chunks, oldest first, without reading the whole table

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_boot_expires_at", "boot", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_boot_expires_at", table_name="boot")
