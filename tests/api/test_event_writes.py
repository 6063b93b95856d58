"""The event writer's batches, as several workers (or brains) write them at once."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import StatementError

from bootbrain import inventory, security
from bootbrain.db import Database
from bootbrain.errors import BootTokenError, ForbiddenError
from bootbrain.models import Boot, Event, Machine, utcnow


def _add_machines(db: Database, ids: Iterable[int], now: datetime) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            insert(Machine),
            [
                {
                    "id": i,
                    "hostname": f"m{i}",
                    "state": "ready",
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
                for i in ids
            ],
        )


def _boot_row(machine_id: int, token_hash: str, now: datetime) -> dict[str, Any]:
    """A queued boot record, as bootbrain.machine.flow makes it."""
    return {
        "id": f"boot{machine_id}",
        "machine_id": machine_id,
        "token_hash": token_hash,
        "profile_name": None,
        "step": "assigned",
        "created_at": now,
        "expires_at": now + timedelta(hours=1),
        "completed_at": None,
    }


def _batch(ids: list[int], at: datetime) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    events = [
        {
            "at": at,
            "kind": "boot",
            "machine_id": i,
            "mac": None,
            "ip": "10.0.0.9",
            "message": "assigned",
            "data": {},
        }
        for i in ids
    ]
    return events, {i: (at, "10.0.0.9") for i in ids}


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_overlapping_batches_do_not_deadlock(db_url: str) -> None:
    """Each worker's writer updates last-seen for the machines it answered: a boot
    storm on a small inventory gives every writer the same machines, in different
    orders. PostgreSQL must see them wait for each other, never deadlock."""
    db = Database(db_url)
    now = utcnow()
    _add_machines(db, range(1, 201), now)
    ids = list(range(1, 201))
    failures: list[BaseException] = []

    def writer(order: list[int]) -> None:
        try:
            for _ in range(15):
                events, seen = _batch(order, utcnow())
                inventory.write_batch(db, events, [], seen)
        except BaseException as e:  # reported by the assertion below
            failures.append(e)

    threads = [
        threading.Thread(target=writer, args=(order,))
        for order in (ids, ids[::-1], ids[100:] + ids[:100], ids[::-1])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[0]
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 4 * 15 * 200
        assert s.scalar(select(func.count()).where(Machine.last_seen_at.is_(None))) == 0
    db.dispose()


def _boot_event(machine_id: int, at: datetime) -> dict[str, Any]:
    return {
        "at": at,
        "kind": "boot",
        "machine_id": machine_id,
        "mac": "02:00:00:00:00:01",
        "ip": "10.0.0.9",
        "message": "assigned profile install",
        "data": {"step": "profile"},
    }


def _metadata_event(machine_id: int, at: datetime) -> dict[str, Any]:
    # As bootbrain.machine.documents records it: no MAC (a document fetch does not send one).
    return {
        "at": at,
        "kind": "metadata",
        "machine_id": machine_id,
        "ip": "10.0.0.9",
        "message": "user-data served",
        "data": {"document": "user-data"},
    }


@pytest.mark.parametrize("first", ["boot", "metadata"])
def test_a_batch_mixing_boot_and_metadata_events_keeps_both(db_url: str, first: str) -> None:
    """One batch can hold a machine's /ipxe answer and another's metadata fetch; the
    records have different fields, and each must be stored as it was given."""
    db = Database(db_url)
    now = utcnow()
    _add_machines(db, (1, 2), now)
    boot, meta = _boot_event(1, now), _metadata_event(2, now)
    events = [boot, meta] if first == "boot" else [meta, boot]
    inventory.write_batch(db, events, [], {1: (now, "10.0.0.9")})
    with db.read() as s:
        stored = {e.kind: e for e in s.scalars(select(Event))}
        assert stored["boot"].mac == "02:00:00:00:00:01"
        assert stored["boot"].data == {"step": "profile"}
        assert stored["metadata"].mac is None
        assert stored["metadata"].machine_id == 2
        assert stored["metadata"].data == {"document": "user-data"}
        assert s.get(Machine, 1).last_seen_ip == "10.0.0.9"
    db.dispose()


def test_a_machine_deleted_before_the_flush_costs_no_other_machine_its_boot(
    app: Any, db: Database
) -> None:
    """The writer stores a boot some 250 ms after /ipxe answered it. A machine deleted
    meanwhile must not fail the batch: the other machines' boot tokens are in it."""
    now = utcnow()
    _add_machines(db, (1, 2), now)
    secret = app.config["BOOTBRAIN"].secret()
    tokens = {i: security.new_boot_token() for i in (1, 2)}
    boots = [_boot_row(i, security.token_hash(secret, tokens[i]), now) for i in (1, 2)]
    inventory.delete_machine(db, 1, None, "test")
    inventory.write_batch(
        db,
        [_boot_event(1, now), _boot_event(2, now)],
        boots,
        {1: (now, "10.0.0.9"), 2: (now, "10.0.0.9")},
    )
    assert inventory.boot_config_for_token(db, secret, tokens[2], utcnow()).machine_id == 2
    # The deleted machine's token opens nothing, as when its boot was deleted with it.
    with pytest.raises(BootTokenError):
        inventory.boot_config_for_token(db, secret, tokens[1], utcnow())
    with pytest.raises(ForbiddenError):
        inventory.complete_boot(db, secret, tokens[1], {}, "10.0.0.9")
    inventory.complete_boot(db, secret, tokens[2], {}, "10.0.0.9")


def test_deleting_a_machine_deletes_its_boots(app: Any, db: Database) -> None:
    now = utcnow()
    _add_machines(db, (1,), now)
    inventory.write_batch(db, [], [_boot_row(1, "0" * 64, now)], {})
    inventory.delete_machine(db, 1, None, "test")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Boot)) == 0


def test_a_batch_keeps_its_times_to_the_microsecond(db_url: str) -> None:
    db = Database(db_url)
    now = utcnow().replace(microsecond=123456)
    elsewhere = now.astimezone(timezone(timedelta(hours=2)))  # the same instant
    _add_machines(db, (1,), now)
    inventory.write_batch(
        db, [_boot_event(1, elsewhere)], [_boot_row(1, "0" * 64, now)], {1: (elsewhere, "10.0.0.9")}
    )
    with db.read() as s:
        assert s.scalars(select(Event.at)).one() == now
        boot = s.scalars(select(Boot)).one()
        assert (boot.created_at, boot.expires_at) == (now, now + timedelta(hours=1))
        assert s.get(Machine, 1).last_seen_at == now
    db.dispose()


def test_a_naive_time_is_refused_and_nothing_is_written(db_url: str) -> None:
    db = Database(db_url)
    now = utcnow()
    _add_machines(db, (1,), now)
    naive = now.replace(tzinfo=None)
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        inventory.write_batch(db, [_boot_event(1, now)], [_boot_row(1, "0" * 64, naive)], {})
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 0
        assert s.scalar(select(func.count()).select_from(Boot)) == 0
    db.dispose()
