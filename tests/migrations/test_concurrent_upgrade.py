"""Boot hosts sharing one PostgreSQL each run ``bootbrain db upgrade`` (the Ansible role
does, on every host at once): the upgrades take turns, the first migrates and the
others find the schema at head. Unserialised, two upgrades of an empty database fail
on each other's CREATE TABLE."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bootbrain import migrate
from bootbrain.db import make_engine
from tests.conftest import pg_url

pytestmark = pytest.mark.postgres

WAITING = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")


def test_two_upgrades_at_once_migrate_once(tmp_path: Path) -> None:
    url = pg_url().replace("bootbrain_test", "bootbrain_migrations")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    config = tmp_path / "bootbrain.toml"
    config.write_text(f'database_url = "{url}"\nsecret_key = "s"\ndata_dir = "{tmp_path}"\n')
    env = {**os.environ, "BOOTBRAIN_CONFIG": str(config)}
    procs: list[subprocess.Popen[str]] = []
    try:
        # The test holds the lock until both upgrades wait for it: they overlap for sure.
        with engine.begin() as holder:
            holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": migrate.UPGRADE_LOCK})
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "bootbrain", "db", "upgrade"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            deadline = time.monotonic() + 60
            while True:
                with engine.connect() as conn:
                    waiting = conn.execute(WAITING).scalar_one()
                if waiting == 2:
                    break
                assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
                assert time.monotonic() < deadline, "the upgrades never waited for the lock"
                time.sleep(0.1)
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs
    said = sorted(out for out, _ in outputs)
    assert said == [
        "database at head: nothing to upgrade\n",
        f"database at head: upgraded from an empty database to {migrate.newest()}\n",
    ], outputs
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == (
            migrate.newest()
        )
    engine.dispose()
