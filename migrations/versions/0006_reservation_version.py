"""reservation_version and its triggers: every change to what DHCP reservations are
made of raises one counter (and on PostgreSQL notifies), so each boot host's
reconciler sees changes made anywhere, SQL fixes included

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUMP = (
    "INSERT INTO reservation_version (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = reservation_version.version + 1"
)
_SOURCES = (
    ("machine", ("INSERT", "DELETE", "UPDATE OF address, hostname")),
    ("nic", ("INSERT", "DELETE", "UPDATE")),
)


def _triggers(dialect: str) -> list[tuple[str, str]]:
    """(trigger name, table) pairs, and the statements creating them."""
    names = []
    for table, events in _SOURCES:
        if dialect == "postgresql":
            names.append((f"reservation_changed_{table}", table))
        else:
            names += [
                (f"reservation_changed_{table}_{e.split()[0].lower()}", table) for e in events
            ]
    return names


def upgrade() -> None:
    op.create_table(
        "reservation_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation_version")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION bootbrain_reservation_changed() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; "
            "PERFORM pg_notify('bootbrain_reservations', ''); RETURN NULL; END $$"
        )
        for table, events in _SOURCES:
            op.execute(
                f"CREATE TRIGGER reservation_changed_{table} AFTER {' OR '.join(events)} "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bootbrain_reservation_changed()"
            )
        return
    for table, events in _SOURCES:
        for ev in events:
            op.execute(
                f"CREATE TRIGGER reservation_changed_{table}_{ev.split()[0].lower()} "
                f"AFTER {ev} ON {table} BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, table in _triggers(dialect):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON {table}")
        else:
            op.execute(f"DROP TRIGGER {name}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION bootbrain_reservation_changed()")
    op.drop_table("reservation_version")
