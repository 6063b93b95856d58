"""Readiness: whether this boot host can do its job now, each cause named.

``/readyz`` (for load balancers and the Ansible role's verify) and ``bootbrain status``
run the same checks: the database answers a read and takes a write, its schema is the
one this bootbrain needs, the event writer is writing with a short backlog, and the
reconciler has brought the DHCP server to the inventory recently. ``/healthz`` stays
the cheap liveness check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from bootbrain import migrate
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.integrations.reconcile import FULL_INTERVAL, read_status
from bootbrain.machine.events import EventWriter

#: A reconcile older than this (two full passes) means the reconciler is not running.
RECONCILE_STALE: Final = 2 * FULL_INTERVAL + 30


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _first_line(e: BaseException) -> str:
    reason = getattr(e, "orig", None) or e
    return (str(reason).splitlines() or [type(reason).__name__])[0][:300]


def checks(settings: Settings, db: Database, writer: EventWriter | None) -> list[Check]:
    out: list[Check] = []
    # The database's own checks, as /healthz runs them (the file, a read, a write probe).
    health = db.health(migrate.newest()).checks
    unread = next((health[k] for k in ("file", "database") if health.get(k, "ok") != "ok"), None)
    out.append(Check("database_read", unread is None, unread or "answers"))
    if unread is None:
        try:  # says what to run, where health only says what it found
            problem = migrate.schema_problem(db.engine)
            out.append(Check("schema", problem is None, problem or f"at {migrate.newest()}"))
        except Exception as e:
            out.append(Check("schema", False, _first_line(e)))
        writable = health.get("writable", "ok")
        ok = writable == "ok"
        out.append(Check("database_write", ok, "takes writes" if ok else writable))
    if writer is not None:
        if writer.accepting:
            out.append(Check("event_writer", True, "writing"))
        elif writer.failing_for:
            detail = f"cannot write for {writer.failing_for:.0f} s: boots are told to retry"
            out.append(Check("event_writer", False, detail))
        else:
            out.append(Check("event_writer", False, "backlog over its limit: boots are shed"))
    if settings.dhcp != "none":
        status = read_status(settings)
        last = status.get("last_success") if status else None
        if status is None or not isinstance(last, int | float):
            out.append(Check("reconcile", False, "the reconciler has not completed a pass"))
        elif status.get("error"):
            out.append(Check("reconcile", False, f"last pass failed: {status['error']}"))
        elif time.time() - last > RECONCILE_STALE:
            out.append(
                Check("reconcile", False, f"last pass {time.time() - last:.0f} s ago: not running")
            )
        else:
            out.append(
                Check(
                    "reconcile",
                    True,
                    f"version {status.get('version')}, {time.time() - last:.0f} s ago",
                )
            )
    return out
