"""Alembic, driven from code: ``bootbrain db upgrade`` and the tests use this."""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, text

from bootbrain.db import make_engine


def alembic_config(url: str) -> Config:
    # stdout as it is now: alembic's default is the one it saw when first imported.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option(
        "script_location",
        str(Path(str(importlib.import_module("bootbrain.migrations").__file__)).parent),
    )
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


#: pg_advisory_xact_lock key taken by every upgrade of a PostgreSQL database.
UPGRADE_LOCK: Final = 0x62626D6967  # "bbmig"


@dataclass(frozen=True)
class Upgrade:
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade(url: str, revision: str = "head") -> Upgrade:
    """Migrate to ``revision``; the revisions before and after.

    On PostgreSQL the whole upgrade runs in one transaction holding an advisory lock,
    so that boot hosts sharing a database (an Ansible run converging several at once)
    migrate it one after the other: the first upgrades, the others wait, then find the
    schema at head and change nothing. Unlocked, two concurrent upgrades of an empty
    database fail on each other's CREATE TABLE.
    """
    engine = make_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            before = _current_revision(engine)
            command.upgrade(alembic_config(url), revision)
            return Upgrade(before, _current_revision(engine))
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn  # env.py migrates in this transaction
            command.upgrade(cfg, revision)
            return Upgrade(before, MigrationContext.configure(conn).get_current_revision())
    finally:
        engine.dispose()


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> None:
    command.current(alembic_config(url), verbose=True)


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def newest() -> str:
    """The head revision this package's migrations lead to."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def schema_problem(engine: Engine) -> str | None:
    """Why this bootbrain cannot serve the database's schema (what to run), or None.

    Raises SQLAlchemy's errors when the database cannot be read."""
    with engine.connect() as conn:
        found = MigrationContext.configure(conn).get_current_revision()
    if found == newest():
        return None
    if found is None:
        return "the database has no schema: run `bootbrain init` (or `bootbrain db upgrade`)"
    try:
        known = _scripts().get_revision(found) is not None
    except CommandError:  # alembic's "Can't locate revision"
        known = False
    if not known:
        return (
            f"the database schema is at {found}, which this bootbrain does not know (it knows "
            f"up to {newest()}): a newer bootbrain migrated it; upgrade bootbrain on this host"
        )
    return (
        f"the database schema is at {found}, this bootbrain needs {newest()}: "
        "run `bootbrain db upgrade`"
    )
