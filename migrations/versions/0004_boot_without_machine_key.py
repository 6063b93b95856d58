"""boot.machine_id is no foreign key: a machine deleted while its boot waits in the
event writer's queue must not fail the batch that carries other machines' boots

Deleting a machine deletes its boots in the same transaction (bootbrain.inventory),
and a boot whose machine is gone opens nothing, as when the key cascaded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("boot", schema=None) as batch_op:
        batch_op.drop_constraint("fk_boot_machine_id_machine", type_="foreignkey")


def downgrade() -> None:
    # Boots of machines deleted since cannot be kept under the key.
    op.execute("DELETE FROM boot WHERE machine_id NOT IN (SELECT id FROM machine)")
    with op.batch_alter_table("boot", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_boot_machine_id_machine", "machine", ["machine_id"], ["id"], ondelete="CASCADE"
        )
