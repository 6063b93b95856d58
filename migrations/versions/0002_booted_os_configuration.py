"""booted OS configuration: SSH keys, metadata, user-data and vendor-data on machines
and profiles, and profile tags (issue 7)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ssh_keys", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("meta", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("user_data", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("vendor_data", sa.Text(), nullable=True))

    with op.batch_alter_table("profile", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("ssh_keys", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("meta", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("user_data", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("vendor_data", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profile", schema=None) as batch_op:
        batch_op.drop_column("vendor_data")
        batch_op.drop_column("user_data")
        batch_op.drop_column("meta")
        batch_op.drop_column("ssh_keys")
        batch_op.drop_column("tags")

    with op.batch_alter_table("machine", schema=None) as batch_op:
        batch_op.drop_column("vendor_data")
        batch_op.drop_column("user_data")
        batch_op.drop_column("meta")
        batch_op.drop_column("ssh_keys")
