"""One head, upgrade from empty, downgrade round-trip, and models identical to the
schema the migrations build — on both databases."""

from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from pytest_alembic.tests import (  # noqa: F401
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, inspect


def test_0003_upgrades_a_database_without_the_event_key(
    alembic_runner: Any, alembic_engine: Engine
) -> None:
    """0001 briefly lacked the event → machine key on main; such a database upgrades too."""
    alembic_runner.migrate_up_to("0002")
    with alembic_engine.begin() as conn:
        ops = Operations(MigrationContext.configure(conn))
        with ops.batch_alter_table("event") as batch:
            batch.drop_constraint("fk_event_machine_id_machine", type_="foreignkey")
    alembic_runner.migrate_up_to("heads")
    assert inspect(alembic_engine).get_foreign_keys("event") == []
