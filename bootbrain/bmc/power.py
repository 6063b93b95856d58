"""One power operation on a machine's BMC: read the record (and its password) from the
inventory, run the driver, and record the outcome as an event (no credential in it) and
as the BMC's last observed power state or error."""

from __future__ import annotations

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.errors import BmcError
from bootbrain.inventory import bmc as records
from bootbrain.inventory import reinstalls as observed

from . import driver_for
from .driver import BmcTarget, cycle


def target_of(db: Database, secret: bytes, machine_id: int) -> BmcTarget:
    c = records.bmc_credentials(db, secret, machine_id)
    r = c.record
    return BmcTarget(
        machine=c.machine,
        kind="redfish" if r.kind == "redfish" else "ipmi",
        address=r.address,
        port=r.port,
        username=r.username,
        password=c.password,
        system_id=r.system_id,
        verify_tls=r.verify_tls,
    )


def status(db: Database, secret: bytes, machine_id: int) -> schemas.PowerOut:
    t = target_of(db, secret, machine_id)
    try:
        state = driver_for(t).power_state()
    except BmcError as e:
        observed.observe(db, machine_id, error=e.message)
        raise
    observed.observe(db, machine_id, power=state)
    return schemas.PowerOut(machine_id=machine_id, bmc=t.label, power=state)


def act(db: Database, secret: bytes, machine_id: int, action: str, actor: str) -> schemas.PowerOut:
    t = target_of(db, secret, machine_id)
    d = driver_for(t)
    out = schemas.PowerOut(machine_id=machine_id, bmc=t.label, power="off", action=action)
    try:
        if action == "on":
            out.power = d.on()
        elif action == "off":
            out.power = d.off()
        elif action == "cycle":
            out.power = cycle(d)
        else:
            got = d.network_boot_once()
            out.boot_device, out.boot_confirmed = got.device, got.confirmed
            out.power = d.power_state()
    except BmcError as e:
        observed.observe(db, machine_id, error=e.message)
        records.record_event(
            db, "bmc.error", str(e), machine_id, action=action, bmc=t.label, actor=actor
        )
        raise
    observed.observe(db, machine_id, power=out.power)
    records.record_event(
        db, "bmc.power", f"{action} on {t.machine} by {actor}: {out.power}", machine_id,
        action=action, bmc=t.label, power=out.power, actor=actor,
    )
    return out
