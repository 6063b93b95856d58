"""DHCP lease events from the dnsmasq and Kea hooks: stored once (by the sender's
event id, so a replayed spool is harmless), moving the machine's last-seen address,
and registering unknown machines when discovery is on."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bootbrain import schemas
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.models import Event, Machine, Nic, utcnow
from bootbrain.vocabulary import LEASE_ALIVE

from . import discovery


def record(db: Database, settings: Settings, e: schemas.LeaseEventIn) -> schemas.Accepted:
    """Store the event once (by its id), and move the machine's last-seen address on."""
    at = e.at or utcnow()
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
                    .where(Machine.id == machine_id)
                    .values(last_seen_at=at, last_seen_ip=e.ip, updated_at=Machine.updated_at)
                    .execution_options(synchronize_session=False)
                )
    except IntegrityError:
        return schemas.Accepted(accepted=True, duplicate=True, machine_id=machine_id)
    return schemas.Accepted(accepted=True, machine_id=machine_id)
