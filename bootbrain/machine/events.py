"""The event writer: records from the hot path, written off it, and never dropped.

``/ipxe`` must not wait for a database write (BRIEF "Scale"): each answer puts its
boot record, its event and the machine's last-seen time on a queue, and a thread per
worker process writes them in one transaction per batch. Last-seen updates are
coalesced per machine within a batch.

Nothing queued is dropped. A batch the database cannot take (down, locked, full) is
retried until it can, with a growing pause; meanwhile :attr:`EventWriter.accepting` is
false, and ``/ipxe`` answers a retry script instead of handing out per-boot tokens
whose boot records could not be written. A batch refused for what it holds (a
constraint) is split until the one record at fault is found, and that record goes to
``rejected.jsonl`` in the journal directory, logged and counted, not lost. ``close()``
(at exit and at gunicorn's worker shutdown) drains the queue; what the database still
cannot take after :data:`DRAIN_SECONDS` is written to a journal file, which the next
writer to start on this host (any worker, after a restart) writes to the database.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from bootbrain.db import Database, is_record_error
from bootbrain.inventory import write_batch
from bootbrain.metrics import metrics

log = logging.getLogger(__name__)

_STOP = object()
#: How long ``close()`` keeps retrying a failing database before journalling.
DRAIN_SECONDS: Final = 5.0
#: Queued records beyond which ``/ipxe`` sheds load (a retry script).
MAX_BACKLOG: Final = 50_000
_MAX_PAUSE: Final = 5.0
_JOURNAL_GLOB: Final = "events-*"
_DATETIME_FIELDS: Final = ("at", "created_at", "expires_at", "completed_at")


def _dump(item: tuple[Any, ...]) -> bytes:
    return orjson.dumps(list(item)) + b"\n"


def _revive(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _load(line: bytes) -> tuple[Any, ...]:
    kind, event, boot, machine_id, at, ip = orjson.loads(line)
    event["at"] = _revive(event.get("at"))
    if boot is not None:
        for name in _DATETIME_FIELDS:
            if name in boot:
                boot[name] = _revive(boot[name])
    return (kind, event, boot, machine_id, _revive(at), ip)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EventWriter:
    def __init__(
        self, db: Database, interval: float, batch_max: int, journal_dir: Path | None = None
    ) -> None:
        # No defaults here: the settings (event_flush_interval, event_batch_max) hold them.
        self.db = db
        self.interval = interval
        self.batch_max = batch_max
        self.journal_dir = journal_dir
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._stopping_at: float | None = None
        self._wake = threading.Event()
        self._failing_since: float | None = None
        self._journalling = False
        self.written = 0
        #: Failed write attempts (each is retried).
        self.failures = 0
        self.rejected = 0
        self.journalled = 0
        self.replayed = 0

    @property
    def accepting(self) -> bool:
        """False while the database does not take this writer's batches, or its
        backlog is too long: new boots should be told to retry, not given tokens."""
        return self._failing_since is None and self._q.qsize() < MAX_BACKLOG

    @property
    def failing_for(self) -> float:
        """Seconds the current batch has been failing; 0 when writes succeed."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since

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
        self._replay()
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
        pause = 0.2
        while True:
            if self._journalling:
                self._journal(items)
                return
            try:
                self._write_once(items)
            except Exception as e:
                if is_record_error(e):
                    self._isolate(items, e)
                    return
                self.failures += 1
                metrics().events_failed.inc()
                metrics().event_backlog.set(self._q.qsize() + len(items))
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    metrics().event_writes_failing.set(1)
                    log.exception(
                        "event batch of %d failed; retrying until it is written", len(items)
                    )
                elif self.failures % 20 == 0:
                    log.warning(
                        "event batch of %d still failing after %.0f s: %s",
                        len(items),
                        self.failing_for,
                        str(e).splitlines()[0][:200],
                    )
                if self._stopping_at is not None and (
                    time.monotonic() - self._stopping_at > DRAIN_SECONDS
                ):
                    self._journalling = True
                    continue
                time.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
                continue
            if self._failing_since is not None:
                log.warning("event writes recovered after %.1f s", self.failing_for)
                self._failing_since = None
                metrics().event_writes_failing.set(0)
            self.written += len(items)
            metrics().events_written.inc(len(items))
            metrics().event_backlog.set(self._q.qsize())
            return

    def _write_once(self, items: list[Any]) -> None:
        events: list[dict[str, Any]] = []
        boots: list[dict[str, Any]] = []
        seen: dict[int, tuple[datetime, str | None]] = {}
        for _kind, event, boot, machine_id, at, ip in items:
            events.append(event)
            if boot is not None:
                boots.append(boot)
            if machine_id is not None:
                seen[machine_id] = (at, ip)
        write_batch(self.db, events, boots, seen)

    def _isolate(self, items: list[Any], error: Exception) -> None:
        """Write the good records of a refused batch; set aside the bad one(s)."""
        if len(items) > 1:
            half = len(items) // 2
            self._write(items[:half])
            self._write(items[half:])
            return
        self.rejected += 1
        metrics().events_rejected.inc()
        log.error(
            "event record refused by the database, kept in the journal's rejected.jsonl: %s",
            str(error).splitlines()[0][:300],
        )
        if self.journal_dir is not None:
            with contextlib.suppress(OSError):
                self._append(self.journal_dir / "rejected.jsonl", items)

    def _append(self, path: Path, items: list[Any]) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "ab") as f:
            f.write(b"".join(_dump(item) for item in items))
            f.flush()
            os.fsync(f.fileno())

    def _journal(self, items: list[Any]) -> None:
        if self.journal_dir is None:
            log.error("no journal directory: %d event records lost", len(items))
            return
        self._append(self.journal_dir / f"events-{os.getpid()}.jsonl", items)
        self.journalled += len(items)
        metrics().events_journalled.inc(len(items))
        log.warning(
            "database unavailable at shutdown: %d event records journalled in %s",
            len(items),
            self.journal_dir,
        )

    def _claim(self) -> list[Path]:
        """Journal files of processes no longer running, renamed to this one's (a
        rename succeeds for one claimant only)."""
        if self.journal_dir is None or not self.journal_dir.is_dir():
            return []
        claimed = []
        for path in sorted(self.journal_dir.glob(_JOURNAL_GLOB)):
            pid_text = path.name.removeprefix("events-").split(".")[0]
            if not pid_text.isdigit() or (int(pid_text) != os.getpid() and _alive(int(pid_text))):
                continue
            target = path.with_name(f"events-{os.getpid()}.{time.monotonic_ns()}.replaying")
            try:
                path.rename(target)
            except FileNotFoundError:
                continue
            claimed.append(target)
        return claimed

    def _replay(self) -> None:
        for path in self._claim():
            try:
                items = [_load(line) for line in path.read_bytes().splitlines() if line]
            except (OSError, ValueError) as e:
                log.error("journal %s unreadable, left in place: %s", path, e)
                continue
            for start in range(0, len(items), self.batch_max):
                self._write(items[start : start + self.batch_max])
            if self._journalling:
                return  # stopped while replaying: what is left was journalled again
            path.unlink()
            self.replayed += len(items)
            metrics().events_replayed.inc(len(items))
            log.info("replayed %d journalled event records from %s", len(items), path.name)

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
        self._stopping_at = time.monotonic()
        self._q.put(_STOP)
        self._wake.set()
        self._thread.join(timeout=DRAIN_SECONDS + 20)
