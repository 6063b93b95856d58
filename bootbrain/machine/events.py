"""The event writer: records from the hot path, written off it.

``/ipxe`` must not wait for a database write (BRIEF "Scale"): each answer puts its
boot record, its event and the machine's last-seen time on a queue, and a thread per
worker process writes them in one transaction per batch. ``close()`` (called at exit
and by gunicorn's worker shutdown) drains the queue, so a clean shutdown loses
nothing. Last-seen updates are coalesced per machine within a batch.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from datetime import datetime
from typing import Any

from bootbrain.db import Database
from bootbrain.inventory import write_batch

log = logging.getLogger(__name__)

_STOP = object()


class EventWriter:
    def __init__(self, db: Database, interval: float, batch_max: int) -> None:
        # No defaults here: the settings (event_flush_interval, event_batch_max) hold them.
        self.db = db
        self.interval = interval
        self.batch_max = batch_max
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._wake = threading.Event()
        self.written = 0
        self.failures = 0

    def _ensure_started(self) -> None:
        # Started lazily, in the process that serves: gunicorn forks workers after
        # the app is created, and a thread does not survive a fork.
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def boot(
        self,
        *,
        event: dict[str, Any],
        boot: dict[str, Any] | None,
        machine_id: int | None,
        at: datetime,
        ip: str | None,
    ) -> None:
        self._ensure_started()
        self._q.put(("boot", event, boot, machine_id, at, ip))

    def event(self, event: dict[str, Any]) -> None:
        self._ensure_started()
        self._q.put(("event", event, None, None, None, None))

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            # Collect a batch by waiting once, not by waking on every item: each wake-up
            # takes the GIL from the thread answering /ipxe (py-spy on a boot storm: 16%
            # of worker time was request threads waiting for it in ``put``).
            if first is not _STOP and first[0] != "barrier":
                self._wake.wait(self.interval)
            self._wake.clear()
            pending = [first]
            while True:
                try:
                    pending.append(self._q.get_nowait())
                except queue.Empty:
                    break
            items: list[Any] = []
            barriers = []
            for item in pending:
                if item is _STOP:
                    stop = True
                elif item[0] == "barrier":
                    barriers.append(item[1])
                else:
                    items.append(item)
            for start in range(0, len(items), self.batch_max):
                self._write(items[start : start + self.batch_max])
            for done in barriers:
                done.set()

    def _write(self, items: list[Any]) -> None:
        events: list[dict[str, Any]] = []
        boots: list[dict[str, Any]] = []
        seen: dict[int, tuple[datetime, str | None]] = {}
        for _kind, event, boot, machine_id, at, ip in items:
            events.append(event)
            if boot is not None:
                boots.append(boot)
            if machine_id is not None:
                seen[machine_id] = (at, ip)
        for attempt in range(5):
            try:
                write_batch(self.db, events, boots, seen)
                self.written += len(items)
                return
            except Exception:
                log.exception("event batch of %d failed (attempt %d)", len(items), attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        self.failures += len(items)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._q.put(("barrier", done))
        self._wake.set()
        done.wait(timeout)

    def close(self) -> None:
        if self._closed or self._thread is None:
            return
        self._closed = True
        self._q.put(_STOP)
        self._wake.set()
        self._thread.join(timeout=30)
