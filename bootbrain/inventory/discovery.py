"""Registering unknown machines as ``discovered``, capped in count and in rate.

Both limits are kept in the database, so several brains behind one inventory share
them. Discovery is off by default; when on, it is the only write an unknown
machine's boot makes synchronously.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bootbrain import identity
from bootbrain.boot.types import Facts, MachineView
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.metrics import metrics
from bootbrain.models import DiscoveryCounter, Event, Machine, Nic

from . import lookup

log = logging.getLogger(__name__)


def _take_slot(s: Session, settings: Settings) -> bool:
    discovered = (
        s.scalar(select(func.count()).select_from(Machine).where(Machine.state == "discovered"))
        or 0
    )
    if discovered >= settings.discovery_max:
        return False
    minute = int(time.time() // 60)
    row = s.get(DiscoveryCounter, minute)
    if row is None:
        s.add(DiscoveryCounter(minute=minute, count=1))
        s.flush()
        return settings.discovery_per_minute >= 1
    if row.count >= settings.discovery_per_minute:
        return False
    s.execute(
        update(DiscoveryCounter)
        .where(DiscoveryCounter.minute == minute)
        .values(count=DiscoveryCounter.count + 1)
    )
    return True


def register(
    db: Database,
    settings: Settings,
    *,
    mac: str | None,
    uuid: str | None = None,
    serial: str | None = None,
    board_serial: str | None = None,
    manufacturer: str | None = None,
    product: str | None = None,
    asset: str | None = None,
    source: str,
) -> int | None:
    """Create a ``discovered`` machine; None when capped or when nothing identifies it."""
    if mac is None and identity.uuid_key(uuid) is None:
        return None
    try:
        with db.write() as s:
            if not _take_slot(s, settings):
                s.add(
                    Event(
                        kind="discovery_capped",
                        mac=mac,
                        message="unknown machine not registered: discovery cap reached",
                        data={"source": source},
                    )
                )
                metrics().discovery_capped.inc()
                return None
            m = Machine(
                state="discovered",
                uuid=uuid,
                uuid_key=identity.uuid_key(uuid),
                serial=serial,
                serial_key=identity.serial_key(serial),
                board_serial=board_serial,
                board_serial_key=identity.serial_key(board_serial),
                manufacturer=manufacturer,
                product=product,
                asset_tag=asset,
            )
            if mac:
                m.nics = [Nic(mac=mac, boot=True)]
            s.add(m)
            s.flush()
            s.add(
                Event(
                    kind="discovery",
                    machine_id=m.id,
                    mac=mac,
                    message=f"unknown machine registered as discovered (from {source})",
                    data={"source": source},
                )
            )
            return m.id
    except IntegrityError:
        # Another worker registered it first: that machine is the answer.
        with db.read() as s:
            if mac:
                return s.scalar(select(Nic.machine_id).where(Nic.mac == mac))
            return s.scalar(select(Machine.id).where(Machine.uuid_key == uuid))


def register_from_boot(db: Database, settings: Settings, facts: Facts) -> MachineView | None:
    machine_id = register(
        db,
        settings,
        mac=facts.mac,
        uuid=facts.uuid,
        serial=facts.serial,
        board_serial=facts.board_serial,
        manufacturer=facts.manufacturer,
        product=facts.product,
        asset=facts.asset,
        source="boot",
    )
    if machine_id is None:
        return None
    return lookup.load_machine(db.boot_reader, machine_id)
