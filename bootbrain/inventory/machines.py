"""Machines: create, read, change, delete, their one-shot next boot, and the DHCP
reservations they hand out.

Every write validates as the API does (the models in :mod:`bootbrain.schemas`, then
the checks that need the database: an address inside its network, a key no other
machine holds — :class:`~bootbrain.errors.ConflictError` names the holder), owns its
transaction, and records a ``change`` event in it. The DHCP servers follow by
themselves: the database's triggers raise the reservation version with the change,
and each boot host's reconciler (:mod:`bootbrain.integrations.reconcile`) applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bootbrain import identity, schemas, security
from bootbrain.boot import types as bt
from bootbrain.db import Database
from bootbrain.errors import ConflictError, FieldError, IdentityError, NotFoundError
from bootbrain.models import Boot, Machine, MachineTag, Network, NextBoot, Nic, Profile, utcnow

from .base import add_event, by_name, check_version, flush_or_conflict, get_by_id, page_of
from .checks import check_documents


@dataclass(frozen=True)
class Reservation:
    """A fixed address for one machine's booting NIC, as the inventory hands it out
    (the DHCP integrations re-check it before it reaches a server's configuration)."""

    machine_id: int
    mac: str
    ip: str
    hostname: str | None


def reservation_of(m: Machine) -> Reservation | None:
    if not m.address or not m.nics:
        return None
    nic = next((n for n in m.nics if n.boot), m.nics[0])
    return Reservation(machine_id=m.id, mac=nic.mac, ip=m.address, hostname=m.hostname)


def _machine_conflict(s: Session, m: Machine) -> Callable[[IntegrityError], Exception]:
    """Translate a unique-constraint failure into which key collided and who holds it."""

    def translate(e: IntegrityError) -> Exception:
        text = str(e.orig)
        with s.no_autoflush:
            pass
        if "nic" in text and "mac" in text:
            return ConflictError("nics", "a MAC address of this machine belongs to another machine")
        if "hostname" in text:
            return ConflictError("hostname", f"hostname {m.hostname} is taken")
        if "uuid" in text:
            return ConflictError("uuid", f"uuid {m.uuid} belongs to another machine")
        if "address" in text:
            return ConflictError("address", f"address {m.address} is in use")
        return ConflictError("machine", "conflicts with an existing machine")

    return translate


def _precheck_machine(s: Session, m: Machine, macs: Sequence[str]) -> None:
    """Find collisions before the database does, to name the machine that holds the key."""
    others = Machine.id != m.id if m.id is not None else True
    if macs:
        hit = s.execute(
            select(Nic.mac, Nic.machine_id).where(
                Nic.mac.in_(macs), Nic.machine_id != m.id if m.id is not None else True
            )
        ).first()
        if hit:
            raise ConflictError(
                "nics", f"MAC {hit.mac} belongs to machine {hit.machine_id}", holder=hit.machine_id
            )
    for field, col, value in (
        ("hostname", Machine.hostname, m.hostname),
        ("uuid", Machine.uuid_key, m.uuid_key),
    ):
        if value is None:
            continue
        holder = s.scalar(select(Machine.id).where(col == value, others))
        if holder is not None:
            raise ConflictError(
                field, f"{field} {value} belongs to machine {holder}", holder=holder
            )
    if m.address is not None and m.network is not None:
        holder = s.scalar(
            select(Machine.id).where(
                Machine.network_id == m.network.id, Machine.address == m.address, others
            )
        )
        if holder is not None:
            raise ConflictError(
                "address", f"address {m.address} is in use by machine {holder}", holder=holder
            )


def _apply_machine(s: Session, m: Machine, fields: dict[str, Any]) -> None:
    plain = (
        "hostname",
        "uuid",
        "serial",
        "board_serial",
        "manufacturer",
        "product",
        "asset_tag",
        "state",
        "address",
        "interface",
        "notes",
    )
    for name in plain:
        if name in fields:
            setattr(m, name, fields[name])
    m.uuid_key = identity.uuid_key(m.uuid)
    m.serial_key = identity.serial_key(m.serial)
    m.board_serial_key = identity.serial_key(m.board_serial)
    if "profile" in fields:
        m.profile = by_name(s, Profile, fields["profile"], "profile") if fields["profile"] else None
    if "network" in fields:
        m.network = by_name(s, Network, fields["network"], "network") if fields["network"] else None
    if m.address is not None and m.network is None:
        raise FieldError("network", "a static address needs the network it belongs to")
    if m.network is not None and m.address is not None:
        try:
            identity.check_address_in(m.address, m.network.cidr)
        except IdentityError as e:
            raise FieldError("address", str(e)) from None
        if m.address == m.network.gateway:
            raise FieldError("address", f"{m.address} is the network's gateway")
    if m.network is not None and m.address is None:
        raise FieldError("address", "a machine on a static network needs an address")
    if m.address is not None and m.interface is None:
        m.interface = "eth0"
    if "tags" in fields:
        wanted = list(dict.fromkeys(fields["tags"]))
        keep = {t.tag: t for t in m.tags}
        m.tags = [keep.get(t) or MachineTag(tag=t) for t in wanted]
    if "nics" in fields:
        nics = fields["nics"]
        if nics and not any(n["boot"] for n in nics):
            nics = [dict(nics[0], boot=True), *nics[1:]]
        existing = {n.mac: n for n in m.nics}
        new: list[Nic] = []
        for n in nics:
            nic = existing.get(n["mac"]) or Nic(mac=n["mac"])
            nic.name, nic.boot = n.get("name"), bool(n.get("boot"))
            new.append(nic)
        m.nics = new
    apply_os_config(m, fields)
    affects_documents = {"user_data", "vendor_data", "metadata", "ssh_keys", "tags", "profile"}
    if fields.keys() & affects_documents:
        # The templates this machine's OS gets with its assigned profile, rendered once.
        context = os_config_of(m.profile) if m.profile else bt.OsConfig()
        check_documents(os_config_of(m), context)


def apply_os_config(obj: Machine | Profile, fields: dict[str, Any]) -> None:
    """The booted OS's configuration: API names onto columns (``metadata`` is ``meta``)."""
    if "ssh_keys" in fields:
        obj.ssh_keys = list(fields["ssh_keys"])
    if "metadata" in fields:
        obj.meta = dict(fields["metadata"])
    for name in ("user_data", "vendor_data"):
        if name in fields:
            setattr(obj, name, fields[name])
    if isinstance(obj, Profile) and "tags" in fields:
        obj.tags = list(dict.fromkeys(fields["tags"]))
    if "variables" in fields:
        obj.variables = dict(sorted(fields["variables"].items()))
    if isinstance(obj, Machine) and "labels" in fields:
        obj.labels = sorted(set(fields["labels"]))


def os_config_of(obj: Machine | Profile) -> bt.OsConfig:
    return bt.OsConfig(
        ssh_keys=tuple(obj.ssh_keys),
        tags=tuple(obj.tag_names if isinstance(obj, Machine) else obj.tags),
        metadata=dict(obj.meta),
        user_data=obj.user_data,
        vendor_data=obj.vendor_data,
        ignition=obj.ignition if isinstance(obj, Profile) else None,
        variables=dict(obj.variables),
    )


def os_nic(m: Machine) -> tuple[str, str | None]:
    """(interface, MAC) the booted OS configures: the assignment's interface name
    (default eth0) on the NIC of that name, else the boot NIC, else the first NIC."""
    return nic_for_os(m.interface, m.nics)


def nic_for_os(interface: str | None, nics: Sequence[Any]) -> tuple[str, str | None]:
    """:func:`os_nic` from the machine's ``interface`` and its NICs in id order (rows or
    objects with ``name``, ``boot`` and ``mac``)."""
    name = interface or "eth0"
    nic = (
        next((n for n in nics if n.name == name), None)
        or next((n for n in nics if n.boot), None)
        or (nics[0] if nics else None)
    )
    return name, nic.mac if nic else None


def add_machine(s: Session, data: schemas.MachineCreate, actor: str) -> Machine:
    """Create within the caller's transaction (imports); see :func:`create_machine`."""
    m = Machine(state=data.state)
    s.add(m)
    with s.no_autoflush:
        _apply_machine(s, m, data.model_dump())
        _precheck_machine(s, m, [n.mac for n in data.nics])
    flush_or_conflict(s, _machine_conflict(s, m))
    s.refresh(m)  # load the relationships the response shows, inside the session
    add_event(
        s,
        "change",
        f"machine {m.id} created by {actor}",
        machine_id=m.id,
        actor=actor,
        fields=sorted(data.model_fields_set),
    )
    return m


def create_machine(db: Database, data: schemas.MachineCreate, actor: str) -> Machine:
    with db.write() as s:
        m = add_machine(s, data, actor)
    return m


def get_machine(db: Database, machine_id: int) -> Machine:
    with db.read() as s:
        return get_by_id(s, Machine, machine_id)


def list_machines(db: Database, q: schemas.MachineQuery) -> tuple[list[Machine], int | None]:
    stmt = select(Machine)
    if q.mac:
        stmt = stmt.where(Machine.id.in_(select(Nic.machine_id).where(Nic.mac == q.mac)))
    if q.uuid:
        stmt = stmt.where(Machine.uuid == q.uuid)
    if q.serial:
        stmt = stmt.where(or_(Machine.serial == q.serial, Machine.board_serial == q.serial))
    if q.hostname:
        stmt = stmt.where(Machine.hostname == q.hostname)
    if q.tag:
        stmt = stmt.where(
            Machine.id.in_(select(MachineTag.machine_id).where(MachineTag.tag == q.tag))
        )
    if q.state:
        stmt = stmt.where(Machine.state == q.state)
    if q.profile:
        stmt = stmt.join(Profile, Machine.profile_id == Profile.id).where(Profile.name == q.profile)
    with db.read() as s:
        return page_of(s, stmt, Machine.id, q)


def update_machine(
    db: Database, machine_id: int, data: schemas.MachineUpdate, if_match: int | None, actor: str
) -> Machine:
    fields = data.model_dump(exclude_unset=True)
    if data.nics is not None:  # each NIC whole, defaults included
        fields["nics"] = [n.model_dump() for n in data.nics]
    with db.write() as s:
        m = get_by_id(s, Machine, machine_id)
        check_version("machine", m.version, if_match)
        with s.no_autoflush:
            _apply_machine(s, m, fields)
            _precheck_machine(s, m, [n["mac"] for n in fields.get("nics", [])])
        flush_or_conflict(s, _machine_conflict(s, m))
        s.refresh(m)
        add_event(
            s,
            "change",
            f"machine {m.id} changed by {actor}",
            machine_id=m.id,
            actor=actor,
            fields=sorted(fields),
        )
    return m


def delete_machine(db: Database, machine_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        m = get_by_id(s, Machine, machine_id)
        check_version("machine", m.version, if_match)
        s.execute(delete(Boot).where(Boot.machine_id == machine_id))
        s.delete(m)
        s.flush()
        add_event(
            s,
            "change",
            f"machine {machine_id} deleted by {actor}",
            machine_id=machine_id,
            actor=actor,
        )


def set_next_boot(
    db: Database, machine_id: int, data: schemas.NextBootIn, default_ttl: int, actor: str
) -> Machine:
    with db.write() as s:
        m = get_by_id(s, Machine, machine_id)
        profile = by_name(s, Profile, data.profile, "profile")
        expires = utcnow() + timedelta(seconds=data.expires_in or default_ttl)
        # A new ref each time: a token issued for an earlier setting (the same profile
        # or not) does not consume this one.
        ref = security.new_action_ref()
        if m.next_boot is None:
            m.next_boot = NextBoot(
                profile=profile, expires_at=expires, complete_state=data.complete_state, ref=ref
            )
        else:
            m.next_boot.profile = profile
            m.next_boot.expires_at = expires
            m.next_boot.complete_state = data.complete_state
            m.next_boot.ref = ref
        m.updated_at = utcnow()  # bumps the version: the machine's ETag changes
        s.flush()
        add_event(
            s,
            "next_boot",
            f"next boot of machine {m.id} set to {profile.name} by {actor}",
            machine_id=m.id,
            actor=actor,
            profile=profile.name,
            expires_at=expires.isoformat(),
        )
        return m


def cancel_next_boot(db: Database, machine_id: int, actor: str) -> None:
    with db.write() as s:
        m = get_by_id(s, Machine, machine_id)
        if m.next_boot is None:
            raise NotFoundError("next boot of machine", machine_id)
        profile = m.next_boot.profile.name
        m.next_boot = None
        m.updated_at = utcnow()
        s.flush()
        add_event(
            s,
            "next_boot",
            f"next boot of machine {m.id} ({profile}) cancelled by {actor}",
            machine_id=m.id,
            actor=actor,
            profile=profile,
            outcome="cancelled",
        )


def all_reservations(db: Database) -> list[Reservation]:
    with db.read() as s:
        rows = s.scalars(select(Machine).where(Machine.address.is_not(None)).order_by(Machine.id))
        return [r for m in rows if (r := reservation_of(m)) is not None]
