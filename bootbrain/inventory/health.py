"""The database's part of readiness: can it take a write now."""

from __future__ import annotations

from sqlalchemy import delete, insert

from bootbrain.db import Database
from bootbrain.models import DiscoveryCounter

#: A minute that no discovery window uses: the probe's row never meets a real one.
_PROBE_MINUTE = -1


def write_probe(db: Database) -> None:
    """A write that reaches the database's files and leaves nothing: a row inserted
    and deleted in one committed transaction (a full disk, a read-only file or a
    lock held too long raise :data:`bootbrain.db.DatabaseError`)."""
    with db.write() as s:
        conn = s.connection()
        conn.execute(insert(DiscoveryCounter).values(minute=_PROBE_MINUTE, count=0))
        conn.execute(delete(DiscoveryCounter).where(DiscoveryCounter.minute == _PROBE_MINUTE))
