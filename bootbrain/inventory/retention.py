"""Retention: ``bootbrain prune`` deletes old events and expired boot records.

In chunks, oldest first, each chunk its own short transaction, so the event writer's
batches keep flowing while a prune runs; safe to run from every brain sharing a
database (a later run finds nothing left).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select

from bootbrain.db import Database
from bootbrain.models import Boot, Event

# --- retention --------------------------------------------------------------------

#: Rows deleted per transaction. Each chunk holds SQLite's write lock (PostgreSQL's row
#: locks) only briefly, so the event writer's batches keep flowing while a prune runs.
PRUNE_CHUNK: Final = 5000


@dataclass(frozen=True)
class Pruned:
    events: int
    boots: int


def prune(
    db: Database, now: datetime, event_days: int, boot_days: int, chunk: int = PRUNE_CHUNK
) -> Pruned:
    """Delete events older than ``event_days`` and boot records whose token expired
    more than ``boot_days`` ago; 0 keeps that kind forever.

    Nothing else refers to either: an event outlives its machine by design, and an
    expired boot token opens nothing whether its record is there or not."""
    if min(event_days, boot_days) < 0 or chunk < 1:
        raise ValueError("retention days must be 0 (keep) or more, and chunk at least 1")
    events = _prune_events(db, now - timedelta(days=event_days), chunk) if event_days else 0
    boots = _prune_boots(db, now - timedelta(days=boot_days), chunk) if boot_days else 0
    return Pruned(events=events, boots=boots)


def _prune_events(db: Database, cutoff: datetime, chunk: int) -> int:
    """Oldest first, in id order. Ids follow time (the writer stores an event a moment
    after it happened), so the walk ends at the first chunk holding a newer event, and
    ``event.at`` needs no index of its own, which every boot would pay for. An old
    event stored after that chunk is deleted by a later run."""
    deleted, after = 0, 0
    while True:
        with db.write() as s:
            conn = s.connection()
            bound = conn.scalar(
                select(Event.id)
                .where(Event.id > after)
                .order_by(Event.id)
                .offset(chunk - 1)
                .limit(1)
            )
            stmt = delete(Event).where(Event.id > after, Event.at < cutoff)
            if bound is not None:
                stmt = stmt.where(Event.id <= bound)
            count = conn.execute(stmt).rowcount
        deleted += count
        if bound is None or count < chunk:
            return deleted
        after = bound


def _prune_boots(db: Database, cutoff: datetime, chunk: int) -> int:
    oldest = (
        select(Boot.id)
        .where(Boot.expires_at < cutoff)
        .order_by(Boot.expires_at)
        .limit(chunk)
        .scalar_subquery()
    )
    stmt = delete(Boot).where(Boot.id.in_(oldest))
    deleted = 0
    while True:
        with db.write() as s:
            count = s.connection().execute(stmt).rowcount
        deleted += count
        if count < chunk:
            return deleted
