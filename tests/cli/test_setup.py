"""``bootbrain init``, ``db``, ``serve``'s refusals and ``prune``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bootbrain import migrate
from bootbrain.db import Database
from bootbrain.models import Event, utcnow
from tests.cli.conftest import Cli, MakeCli


def test_init_is_safe_to_run_again(runner: Cli) -> None:
    secret = (runner.data_dir / "secret_key").read_text()
    assert oct((runner.data_dir / "secret_key").stat().st_mode & 0o777) == "0o600"
    again = runner.run("init")
    assert again.stdout == ""  # no second secret, no second admin token
    assert (runner.data_dir / "secret_key").read_text() == secret
    assert [t["name"] for t in runner.json("token", "list", "--json")] == ["admin"]


def test_init_without_admin_token(make_cli: MakeCli) -> None:
    cli = make_cli(init=False)
    out = cli.run("init", "--no-admin-token").stdout
    assert "created secret" in out
    assert "API token" not in out
    assert cli.json("token", "list", "--json") == []


def test_init_prints_a_token_that_opens_this_inventory(make_cli: MakeCli) -> None:
    cli = make_cli(init=False)
    out = cli.run("init").stdout
    token = out.splitlines()[-1].strip()
    assert token.startswith("bbt_")
    path = cli.home / "admin-token"
    path.write_text(token + "\n")
    assert "token admin (scope write) is valid" in cli.run("token", "check", str(path)).stdout


def db_current(cli: Cli) -> str:
    """``bootbrain db current`` in its own process: Alembic prints to the stdout it
    found at import time, which click's runner cannot capture."""
    proc = subprocess.run(
        [sys.executable, "-m", "bootbrain", "db", "current"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("BOOTBRAIN_")},
            "BOOTBRAIN_CONFIG": str(cli.config_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_db_current_and_upgrade(runner: Cli) -> None:
    head = migrate.newest()
    assert f"Rev: {head} (head)" in db_current(runner)
    assert runner.run("db", "upgrade").stdout == "database at head: nothing to upgrade\n"
    assert f"Rev: {head} (head)" in db_current(runner)


def test_serve_refuses_an_old_schema_until_db_upgrade(make_cli: MakeCli) -> None:
    cli = make_cli()
    if "database_url" in cli.config:
        pytest.skip("the PostgreSQL schema is the session's; tests/migrations downgrade it")
    head = migrate.newest()
    cli.run("db", "downgrade", "0004")
    assert "Rev: 0004\n" in db_current(cli)
    err = cli.fails("serve", code=1)
    assert f"this bootbrain needs {head}: run `bootbrain db upgrade`" in err
    cli.run("db", "upgrade")
    assert f"Rev: {head} (head)" in db_current(cli)


def test_serve_refuses_to_start_without_a_secret(make_cli: MakeCli) -> None:
    cli = make_cli(init=False)
    err = cli.fails("serve", code=1)
    assert "no secret configured" in err
    assert "bootbrain init" in err


def test_commands_that_need_the_secret_say_so(make_cli: MakeCli) -> None:
    cli = make_cli(init=False)
    cli.run("db", "upgrade")  # a schema, but no secret yet
    err = cli.fails("token", "create", "--name", "ci", code=1)
    assert "no secret configured" in err


def _events(cli: Cli) -> int:
    db = Database(cli.settings().database_url)
    with db.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    db.dispose()
    return int(n)


def test_prune_deletes_only_events_older_than_the_retention(runner: Cli) -> None:
    runner.run("network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24")
    runner.run("machine", "add", "--hostname", "node-01")
    runner.run("machine", "add", "--hostname", "node-02")
    total = _events(runner)  # the CLI's writes are recorded as change events
    assert total >= 4
    out = runner.run("prune").stdout
    assert "deleted 0 event(s) (older than 180 days)" in out
    assert "deleted 0 boot record(s) (older than 30 days)" in out
    assert _events(runner) == total

    db = Database(runner.settings().database_url)
    with db.engine.begin() as conn:  # two of them from long ago
        old = conn.execute(select(Event.id).order_by(Event.id).limit(2)).scalars().all()
        conn.execute(
            update(Event).where(Event.id.in_(old)).values(at=utcnow() - timedelta(days=200))
        )
    db.dispose()
    assert "deleted 0 event(s) (kept forever)" in runner.run("prune", "--events-days", "0").stdout
    assert _events(runner) == total
    out = runner.run("prune", "--boots-days", "0").stdout
    assert "deleted 2 event(s) (older than 180 days)" in out
    assert "deleted 0 boot record(s) (kept forever)" in out
    assert _events(runner) == total - 2


def test_prune_refuses_negative_days(runner: Cli) -> None:
    assert "--boots-days" in runner.fails("prune", "--boots-days", "-1")


def test_init_leaves_the_secrets_owner_only_under_umask_022(
    make_cli: MakeCli, database: str | None
) -> None:
    """The database (and its -wal and -shm), the secret and the data directory are the
    owner's alone, though the umask would let everyone read what is created."""
    if database is not None:
        pytest.skip("the files are SQLite's")
    previous = os.umask(0o022)
    try:
        cli = make_cli(init=False)
        cli.run("init")
        cli.run("machine", "add", "--hostname", "web-1", "--mac", "52:54:00:00:00:01")
        db = Database(cli.settings().database_url)
        try:
            with db.write() as s:  # an open connection in WAL mode: -wal and -shm exist
                s.add(Event(kind="change", message="holds the files open"))
            files = {p.name: p.stat().st_mode & 0o777 for p in cli.data_dir.iterdir()}
        finally:
            db.dispose()
    finally:
        os.umask(previous)
    assert {"bootbrain.db", "bootbrain.db-wal", "bootbrain.db-shm", "secret_key"} <= set(files)
    assert {name: oct(mode) for name, mode in files.items()} == {
        name: "0o600" for name in files
    }
    assert oct(cli.data_dir.stat().st_mode & 0o777) == "0o700"

