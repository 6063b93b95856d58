"""pytest-alembic on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bootbrain.db import make_engine
from bootbrain.migrate import alembic_config as _alembic_config
from tests.conftest import pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def alembic_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
    else:
        # A scratch database of its own: the schema is dropped and rebuilt per test.
        engine = make_engine(pg_url().replace("bootbrain_test", "bootbrain_migrations"))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    yield engine
    engine.dispose()


@pytest.fixture
def alembic_config(alembic_engine: Engine) -> Any:
    # env.py uses the connection pytest-alembic hands it; the URL is only a fallback.
    return _alembic_config(alembic_engine.url.render_as_string(hide_password=False))
