"""groups: variables shared by the machines their selectors match; machine labels,
and template variables on machines and profiles (issue 20 item 2)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "machine_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("manufacturer", sa.String(length=128), nullable=True),
        sa.Column("product", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("network", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("ssh_keys", sa.JSON(), nullable=False),
        sa.Column("os_tags", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_group")),
        sa.UniqueConstraint("name", name=op.f("uq_machine_group_name")),
    )
    # Plain ALTER TABLE (SQLite has ADD and DROP COLUMN): a batch operation would
    # recreate the machine table on SQLite and lose its reservation triggers (0006).
    op.add_column("machine", sa.Column("labels", sa.JSON(), server_default="[]", nullable=False))
    op.add_column(
        "machine", sa.Column("variables", sa.JSON(), server_default="{}", nullable=False)
    )
    op.add_column(
        "profile", sa.Column("variables", sa.JSON(), server_default="{}", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("profile", "variables")
    op.drop_column("machine", "variables")
    op.drop_column("machine", "labels")
    op.drop_table("machine_group")
