"""The reconciler: makes this boot host's DHCP server hold exactly the reservations the
shared inventory says, whoever changed the inventory and however.

Level-triggered: it never acts on what a change was, only on what the inventory is
now. It reads the reservation version (raised by the database's own triggers, see
:class:`bootbrain.models.ReservationVersion`), then every reservation, and writes the
difference (dnsmasq: a host file per machine, each replaced atomically, one SIGHUP;
Kea: one checked document and reload, or host commands). It runs when the version
differs from the one it last applied — woken at once by PostgreSQL's ``NOTIFY``, or
within :data:`bootbrain.inventory.changes.SQLITE_POLL` on SQLite — and in full every
:data:`FULL_INTERVAL` seconds whatever the version says, so a missed notification, a
crash half-way through a write or a hand-edited host file heals by itself. A failed
pass is retried on the next tick: the version is only recorded once applied.

One reconciler runs per boot host: ``bootbrain serve`` starts it as a child process
(``bootbrain reconcile``), or it runs as its own unit on a host that runs DHCP
without a brain.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.inventory import ChangeWaiter, all_reservations, reservations_version
from bootbrain.metrics import metrics

from . import dnsmasq, kea

log = logging.getLogger(__name__)

#: Seconds between full passes that run whether or not the version moved.
FULL_INTERVAL: Final = 300.0
#: The longest wait between checks (for the stop condition and the parent's life).
TICK: Final = 5.0
#: After a failed pass.
RETRY: Final = 2.0


@dataclass
class Pass:
    """One reconcile: the version it brought the DHCP server to, and what changed."""

    version: int
    reservations: int
    changed: bool
    detail: str
    seconds: float


def reconcile_once(settings: Settings, db: Database) -> Pass:
    """Bring the DHCP server to the inventory now."""
    started = time.monotonic()
    version = reservations_version(db)  # before the read: a later change means another pass
    reservations = all_reservations(db)
    if settings.dhcp == "dnsmasq":
        d = settings.dnsmasq
        assert d.hostsdir is not None  # settings derive it from data_dir
        r = dnsmasq.sync_reservations(d.hostsdir, reservations, d.pid_file)
        changed = bool(r.written or r.removed)
        detail = f"{len(r.written)} written, {len(r.removed)} removed"
    elif settings.dhcp == "kea":
        k = kea.sync_reservations(settings, settings.public_url, reservations)
        changed = k.changed
        detail = k.method
    else:
        changed, detail = False, "no DHCP server configured"
    return Pass(version, len(reservations), changed, detail, time.monotonic() - started)


STATUS_FILE: Final = "reconcile-status.json"


def read_status(settings: Settings) -> dict[str, Any] | None:
    """What this host's reconciler last reported (``/readyz``, ``bootbrain status``)."""
    try:
        data = json.loads((settings.data_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Reconciler:
    settings: Settings
    db: Database
    applied: int | None = None
    passes: int = 0
    failures: int = 0
    _last_full: float = 0.0
    _last_success: float | None = None

    def _report(self, error: str | None) -> None:
        """The status file: the last success, and the error since, if any."""
        path = self.settings.data_dir / STATUS_FILE
        doc = {
            "pid": os.getpid(),
            "version": self.applied,
            "last_success": self._last_success,
            "error": error,
            "at": time.time(),
        }
        try:
            tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            tmp.replace(path)
        except OSError as e:
            log.warning("cannot write %s: %s", path, e)

    def step(self) -> Pass | None:
        """One check: a pass if the version moved or a full pass is due."""
        due = time.monotonic() - self._last_full >= FULL_INTERVAL
        if not due and reservations_version(self.db) == self.applied:
            return None
        result = reconcile_once(self.settings, self.db)
        self.applied = result.version
        self._last_full = time.monotonic()
        self.passes += 1
        self._last_success = time.time()
        self._report(None)
        m = metrics()
        m.reconcile_passes.inc()
        m.reconcile_last_success.set(time.time())
        m.reconcile_version.set(result.version)
        if result.changed or self.passes == 1:
            log.info(
                "reservations at version %d: %d reservation(s), %s (%.3f s)",
                result.version,
                result.reservations,
                result.detail,
                result.seconds,
            )
        return result

    def run(self, stop: Callable[[], bool]) -> None:
        waiter = ChangeWaiter(self.db)
        try:
            # Listen before the first read: a change committed between that read and a
            # later LISTEN would otherwise wait for the next tick.
            waiter.wait(0)
            while not stop():
                try:
                    self.step()
                    wait = min(TICK, max(0.0, FULL_INTERVAL - (time.monotonic() - self._last_full)))
                except Exception as e:
                    self.failures += 1
                    metrics().reconcile_failures.inc()
                    self._report(str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
                    log.exception("reconcile failed; retrying in %.0f s", RETRY)
                    wait = RETRY
                waiter.wait(wait)
        finally:
            waiter.close()


def parent_gone(parent: int | None) -> Callable[[], bool]:
    """A stop condition: the process that started this one has exited."""
    return lambda: parent is not None and os.getppid() != parent
