"""Seeing that reservations changed, wherever the change was made: the version the
database's triggers keep (:class:`bootbrain.models.ReservationVersion`), and waiting
for the next change (PostgreSQL ``LISTEN``; SQLite has no notifications, so a poll of
that one row, which costs a page read)."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Final

from sqlalchemy import select

from bootbrain.db import Database
from bootbrain.models import RESERVATION_CHANNEL, ReservationVersion

log = logging.getLogger(__name__)

#: How often SQLite's version is read while waiting.
SQLITE_POLL: Final = 0.5


def reservations_version(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(ReservationVersion.version).where(ReservationVersion.id == 1)) or 0


class ChangeWaiter:
    """``wait(timeout)`` returns early when reservations may have changed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listener: Any = None

    def _listen(self) -> Any:
        if self._listener is None:
            import psycopg  # the PostgreSQL extra; only PostgreSQL gets here

            url = self.db.engine.url.set(drivername="postgresql")
            conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            conn.execute(f"LISTEN {RESERVATION_CHANNEL}")
            self._listener = conn
        return self._listener

    def wait(self, timeout: float) -> None:
        if self.db.is_sqlite:
            time.sleep(min(timeout, SQLITE_POLL))
            return
        try:
            conn = self._listen()
            # Any notification ends the wait; those queued with it are drained, since
            # one reconcile covers them all.
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
            with contextlib.suppress(Exception):
                for _ in conn.notifies(timeout=0):
                    pass
        except Exception as e:  # the database is away: wait, then listen anew
            log.warning("cannot listen for inventory changes: %s", str(e).splitlines()[0][:200])
            self.close()
            time.sleep(min(timeout, 2.0))

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None
