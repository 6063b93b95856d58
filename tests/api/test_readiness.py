"""``/readyz`` and ``bootbrain status`` fail for each cause, naming it (fleet issue,
part 3): the database not taking writes, the schema missing, the event writer failing,
the reconciler not having run, failing, or gone quiet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from bootbrain import migrate
from bootbrain.app import create_app
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.integrations.reconcile import STATUS_FILE, Reconciler
from tests.api.serving import bootbrain_env
from tests.api.test_event_durability import _close, _fill, _setup, small_disk  # noqa: F401
from tests.conftest import make_settings


def _ready(client: FlaskClient) -> tuple[int, dict[str, dict[str, object]]]:
    r = client.get("/readyz")
    assert r.headers["Content-Type"] == "application/json"
    return r.status_code, r.get_json()["checks"]


def _failing(checks: dict[str, dict[str, object]]) -> set[str]:
    return {name for name, c in checks.items() if not c["ok"]}


def test_ready_when_everything_works(client: FlaskClient) -> None:
    status, checks = _ready(client)
    assert status == 200, checks
    assert set(checks) == {"database_read", "schema", "database_write", "event_writer"}


def test_a_database_without_its_schema_is_not_ready(app: Flask, client: FlaskClient) -> None:
    db: Database = app.extensions["bootbrain"].db
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    try:
        status, checks = _ready(client)
        assert status == 503 and _failing(checks) == {"schema"}
        assert "no schema" in str(checks["schema"]["detail"])
    finally:  # the PostgreSQL schema is the session's
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": migrate.newest()})


def test_a_full_disk_is_not_ready(tmp_path: Path, small_disk: Path) -> None:  # noqa: F811
    app = _setup(tmp_path, small_disk)
    client = app.test_client()
    try:
        assert _ready(client)[0] == 200
        filler = _fill(small_disk)
        client.get("/ipxe?mac=52:54:00:00:20:01")  # the writer meets the full disk
        for _ in range(50):
            status, checks = _ready(client)
            if {"database_write", "event_writer"} <= _failing(checks):
                break  # the write probe is cached for a few seconds
            time.sleep(0.1)
        assert status == 503
        assert _failing(checks) == {"database_write", "event_writer"}
        assert "full" in str(checks["database_write"]["detail"])
        assert "retry" in str(checks["event_writer"]["detail"])
        filler.unlink()
        for _ in range(100):
            if _ready(client)[0] == 200:
                break
            time.sleep(0.1)
        assert _ready(client)[0] == 200
    finally:
        _close(app)


def _dhcp_app(settings: Settings) -> Flask:
    app = create_app(settings)
    app.testing = True
    return app


def test_the_reconciler_must_have_run_recently_and_well(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, dhcp="dnsmasq")
    app = _dhcp_app(settings)
    client = app.test_client()
    db: Database = app.extensions["bootbrain"].db
    status_file = settings.data_dir / STATUS_FILE
    try:
        status, checks = _ready(client)
        assert status == 503 and _failing(checks) == {"reconcile"}
        assert "has not completed a pass" in str(checks["reconcile"]["detail"])
        Reconciler(settings, db).step()
        status, checks = _ready(client)
        assert status == 200, checks
        doc = json.loads(status_file.read_text())
        doc["last_success"] = time.time() - 3600
        status_file.write_text(json.dumps(doc))
        status, checks = _ready(client)
        assert status == 503 and "not running" in str(checks["reconcile"]["detail"])
    finally:
        app.extensions["bootbrain"].events.close()
        db.dispose()


def test_a_failed_reconcile_keeps_the_last_good_state_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    settings = make_settings(url, tmp_path, dhcp="dnsmasq")
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO machine (id, hostname, state, address, created_at, "
                          "updated_at, version) VALUES (1, 'n1', 'ready', '10.0.0.5', "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"))  # fmt: skip
        conn.execute(text("INSERT INTO nic (machine_id, mac, boot) "
                          "VALUES (1, '52:54:00:00:30:01', 1)"))  # fmt: skip
    r = Reconciler(settings, db)
    r.step()
    hostsdir = settings.dnsmasq.hostsdir
    assert hostsdir is not None
    good = {p.name: p.read_text() for p in hostsdir.iterdir()}
    assert good == {"machine-1.hosts": "52:54:00:00:30:01,10.0.0.5,n1\n"}
    with db.engine.begin() as conn:  # the inventory becomes unreadable
        conn.execute(text("ALTER TABLE machine RENAME TO machine_away"))
    stop = iter([False, True])
    r._last_full = float("-inf")  # a full pass is due
    r.run(stop=lambda: next(stop))  # one failing pass
    assert {p.name: p.read_text() for p in hostsdir.iterdir()} == good
    app = _dhcp_app(settings)
    try:
        status, checks = _ready(app.test_client())
        assert status == 503 and "last pass failed" in str(checks["reconcile"]["detail"])
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()
        db.dispose()
    # bootbrain status says the same on the command line, and exits 1
    env = bootbrain_env(url, tmp_path)
    env.update({"BOOTBRAIN_DHCP": "dnsmasq", "BOOTBRAIN_PUBLIC_URL": "http://10.0.0.1",
                "BOOTBRAIN_DATA_DIR": str(settings.data_dir)})  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "bootbrain", "status"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL  reconcile" in out.stdout and "last pass failed" in out.stdout
    assert "ok    database_read" in out.stdout
