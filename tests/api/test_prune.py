"""Retention: ``bootbrain prune`` deletes old events and boot records, and nothing else."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from bootbrain import inventory
from bootbrain.cli import main
from bootbrain.db import Database
from bootbrain.models import Boot, Event, utcnow

DAY = timedelta(days=1)


def _add_events(db: Database, ages_days: list[float], now: datetime) -> list[int]:
    """Events stored in this order (ids follow it), each ``age`` days old; their ids."""
    with db.engine.begin() as conn:
        return [
            conn.execute(
                insert(Event).values(
                    at=now - age * DAY, kind="boot", message=f"{age} days old", data={}
                )
            ).inserted_primary_key[0]
            for age in ages_days
        ]


def _add_boots(db: Database, expired_days_ago: dict[str, float], now: datetime) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            insert(Boot),
            [
                {
                    "id": boot_id,
                    "machine_id": None,
                    "token_hash": f"hash-{boot_id}",
                    "step": "default",
                    "created_at": now - ago * DAY - timedelta(hours=1),
                    "expires_at": now - ago * DAY,
                }
                for boot_id, ago in expired_days_ago.items()
            ],
        )


def _event_ids(db: Database) -> list[int]:
    with db.engine.connect() as conn:
        return list(conn.scalars(select(Event.id).order_by(Event.id)))


def _boot_ids(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.scalars(select(Boot.id)))


def test_prune_deletes_events_and_boots_past_retention_only(db_url: str) -> None:
    db = Database(db_url)
    now = utcnow()
    ids = _add_events(db, [400, 300, 200, 181, 180.5, 179, 10, 0], now)
    _add_boots(db, {"ancient": 90, "old": 31, "recent": 29, "expired-now": 0, "live": -1}, now)

    # A chunk of 2 makes the walk take several transactions and end mid-chunk.
    done = inventory.prune(db, now, event_days=180, boot_days=30, chunk=2)

    assert done == inventory.Pruned(events=5, boots=2)
    assert _event_ids(db) == ids[5:]
    assert _boot_ids(db) == {"recent", "expired-now", "live"}
    # Nothing left to do: a second run deletes nothing.
    assert inventory.prune(db, now, 180, 30, chunk=2) == inventory.Pruned(0, 0)
    db.dispose()


def test_prune_keeps_a_kind_forever_at_zero_days(db_url: str) -> None:
    db = Database(db_url)
    now = utcnow()
    ids = _add_events(db, [1000, 500], now)
    _add_boots(db, {"old": 1000}, now)

    assert inventory.prune(db, now, event_days=0, boot_days=1) == inventory.Pruned(0, 1)
    assert _event_ids(db) == ids
    assert inventory.prune(db, now, event_days=1, boot_days=0) == inventory.Pruned(2, 0)
    assert _event_ids(db) == []
    db.dispose()


def test_the_walk_stops_at_the_first_chunk_holding_a_newer_event(db_url: str) -> None:
    """The walk is in id order, so that the time column needs no index. An old event
    stored after a newer one goes with it, if it is in that chunk; else at a later run."""
    db = Database(db_url)
    now = utcnow()
    ids = _add_events(db, [200, 200, 5, 200, 200], now)

    assert inventory.prune(db, now, event_days=180, boot_days=0, chunk=2).events == 3
    assert _event_ids(db) == [ids[2], ids[4]]
    later = now + 180 * DAY
    assert inventory.prune(db, later, event_days=180, boot_days=0, chunk=2).events == 2
    assert _event_ids(db) == []
    db.dispose()


def test_prune_refuses_negative_retention(db_url: str) -> None:
    db = Database(db_url)
    with pytest.raises(ValueError, match="retention days"):
        inventory.prune(db, utcnow(), event_days=-1, boot_days=30)
    db.dispose()


def test_cli_prune_uses_the_configured_retention_and_says_what_it_did(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(db_url)
    now = utcnow()
    ids = _add_events(db, [40, 20, 1], now)
    _add_boots(db, {"old": 20, "recent": 5}, now)
    config = tmp_path / "bootbrain.toml"
    config.write_text("event_retention_days = 30\nboot_retention_days = 10\n")
    monkeypatch.setenv("BOOTBRAIN_CONFIG", str(config))
    monkeypatch.setenv("BOOTBRAIN_DATABASE_URL", db_url)
    monkeypatch.setenv("BOOTBRAIN_DATA_DIR", str(tmp_path))
    runner = CliRunner()

    out = runner.invoke(main, ["prune"])
    assert out.exit_code == 0, out.output
    assert "deleted 1 event(s) (older than 30 days)" in out.output
    assert "deleted 1 boot record(s) (older than 10 days)" in out.output
    assert _event_ids(db) == ids[1:]
    assert _boot_ids(db) == {"recent"}

    out = runner.invoke(main, ["prune", "--events-days", "0", "--boots-days", "1"])
    assert out.exit_code == 0, out.output
    assert "deleted 0 event(s) (kept forever)" in out.output
    assert "deleted 1 boot record(s) (older than 1 day)" in out.output
    assert _event_ids(db) == ids[1:]
    assert _boot_ids(db) == set()

    out = runner.invoke(main, ["prune", "--events-days", "-3"])
    assert out.exit_code == 2
    assert "--events-days" in out.output
    db.dispose()
