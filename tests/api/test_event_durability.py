"""Nothing a machine or an operator relies on is dropped (issue 16, case 14; the
fleet issue's disk-full case): while the database refuses writes, boots are told to
retry instead of getting tokens nobody could use, every queued record is written
once it takes writes again, what is queued at shutdown survives in a journal, and a
record the database refuses for what it holds is set aside, not lost.

The database is made to refuse writes the real way: SQLite on a tmpfs that is full."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bootbrain import migrate
from bootbrain.app import create_app
from bootbrain.db import Database
from bootbrain.machine.events import EventWriter
from bootbrain.models import Boot, Event, utcnow
from tests.conftest import Api, make_settings, make_token

TOKEN_RE = re.compile(r"/boot/([A-Za-z0-9_-]+)/")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs to fill it (a full disk, for real)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    return filler


def _app(tmp_path: Path, disk: Path) -> Flask:
    url = f"sqlite:///{disk}/bootbrain.db"
    settings = make_settings(url, tmp_path, default_profile="installer")
    app = create_app(settings)
    app.testing = True
    return app


def _setup(tmp_path: Path, disk: Path) -> Flask:
    migrate.upgrade(f"sqlite:///{disk}/bootbrain.db")
    app = _app(tmp_path, disk)
    api = Api(app.test_client(), make_token(app, "admin", "write"))
    api.post(
        "/profiles",
        {"name": "installer", "kind": "linux", "kernel": "http://assets/vmlinuz"},
        expect=201,
    )
    return app


def _boot(client: FlaskClient, i: int) -> str:
    script = client.get(f"/ipxe?mac=52:54:00:00:10:{i:02x}").get_data(as_text=True)
    assert script.startswith("#!ipxe\n"), script
    return script


def _counts(db: Database) -> tuple[int, int]:
    with db.read() as s:
        boots = s.scalar(select(func.count()).select_from(Boot)) or 0
        events = s.scalar(select(func.count()).select_from(Event).where(Event.kind == "boot")) or 0
    return boots, events


def _close(app: Flask) -> None:
    app.extensions["bootbrain"].events.close()
    app.extensions["bootbrain"].db.dispose()


def test_a_full_disk_sheds_boots_and_loses_no_record(tmp_path: Path, small_disk: Path) -> None:
    app = _setup(tmp_path, small_disk)
    client = app.test_client()
    writer: EventWriter = app.extensions["bootbrain"].events
    try:
        filler = _fill(small_disk)
        tokens, shed = [], 0
        for i in range(200):
            script = _boot(client, i)
            if "boot server busy" in script:
                shed += 1
                assert "chain" in script  # a retry through the bootstrap, no token
                assert not TOKEN_RE.search(script)
                if shed >= 5:
                    break
            else:
                tokens += TOKEN_RE.findall(script)[:1]
            time.sleep(0.05)
        assert shed >= 5, "boots were not shed while the database refused writes"
        assert tokens, "no boot was answered before the writer noticed"
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'bootbrain_machine_route_failures_total{kind="shed"}' in metrics
        filler.unlink()
        for _ in range(100):
            if writer.accepting:
                break
            time.sleep(0.1)
        assert writer.accepting
        writer.flush()
        boots, events = _counts(app.extensions["bootbrain"].db)
        assert boots == len(tokens)  # every token handed out has its boot record
        assert events == len(tokens)
        assert writer.rejected == 0
        # The installer's calls work: its token is known.
        done = client.post(f"/boot/{tokens[0]}/done", data={"status": "ok"})
        assert done.status_code == 200, done.get_data(as_text=True)
        text = client.get("/metrics").get_data(as_text=True)
        failed = re.search(r"^bootbrain_events_failed_total ([0-9.]+)$", text, re.M)
        assert failed and float(failed.group(1)) > 0
    finally:
        _close(app)


def test_records_queued_at_shutdown_survive_in_the_journal(
    tmp_path: Path, small_disk: Path
) -> None:
    app = _setup(tmp_path, small_disk)
    client = app.test_client()
    filler = _fill(small_disk)
    tokens = []
    for i in range(5):
        tokens += TOKEN_RE.findall(_boot(client, i))[:1]
    assert tokens
    _close(app)  # the database still refuses: the queue goes to the journal
    journal = tmp_path / "data" / "journal"
    files = list(journal.glob("events-*"))
    assert files, "nothing journalled"
    assert all((f.stat().st_mode & 0o777) == 0o600 for f in files)
    filler.unlink()

    after = _app(tmp_path, small_disk)  # a restarted brain
    try:
        _boot(after.test_client(), 99)  # its writer starts, and replays the journal
        writer: EventWriter = after.extensions["bootbrain"].events
        writer.flush()
        assert writer.replayed == len(tokens)
        assert not list(journal.glob("events-*"))
        boots, _ = _counts(after.extensions["bootbrain"].db)
        assert boots == len(tokens) + 1
        done = after.test_client().post(f"/boot/{tokens[0]}/done", data={"status": "ok"})
        assert done.status_code == 200, done.get_data(as_text=True)
    finally:
        _close(after)


def test_a_record_the_database_refuses_is_set_aside(
    app: Flask, db: Database, settings: object, tmp_path: Path
) -> None:
    """A batch with one record that breaks a constraint: the others are written, the
    one is kept in rejected.jsonl and counted (both databases)."""
    writer = EventWriter(db, 0.01, 100, journal_dir=tmp_path / "journal")
    now = utcnow()

    def boot(i: int, boot_id: str) -> None:
        writer.boot(
            event={"at": now, "kind": "boot", "message": f"b{i}", "data": {"boot_id": boot_id}},
            boot={
                "id": boot_id,
                "machine_id": None,
                "token_hash": f"hash{i}",
                "profile_name": None,
                "step": "default",
                "created_at": now,
                "expires_at": now + timedelta(hours=1),
                "completed_at": None,
            },
            machine_id=None,
            at=now,
            ip=None,
        )

    try:
        for i in range(6):
            boot(i, f"b{i}")
        boot(6, "b2")  # the same boot id twice: the primary key refuses it
        writer.flush()
        assert _counts(db) == (6, 6)
        assert writer.rejected == 1
        rejected = (tmp_path / "journal" / "rejected.jsonl").read_text()
        assert '"hash6"' in rejected and '"hash2"' not in rejected
    finally:
        writer.close()
