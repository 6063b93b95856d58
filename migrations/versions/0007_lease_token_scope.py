"""api_token.scope may be ``lease``: a token that can post lease events and nothing
else, for the DHCP hooks (issue 16)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _scopes(*scopes: str) -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_token_scope"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_api_token_scope"),
            "scope IN (" + ", ".join(f"'{s}'" for s in scopes) + ")",
        )


def upgrade() -> None:
    _scopes("read", "write", "lease")


def downgrade() -> None:
    # A lease token has no older scope that is no wider: it goes, rather than become
    # one that can read or write the inventory.
    op.execute("DELETE FROM api_token WHERE scope = 'lease'")
    _scopes("read", "write")
