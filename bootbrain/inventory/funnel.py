"""The boot funnel: every stage of a boot attempt, joined from the event log.

An attempt is anchored on its ``/ipxe`` decision (a ``boot`` or ``conflict`` event,
which names the machine, the MAC and address it came from, and the per-boot id).
Around it, from what bootbrain records anyway:

* ``lease`` — the machine's DHCP lease events (the dnsmasq and Kea hooks) in the
  :data:`LOOKBACK` before the decision and after the previous one;
* ``bootstrap`` — the ``/boot.ipxe`` fetch. The DHCP filename stays short (BRIEF), so
  the fetch carries no identity of its own by default: it is attributed by the
  address it came from (the lease's and the decision's address), or by a ``mac=`` the
  operator chose to add to the filename;
* ``decision`` — step, profile and rule;
* ``document`` — each booted-OS document served against the boot's token;
* ``completion`` — the booted OS's callback.

Kernel and initrd fetches are served by nginx (or wherever ``assets_url`` points) and
are not attributed yet (README "The boot funnel").

An attempt that has a per-boot record, has not completed, is the machine's latest,
and has not reached a new stage within its profile's ``stuck_after`` (or the
``boot_stuck_after`` setting) is *stuck*.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bootbrain import schemas
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.errors import NotFoundError
from bootbrain.models import Boot, Event, Machine, Profile

from .base import get_by_id

#: A lease or bootstrap fetch this long before a decision belongs to its attempt.
LOOKBACK: Final = timedelta(minutes=10)
#: ``GET /boots?stuck=true`` looks at attempts whose token expired at most this long ago.
STUCK_HORIZON: Final = timedelta(days=1)
#: Leases shown per attempt (the PXE ROM's and iPXE's DHCP, and renewals).
MAX_LEASES: Final = 4
#: What the funnel cannot see yet, on every attempt that loads a kernel.
NOT_ATTRIBUTED: Final = ("kernel", "initrd")

_DECISIONS: Final = ("boot", "conflict")
_AFTER_DECISION: Final = ("metadata", "completion")
_NEXT: Final = {
    "lease": "never fetched /boot.ipxe",
    "bootstrap": "never asked /ipxe",
    "decision": "never fetched its documents or reported completion",
    "document": "never reported completion",
}


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    return f"{seconds / 3600:.1f} h ago"


_Stage = tuple[str, datetime, str, dict[str, Any]]


def _stage(stage: str, e: Event, detail: str, **data: Any) -> _Stage:
    return stage, e.at, detail, {k: v for k, v in data.items() if v is not None}


def _attempts(
    s: Session, settings: Settings, machine_id: int, limit: int, now: datetime
) -> list[schemas.BootAttemptOut]:
    """The machine's last ``limit`` attempts, newest first."""
    # One more than asked: the one before the oldest bounds its look-back window.
    newest_first = list(
        s.scalars(
            select(Event)
            .where(Event.machine_id == machine_id, Event.kind.in_(_DECISIONS))
            .order_by(Event.id.desc())
            .limit(limit + 1)
        )
    )
    if not newest_first:
        return []
    decisions = list(reversed(newest_first))
    bound = decisions.pop(0) if len(decisions) > limit else None
    lo_all = decisions[0].at - LOOKBACK
    if bound is not None:
        lo_all = max(lo_all, bound.at)

    leases = list(
        s.scalars(
            select(Event)
            .where(Event.machine_id == machine_id, Event.kind == "lease", Event.at >= lo_all)
            .order_by(Event.at, Event.id)
        )
    )
    ips = {d.ip for d in decisions if d.ip}
    macs = {d.mac for d in decisions if d.mac}
    bootstraps: list[Event] = []
    if ips or macs:
        bootstraps = list(
            s.scalars(
                select(Event)
                .where(
                    Event.kind == "bootstrap",
                    or_(Event.ip.in_(ips), Event.mac.in_(macs)),
                    Event.at >= lo_all,
                    Event.at <= decisions[-1].at,
                )
                .order_by(Event.at, Event.id)
            )
        )
    later: dict[str, list[Event]] = defaultdict(list)
    for e in s.scalars(
        select(Event)
        .where(
            Event.machine_id == machine_id,
            Event.kind.in_(_AFTER_DECISION),
            Event.at >= decisions[0].at,
        )
        .order_by(Event.at, Event.id)
    ):
        boot_id = (e.data or {}).get("boot_id")
        if boot_id:
            later[boot_id].append(e)
    boot_ids = [d.data.get("boot_id") for d in decisions if (d.data or {}).get("boot_id")]
    boots = {b.id: b for b in s.scalars(select(Boot).where(Boot.id.in_(boot_ids)))}
    names = {(d.data or {}).get("profile") for d in decisions} - {None}
    limits = dict(
        s.execute(select(Profile.name, Profile.stuck_after).where(Profile.name.in_(names))).all()
    )

    out: list[schemas.BootAttemptOut] = []
    for i, d in enumerate(decisions):
        data = d.data or {}
        lo = max(d.at - LOOKBACK, decisions[i - 1].at if i else (bound.at if bound else lo_all))
        stages = [
            _stage(
                "lease",
                e,
                e.message,
                ip=e.ip,
                action=(e.data or {}).get("action"),
                source=(e.data or {}).get("source"),
            )
            for e in leases
            if lo <= e.at <= d.at
        ][-MAX_LEASES:]
        fetched = [
            e
            for e in bootstraps
            if lo <= e.at <= d.at and ((d.ip and e.ip == d.ip) or (d.mac and e.mac == d.mac))
        ]
        if fetched:
            b = fetched[-1]
            by = "mac" if d.mac and b.mac == d.mac else "ip"
            stages.append(
                _stage("bootstrap", b, f"fetched /boot.ipxe from {b.ip}", ip=b.ip, matched_by=by)
            )
        profile, step, rule = data.get("profile"), data.get("step", "?"), data.get("rule")
        how = f"rule {rule}" if rule else step
        stages.append(
            _stage(
                "decision",
                d,
                f"/ipxe decided by {how}: " + (f"profile {profile}" if profile else "no profile"),
                step=step,
                profile=profile,
                rule=rule,
            )
        )
        boot_id = data.get("boot_id")
        completed = False
        for e in later.get(boot_id, []) if boot_id else []:
            if e.kind == "metadata":
                doc = (e.data or {}).get("document")
                stages.append(_stage("document", e, f"fetched {doc}", document=doc, ip=e.ip))
            elif not completed:
                completed = True
                stages.append(_stage("completion", e, "the booted OS reported completion", ip=e.ip))
        boot = boots.get(boot_id) if boot_id else None
        if boot is not None and boot.completed_at is not None:
            completed = True
        stages.sort(key=lambda st: st[1])
        start, (last, last_at, last_detail, _) = stages[0][1], stages[-1]
        stuck_after = (limits.get(profile) if profile else None) or settings.boot_stuck_after
        if step in ("conflict", "error"):
            status = "failed"
        elif boot_id is None:
            status = "local"
        elif completed:
            status = "complete"
        elif i < len(decisions) - 1:
            status = "superseded"
        elif (now - last_at).total_seconds() > stuck_after:
            status = "stuck"
        else:
            status = "in_progress"
        summary = f"{last_detail} {_ago((now - last_at).total_seconds())}"
        if status in ("stuck", "in_progress", "superseded") and last in _NEXT:
            summary += f"; {_NEXT[last]}"
        out.append(
            schemas.BootAttemptOut(
                machine_id=machine_id,
                boot_id=boot_id,
                mac=d.mac,
                ip=d.ip,
                step=step,
                profile=profile,
                rule=rule,
                reason=d.message,
                status=status,
                started_at=start,
                decided_at=d.at,
                last_stage=last,
                last_stage_at=last_at,
                duration_s=round((last_at - start).total_seconds(), 3),
                stuck_after_s=stuck_after,
                summary=summary,
                not_attributed=list(NOT_ATTRIBUTED) if boot_id else [],
                stages=[
                    schemas.BootStageOut(
                        stage=name,
                        at=at,
                        after_start_s=round((at - start).total_seconds(), 3),
                        detail=detail,
                        data=extra,
                    )
                    for name, at, detail, extra in stages
                ],
            )
        )
    out.reverse()
    return out


def machine_boots(
    db: Database, settings: Settings, machine_id: int, limit: int, now: datetime
) -> list[schemas.BootAttemptOut]:
    """The machine's last ``limit`` boot attempts, newest first, each with its stages.
    Raises NotFoundError for an unknown machine."""
    with db.read() as s:
        get_by_id(s, Machine, machine_id)
        return _attempts(s, settings, machine_id, limit, now)


def stuck_boots(
    db: Database, settings: Settings, limit: int, now: datetime
) -> list[schemas.BootAttemptOut]:
    """Attempts flagged stuck now, most recently started first: each machine's latest
    attempt, if it is stuck."""
    with db.read() as s:
        custom = [v for v in s.scalars(select(Profile.stuck_after)) if v]
        shortest = min([settings.boot_stuck_after, *custom])
        rows = s.execute(
            select(Boot.machine_id)
            .where(
                Boot.completed_at.is_(None),
                Boot.machine_id.is_not(None),
                Boot.expires_at > now - STUCK_HORIZON,
                Boot.created_at <= now - timedelta(seconds=shortest),
            )
            .order_by(Boot.created_at.desc())
        ).all()
        seen: set[int] = set()
        out: list[schemas.BootAttemptOut] = []
        for (machine_id,) in rows:
            if machine_id is None or machine_id in seen:
                continue
            seen.add(machine_id)
            try:
                get_by_id(s, Machine, machine_id)
            except NotFoundError:
                continue
            latest = _attempts(s, settings, machine_id, 1, now)
            if latest and latest[0].status == "stuck":
                out.append(latest[0])
                if len(out) >= limit:
                    break
        return out
