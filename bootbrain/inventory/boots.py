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
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bootbrain import security
from bootbrain.boot import types as bt
from bootbrain.boot.groups import applying
from bootbrain.db import ConnectionReader, Database
from bootbrain.errors import BootTokenError
from bootbrain.models import Boot, Machine, Profile, utcnow

from . import lookup
from .base import add_event, by_name, get_by_id
from .machines import os_config_of, os_nic


def _machine_of_boot(s: Session, boot: Boot, gone: str) -> Machine | None:
    """The machine ``boot`` was for (None: an unknown machine's boot). A boot whose
    machine was deleted opens nothing, as when its boots were deleted with it:
    :class:`BootTokenError` with ``gone``."""
    if boot.machine_id is None:
        return None
    m = s.get(Machine, boot.machine_id)
    if m is None:
        raise BootTokenError(gone, boot.id, boot.machine_id)
    return m


@dataclass(frozen=True)
class BootConfig:
    boot_id: str
    machine_id: int | None
    expires_at: datetime
    source: bt.ConfigSource


def config_source(
    s: Session, m: Machine | None, profile: Profile | None, profile_name: str | None
) -> bt.ConfigSource:
    interface, mac = os_nic(m) if m is not None else ("eth0", None)
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
        machine_config=os_config_of(m) if m is not None else None,
        profile_name=profile_name,
        profile_config=os_config_of(profile) if profile is not None else None,
        interface=interface,
        mac=mac,
    )


def boot_config_for_token(db: Database, secret: bytes, token: str, now: datetime) -> BootConfig:
    """What the booted OS's documents are built from, found by the token's HMAC alone
    (never by a MAC or UUID the request claims). Raises :class:`BootTokenError` for an
    unknown, expired or completed (revoked) boot."""
    th = security.token_hash(secret, token)
    with db.read() as s:
        boot = s.scalar(select(Boot).where(Boot.token_hash == th))
        if boot is None:
            raise BootTokenError("unknown boot token")
        if boot.completed_at is not None:
            raise BootTokenError(
                "the boot has completed: its token is revoked", boot.id, boot.machine_id
            )
        if boot.expires_at <= now:
            raise BootTokenError("boot token expired", boot.id, boot.machine_id)
        m = _machine_of_boot(s, boot, "the boot's machine was deleted")
        profile = None
        if boot.profile_name is not None:
            profile = s.scalar(select(Profile).where(Profile.name == boot.profile_name))
        return BootConfig(
            boot.id,
            boot.machine_id,
            boot.expires_at,
            config_source(s, m, profile, boot.profile_name),
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
) -> Boot:
    """The booted OS says it is up: consume the one-shot action, move the state on.

    A refusal raises :class:`BootTokenError` (with the boot and machine when known)
    and changes nothing; the caller records it (:func:`bootbrain.machine.documents.complete`),
    outside this transaction, which a refusal rolls back."""
    now = utcnow()
    th = security.token_hash(secret, token)
    with db.write() as s:
        boot = s.scalar(select(Boot).where(Boot.token_hash == th))
        if boot is None:
            raise BootTokenError("unknown boot token")
        m = _machine_of_boot(s, boot, "unknown boot token")
        if boot.completed_at is not None:
            raise BootTokenError("this boot has already completed", boot.id, boot.machine_id)
        if boot.expires_at <= now:
            raise BootTokenError("boot token expired", boot.id, boot.machine_id)
        boot.completed_at = now
        data: dict[str, Any] = {
            "boot_id": boot.id,
            "profile": boot.profile_name,
            "step": boot.step,
            "report": report,
        }
        if m is not None:
            new_state = None
            nb = m.next_boot
            if (
                boot.step == "action"
                and nb is not None
                and nb.profile.name == boot.profile_name
                and nb.ref == boot.action_ref
            ):
                new_state = nb.complete_state or nb.profile.complete_state
                m.next_boot = None
                data["consumed_action"] = boot.profile_name
            elif boot.step == "action" and nb is not None:
                # A token from an earlier setting of the action: the boot completed,
                # the action set since then has not.
                data["action_not_consumed"] = "the boot was for an earlier one-shot action"
            elif m.profile is not None and m.profile.name == boot.profile_name:
                new_state = m.profile.complete_state
            if new_state and new_state != m.state:
                data["state"] = [m.state, new_state]
                m.state = new_state
            m.last_seen_at = now
            m.last_seen_ip = source_ip
        add_event(
            s,
            "completion",
            f"boot {boot.id} ({boot.profile_name}) completed",
            machine_id=boot.machine_id,
            ip=source_ip,
            **data,
        )
        return boot
