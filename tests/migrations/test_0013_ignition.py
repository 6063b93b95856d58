"""0013 adds a profile's Ignition config: existing profiles keep everything and have
none; a downgrade keeps the profiles. On both databases."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text


def test_0013_adds_an_empty_ignition_config_to_existing_profiles(
    alembic_runner: Any, alembic_engine: Engine
) -> None:
    alembic_runner.migrate_up_before("0013")
    now = datetime.now(UTC)
    row = {"id": 1, "name": "flatcar", "kind": "linux", "initrds": [], "version": 1}
    alembic_runner.insert_into("profile", {**row, "created_at": now, "updated_at": now})
    alembic_runner.migrate_up_one()
    with alembic_engine.begin() as conn:
        assert conn.execute(text("SELECT name, ignition FROM profile")).all() == [("flatcar", None)]
        conn.execute(text("UPDATE profile SET ignition = '{}'"))
    alembic_runner.migrate_down_one()
    with alembic_engine.begin() as conn:
        assert conn.execute(text("SELECT name FROM profile")).all() == [("flatcar",)]
