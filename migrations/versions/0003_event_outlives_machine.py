"""the event log outlives deleted machines: event.machine_id is no foreign key

Revision 0001 first shipped with ``fk_event_machine_id_machine`` (ON DELETE SET NULL),
which blanked a deleted machine's history. A database made before this revision still
has it; this drops it, for those and for new ones alike. A development database
made while 0001 briefly lacked the key has nothing to drop, and upgrades all the same.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    keys = sa.inspect(op.get_bind()).get_foreign_keys("event")
    if not any(k.get("name") == "fk_event_machine_id_machine" for k in keys):
        return
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_constraint("fk_event_machine_id_machine", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_event_machine_id_machine", "machine", ["machine_id"], ["id"], ondelete="SET NULL"
        )
