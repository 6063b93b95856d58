"""Alembic, driven from code: ``bootbrain db upgrade`` and the tests use this."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option(
        "script_location",
        str(Path(str(importlib.import_module("bootbrain.migrations").__file__)).parent),
    )
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> None:
    command.current(alembic_config(url), verbose=True)


@functools.cache
def newest() -> str:
    """The head revision this package's migrations lead to."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None
    return head


def behind(engine: Engine) -> tuple[str | None, str] | None:
    """(the database's revision, the newest) when the schema is not the newest, else None."""
    with engine.connect() as conn:
        found = MigrationContext.configure(conn).get_current_revision()
    return None if found == newest() else (found, newest())
