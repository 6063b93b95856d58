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
* ``kernel``, ``initrd`` (``asset`` for other files) — fetches nginx served by sendfile,
  from its ``bootbrain_assets`` JSON access log (:func:`parse_nginx_line`, ingested by
  ``bootbrain boots ingest``), attributed by address in the :data:`LOOKBACK` after
  the decision (and before the next), with bytes and duration; the file name says
  which it is (the last segment of the profile's ``kernel`` and ``initrds``);
* ``document`` — each booted-OS document served against the boot's token;
* ``completion`` — the booted OS's callback.

An attempt that has a per-boot record, has not completed, is the machine's latest,
and has not reached a new stage within its profile's ``stuck_after`` (or the
``boot_stuck_after`` setting) is *stuck*.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bootbrain import schemas
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.errors import NotFoundError
from bootbrain.models import BOOTSTRAP_MAC_SQL, FETCH_KINDS_SQL, Boot, Event, Machine, Profile

from .base import MAX_ID

#: A lease or bootstrap fetch this long before a decision belongs to its attempt, and
#: a kernel or initrd fetch this long after it.
LOOKBACK: Final = timedelta(minutes=10)
#: ``GET /boots?stuck=true`` looks at attempts whose token expired at most this long ago.
STUCK_HORIZON: Final = timedelta(days=1)
#: Leases shown per attempt (the PXE ROM's and iPXE's DHCP, and renewals).
MAX_LEASES: Final = 4
#: A log of whole seconds ($time_iso8601) may put a fetch up to this long before the
#: decision that named the file.
ASSET_SKEW: Final = timedelta(seconds=1)
#: Asset fetches stored per transaction by :func:`record_asset_fetches`.
INGEST_CHUNK: Final = 500
#: The event :func:`record_stuck` records, once per attempt.
STUCK_EVENT: Final = "boot.stuck"
#: Stuck attempts one :func:`record_stuck` pass looks at.
STUCK_MAX: Final = 10_000

_DECISIONS: Final = ("boot", "conflict")
_AFTER_DECISION: Final = ("metadata", "completion")
_NEXT: Final = {
    "lease": "never fetched /boot.ipxe",
    "bootstrap": "never asked /ipxe",
    "decision": "never fetched its kernel, documents or reported completion",
    "kernel": "never fetched its initrd, documents or reported completion",
    "initrd": "never fetched its documents or reported completion",
    "asset": "never fetched its documents or reported completion",
    "document": "never reported completion",
}


@dataclass(frozen=True)
class AssetFetch:
    """One request nginx served from the assets directory."""

    ref: str
    at: datetime  # when the request began
    ip: str
    path: str
    status: int
    bytes: int
    duration_s: float


def parse_nginx_line(line: str) -> AssetFetch | None:
    """One line of the ``bootbrain_assets`` log format (README "The boot funnel"); None
    for anything else. The line's hash is its id, so a log read twice is stored once."""
    try:
        doc = json.loads(line)
        if not isinstance(doc, dict):
            return None
        if "msec" in doc:  # $msec: the end of the request, to the millisecond
            end = datetime.fromtimestamp(float(doc["msec"]), UTC)
        else:  # $time_iso8601: whole seconds
            end = datetime.fromisoformat(str(doc["time"]))
        duration = float(doc.get("request_time") or 0)
        status = int(doc["status"])
        sent = int(doc.get("bytes") or 0)
        ip = str(ipaddress.ip_address(str(doc["ip"])))
        path = str(doc["uri"]).split("?", 1)[0][:512]
    except (KeyError, ValueError, TypeError):
        return None
    if end.tzinfo is None or not 0 <= duration < 86_400:
        return None
    ref = "nginx-" + hashlib.sha256(line.strip().encode()).hexdigest()[:58]
    return AssetFetch(ref, end - timedelta(seconds=duration), ip, path, status, sent, duration)


def record_asset_fetches(db: Database, fetches: Iterable[AssetFetch]) -> int:
    """Store each fetch once (by its id); how many were new. One ingester at a time:
    two reading the same log could both find a line new, and one would fail."""
    pending = list({f.ref: f for f in fetches}.values())
    new = 0
    for start in range(0, len(pending), INGEST_CHUNK):
        chunk = pending[start : start + INGEST_CHUNK]
        with db.write() as s:
            known = set(s.scalars(select(Event.ref).where(Event.ref.in_([f.ref for f in chunk]))))
            rows = [
                Event(
                    kind="asset",
                    at=f.at,
                    ip=f.ip,
                    ref=f.ref,
                    message=f"{f.path} {f.status}: {f.bytes} bytes in {f.duration_s:.3f} s",
                    data={
                        "path": f.path,
                        "status": f.status,
                        "bytes": f.bytes,
                        "duration_s": f.duration_s,
                    },
                )
                for f in chunk
                if f.ref not in known
            ]
            s.add_all(rows)
            new += len(rows)
    return new


def _basename(template: str | None) -> str | None:
    if not template:
        return None
    return template.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None


def _asset_stage(e: Event, kernel: str | None, initrds: set[str]) -> _Stage:
    data = e.data or {}
    path = str(data.get("path", ""))
    name = path.rsplit("/", 1)[-1]
    stage = "kernel" if name == kernel else "initrd" if name in initrds else "asset"
    size, took = data.get("bytes", 0), data.get("duration_s", 0.0)
    return (
        stage,
        e.at,
        f"fetched {path} ({size} bytes in {took:.1f} s, HTTP {data.get('status')})",
        {k: data.get(k) for k in ("path", "status", "bytes", "duration_s")},
    )


_Stage = tuple[str, datetime, str, dict[str, Any]]


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    return f"{seconds / 3600:.1f} h ago"


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
    # Each WHERE repeats its partial index's condition (models.FETCH_KINDS_SQL, …).
    fetches: list[Event] = []
    if ips:
        fetches = list(
            s.scalars(
                select(Event)
                .where(
                    text(FETCH_KINDS_SQL),
                    Event.ip.in_(ips),
                    Event.at >= min(lo_all, decisions[0].at - ASSET_SKEW),
                    Event.at <= decisions[-1].at + LOOKBACK,
                )
                .order_by(Event.at, Event.id)
            )
        )
    if macs:
        fetches += s.scalars(
            select(Event).where(
                text(BOOTSTRAP_MAC_SQL),
                Event.mac.in_(macs),
                Event.at >= lo_all,
                Event.at <= decisions[-1].at,
            )
        )
    unique = {e.id: e for e in fetches}.values()
    bootstraps = sorted((e for e in unique if e.kind == "bootstrap"), key=lambda e: (e.at, e.id))
    assets = sorted((e for e in unique if e.kind == "asset"), key=lambda e: (e.at, e.id))
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
    profiles = {
        name: (stuck_after, _basename(kernel), {b for b in map(_basename, initrds or []) if b})
        for name, stuck_after, kernel, initrds in s.execute(
            select(Profile.name, Profile.stuck_after, Profile.kernel, Profile.initrds).where(
                Profile.name.in_(names)
            )
        )
    }

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
        own_limit, kernel, initrds = profiles.get(profile or "", (None, None, set()))
        # An address may pass to another machine later: a fetch is this attempt's only
        # in the LOOKBACK after its decision (and before the next one).
        upper = d.at + LOOKBACK
        if i + 1 < len(decisions):
            upper = min(upper, decisions[i + 1].at)
        if boot_id:
            stages += [
                _asset_stage(e, kernel, initrds)
                for e in assets
                if e.ip == d.ip and d.at - ASSET_SKEW <= e.at < upper
            ]
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
        stuck_after = own_limit or settings.boot_stuck_after
        seen = {st[0] for st in stages}
        expected = [("kernel", kernel is not None), ("initrd", bool(initrds))]
        not_seen = [k for k, wanted in expected if boot_id and wanted and k not in seen]
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
                not_seen=not_seen,
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
        found = s.scalar(select(Machine.id).where(Machine.id == machine_id))
        if not 0 < machine_id <= MAX_ID or found is None:
            raise NotFoundError("machine", machine_id)
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
            if s.scalar(select(Machine.id).where(Machine.id == machine_id)) is None:
                continue
            latest = _attempts(s, settings, machine_id, 1, now)
            if latest and latest[0].status == "stuck":
                out.append(latest[0])
                if len(out) >= limit:
                    break
        return out


def record_stuck(
    db: Database, settings: Settings, now: datetime
) -> tuple[list[schemas.BootAttemptOut], int]:
    """The attempts stuck now, and how many of them got their ``boot.stuck`` event in
    this call: one per attempt (its ref is the boot id), however often this runs and
    on however many brains."""
    stuck = stuck_boots(db, settings, STUCK_MAX, now)
    pending = {f"stuck-{a.boot_id}": a for a in stuck if a.boot_id}
    try:
        with db.write() as s:
            known = set(s.scalars(select(Event.ref).where(Event.ref.in_(list(pending)))))
            rows = [
                Event(
                    kind=STUCK_EVENT,
                    at=now,
                    machine_id=a.machine_id,
                    mac=a.mac,
                    ip=a.ip,
                    ref=ref,
                    message=f"boot {a.boot_id} stuck: {a.summary}",
                    data={
                        "boot_id": a.boot_id,
                        "profile": a.profile,
                        "last_stage": a.last_stage,
                        "last_stage_at": a.last_stage_at.isoformat(),
                        "stuck_after_s": a.stuck_after_s,
                        "not_seen": a.not_seen,
                    },
                )
                for ref, a in pending.items()
                if ref not in known
            ]
            s.add_all(rows)
    except IntegrityError:
        return stuck, 0  # another brain recorded them first
    return stuck, len(rows)
