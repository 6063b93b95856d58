"""DHCP lease events from the dnsmasq and Kea hooks: stored once (by the sender's
event id, so a replayed spool is harmless), moving the machine's last-seen address,
and registering unknown machines when discovery is on."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from bootbrain import schemas
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.errors import FieldError
from bootbrain.models import Event, Machine, Nic, utcnow
from bootbrain.vocabulary import LEASE_ALIVE

from . import discovery

#: How far ahead of our clock a sender's ``at`` may be (clock skew).
MAX_AHEAD = timedelta(minutes=5)
#: How old an event may be: well past any outage a hook's spool rides out.
MAX_AGE = timedelta(days=30)


def _checked_at(at: datetime | None) -> datetime:
    """The event's time, if it is plausible; a wrong clock must not move last-seen."""
    now = utcnow()
    if at is None:
        return now
    if at > now + MAX_AHEAD:
        raise FieldError("at", f"{at.isoformat()} is in the future; check the sender's clock")
    if at < now - MAX_AGE:
        raise FieldError("at", f"{at.isoformat()} is more than {MAX_AGE.days} days old")
    return at


def record(db: Database, settings: Settings, e: schemas.LeaseEventIn) -> schemas.Accepted:
    """Store the event once (by its id), and move the machine's last-seen address on
    (forward only: a spooled event replayed late does not undo a newer sighting)."""
    at = _checked_at(e.at)
    with db.read() as s:
        if s.scalar(select(Event.id).where(Event.ref == e.id)) is not None:
            return schemas.Accepted(accepted=True, duplicate=True)
        machine_id = s.scalar(select(Nic.machine_id).where(Nic.mac == e.mac))
    if machine_id is None and e.action in LEASE_ALIVE and settings.discovery:
        machine_id = discovery.register(db, settings, mac=e.mac, source=f"{e.source} lease")
    data = {
        "source": e.source,
        "action": e.action,
        "hostname": e.hostname,
        "user_class": e.user_class,
        "arch": e.arch,
    }
    try:
        with db.write() as s:
            s.add(
                Event(
                    kind="lease",
                    at=at,
                    machine_id=machine_id,
                    mac=e.mac,
                    ip=e.ip,
                    ref=e.id,
                    message=f"{e.source} {e.action} {e.ip} for {e.mac}",
                    data={k: v for k, v in data.items() if v is not None},
                )
            )
            if machine_id is not None and e.action in LEASE_ALIVE:
                s.execute(
                    update(Machine)
                    .where(
                        Machine.id == machine_id,
                        or_(Machine.last_seen_at.is_(None), Machine.last_seen_at <= at),
                    )
                    .values(last_seen_at=at, last_seen_ip=e.ip, updated_at=Machine.updated_at)
                    .execution_options(synchronize_session=False)
                )
    except IntegrityError:
        return schemas.Accepted(accepted=True, duplicate=True, machine_id=machine_id)
    return schemas.Accepted(accepted=True, machine_id=machine_id)
