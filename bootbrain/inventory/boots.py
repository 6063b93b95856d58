"""Per-boot records: the booted OS's configuration found by its token, and completion.

A boot record is written (by the event writer) for every ``/ipxe`` answer that handed
out a per-boot token; only the token's HMAC is stored. The token opens that boot's
documents until the boot completes, expires or its machine is deleted
(:class:`~bootbrain.errors.BootTokenError` otherwise), and completing it consumes the
one-shot action that boot was for and moves the machine's state on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session, aliased

from bootbrain import security
from bootbrain.boot import types as bt
from bootbrain.boot.groups import applying
from bootbrain.db import ConnectionReader, Database
from bootbrain.errors import BootTokenError
from bootbrain.models import Base, Boot, Machine, MachineTag, NextBoot, Nic, Profile, utcnow

from . import lookup
from .base import by_name, get_by_id
from .machines import nic_for_os, os_config_of, os_nic


@dataclass(frozen=True)
class _DocumentMachine:
    """What a boot's documents need of its machine."""

    id: int
    config: bt.OsConfig
    interface: str
    mac: str | None


def _machine_of_boot(
    s: Session, boot_id: str, machine_id: int | None, gone: str
) -> _DocumentMachine | None:
    """The machine ``boot`` was for (None: an unknown machine's boot). A boot whose
    machine was deleted opens nothing, as when its boots were deleted with it:
    :class:`BootTokenError` with ``gone``.

    Every booted OS asks for its documents, all at once in a storm: the machine's
    row, NICs and tags are read with statements built once, not loaded through the
    ORM with every relationship of the machine."""
    if machine_id is None:
        return None
    conn = s.connection()
    row = conn.execute(_MACHINE_FOR_DOCUMENTS, {"mid": machine_id}).one_or_none()
    if row is None:
        raise BootTokenError(gone, boot_id, machine_id)
    nics = conn.execute(_NICS_OF, {"mid": machine_id}).all()
    tags = conn.execute(_TAGS_OF, {"mid": machine_id}).scalars().all()
    interface, mac = nic_for_os(row.interface, nics)
    config = bt.OsConfig(
        ssh_keys=tuple(row.ssh_keys),
        tags=tuple(tags),
        metadata=dict(row.meta),
        user_data=row.user_data,
        vendor_data=row.vendor_data,
        variables=dict(row.variables),
    )
    return _DocumentMachine(machine_id, config, interface, mac)


_MACHINE_FOR_DOCUMENTS: Final = select(
    Machine.interface,
    Machine.ssh_keys,
    Machine.meta,
    Machine.user_data,
    Machine.vendor_data,
    Machine.variables,
).where(Machine.id == bindparam("mid"))
_NICS_OF: Final = (
    select(Nic.name, Nic.boot, Nic.mac).where(Nic.machine_id == bindparam("mid")).order_by(Nic.id)
)
_TAGS_OF: Final = (
    select(MachineTag.tag).where(MachineTag.machine_id == bindparam("mid")).order_by(MachineTag.tag)
)


@dataclass(frozen=True)
class BootConfig:
    boot_id: str
    machine_id: int | None
    expires_at: datetime
    source: bt.ConfigSource


def config_source(
    s: Session, m: Machine | None, profile: Profile | None, profile_name: str | None
) -> bt.ConfigSource:
    found = None
    if m is not None:
        interface, mac = os_nic(m)
        found = _DocumentMachine(m.id, os_config_of(m), interface, mac)
    return _config_source(s, found, profile, profile_name)


def _config_source(
    s: Session, m: _DocumentMachine | None, profile: Profile | None, profile_name: str | None
) -> bt.ConfigSource:
    # The view /ipxe renders from (lookup.load_machine), so IPXE_BOOT_LINUX_IP_CONFIG
    # and network-config come from the same StaticNet through render.static_values.
    reader = ConnectionReader(s.connection())
    machine = lookup.load_machine(reader, m.id) if m is not None else None
    # The groups as the boot saw them, by the inventory's values (a document request
    # carries no facts).
    groups = applying(lookup.candidate_groups(reader, machine), machine, None)
    return bt.ConfigSource(
        machine=machine,
        groups=groups,
        machine_config=m.config if m is not None else None,
        profile_name=profile_name,
        profile_config=os_config_of(profile) if profile is not None else None,
        interface=m.interface if m is not None else "eth0",
        mac=m.mac if m is not None else None,
    )


def boot_config_for_token(db: Database, secret: bytes, token: str, now: datetime) -> BootConfig:
    """What the booted OS's documents are built from, found by the token's HMAC alone
    (never by a MAC or UUID the request claims). Raises :class:`BootTokenError` for an
    unknown, expired or completed (revoked) boot."""
    th = security.token_hash(secret, token)
    with db.read() as s:
        boot = s.connection().execute(_BOOT_BY_TOKEN, {"th": th}).one_or_none()
        if boot is None:
            raise BootTokenError("unknown boot token")
        if boot.completed_at is not None:
            raise BootTokenError(
                "the boot has completed: its token is revoked", boot.id, boot.machine_id
            )
        if boot.expires_at <= now:
            raise BootTokenError("boot token expired", boot.id, boot.machine_id)
        m = _machine_of_boot(s, boot.id, boot.machine_id, "the boot's machine was deleted")
        profile = None
        if boot.profile_name is not None:
            profile = s.scalar(select(Profile).where(Profile.name == boot.profile_name))
        return BootConfig(
            boot.id,
            boot.machine_id,
            boot.expires_at,
            _config_source(s, m, profile, boot.profile_name),
        )


def preview_config_source(
    db: Database, machine_id: int, profile_name: str | None
) -> bt.ConfigSource:
    """The documents' input for a machine booting ``profile_name`` (None: no profile)."""
    with db.read() as s:
        m = get_by_id(s, Machine, machine_id)
        profile = by_name(s, Profile, profile_name, "profile") if profile_name else None
        return config_source(s, m, profile, profile_name)


def complete_boot(
    db: Database, secret: bytes, token: str, report: dict[str, str], source_ip: str | None
) -> str:
    """The booted OS says it is up: consume the one-shot action, move the state on.
    Returns the boot's id.

    A refusal raises :class:`BootTokenError` (with the boot and machine when known)
    and changes nothing; the caller records it (:func:`bootbrain.machine.documents.complete`),
    outside this transaction, which a refusal rolls back.

    A boot storm ends in thousands of these: the columns it decides by are read with
    two statements built once, not by loading the machine with every relationship.
    The machine's row is locked (PostgreSQL) before its state is read, so a change
    made meanwhile through the API is not lost; its version moves on, as any update
    of the machine moves it."""
    now = utcnow()
    th = security.token_hash(secret, token)
    with db.write() as s:
        conn = s.connection()
        boot = conn.execute(_BOOT_BY_TOKEN, {"th": th}).one_or_none()
        if boot is None:
            raise BootTokenError("unknown boot token")
        machine = None
        if boot.machine_id is not None:
            machine = conn.execute(_MACHINE_FOR_COMPLETION, {"id": boot.machine_id}).one_or_none()
            if machine is None:
                raise BootTokenError("unknown boot token", boot.id, boot.machine_id)
        if boot.completed_at is not None:
            raise BootTokenError("this boot has already completed", boot.id, boot.machine_id)
        if boot.expires_at <= now:
            raise BootTokenError("boot token expired", boot.id, boot.machine_id)
        conn.execute(_COMPLETE_BOOT, {"boot_id": boot.id, "now": now})
        data: dict[str, Any] = {
            "boot_id": boot.id,
            "profile": boot.profile_name,
            "step": boot.step,
            "report": report,
        }
        if machine is not None:
            new_state = None
            has_action = machine.nb_profile_name is not None
            if (
                boot.step == "action"
                and has_action
                and machine.nb_profile_name == boot.profile_name
                and machine.nb_ref == boot.action_ref
            ):
                new_state = machine.nb_complete_state or machine.nb_profile_complete_state
                conn.execute(_DELETE_ACTION, {"mid": boot.machine_id})
                data["consumed_action"] = boot.profile_name
            elif boot.step == "action" and has_action:
                # A token from an earlier setting of the action: the boot completed,
                # the action set since then has not.
                data["action_not_consumed"] = "the boot was for an earlier one-shot action"
            elif machine.profile_name is not None and machine.profile_name == boot.profile_name:
                new_state = machine.profile_complete_state
            state = machine.state
            if new_state and new_state != machine.state:
                data["state"] = [machine.state, new_state]
                state = new_state
            conn.execute(
                _MACHINE_COMPLETED,
                {"mid": boot.machine_id, "now": now, "ip": source_ip, "state": state},
            )
        conn.execute(
            _EVENT,
            {
                "at": now,
                "kind": "completion",
                "message": f"boot {boot.id} ({boot.profile_name}) completed",
                "machine_id": boot.machine_id,
                "mac": None,
                "ip": source_ip,
                "data": data,
            },
        )
        return str(boot.id)


_BOOT_BY_TOKEN: Final = select(
    Boot.id,
    Boot.machine_id,
    Boot.completed_at,
    Boot.expires_at,
    Boot.profile_name,
    Boot.step,
    Boot.action_ref,
).where(Boot.token_hash == bindparam("th"))

_machine_profile = aliased(Profile)
_action_profile = aliased(Profile)
#: The machine's state, its profile, and its one-shot action with that action's profile.
_MACHINE_FOR_COMPLETION: Final = (
    select(
        Machine.state,
        _machine_profile.name.label("profile_name"),
        _machine_profile.complete_state.label("profile_complete_state"),
        NextBoot.ref.label("nb_ref"),
        NextBoot.complete_state.label("nb_complete_state"),
        _action_profile.name.label("nb_profile_name"),
        _action_profile.complete_state.label("nb_profile_complete_state"),
    )
    .select_from(Machine)
    .outerjoin(_machine_profile, _machine_profile.id == Machine.profile_id)
    .outerjoin(NextBoot, NextBoot.machine_id == Machine.id)
    .outerjoin(_action_profile, _action_profile.id == NextBoot.profile_id)
    .where(Machine.id == bindparam("id"))
    .with_for_update(of=Machine)
)

_boot = Base.metadata.tables["boot"]
_machine = Base.metadata.tables["machine"]
_COMPLETE_BOOT: Final = (
    update(_boot).where(_boot.c.id == bindparam("boot_id")).values(completed_at=bindparam("now"))
)
_DELETE_ACTION: Final = delete(NextBoot).where(NextBoot.machine_id == bindparam("mid"))
#: As the ORM updates a machine: ``updated_at`` and ``version`` move on.
_MACHINE_COMPLETED: Final = (
    update(_machine)
    .where(_machine.c.id == bindparam("mid"))
    .values(
        last_seen_at=bindparam("now"),
        last_seen_ip=bindparam("ip"),
        state=bindparam("state"),
        updated_at=bindparam("now"),
        version=_machine.c.version + 1,
    )
)
_EVENT: Final = insert(Base.metadata.tables["event"])
