"""One head, upgrade from empty, downgrade round-trip, and models identical to the
schema the migrations build — on both databases."""

from pytest_alembic.tests import (  # noqa: F401
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
