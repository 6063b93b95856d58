"""What reinstall-now needs from the inventory: which machines a selector names, what a
BMC last reported (power state, last error) kept on its record, and withdrawing a
one-shot next boot only if it is still the one the reinstall set."""

from __future__ import annotations

from sqlalchemy import select, update

from bootbrain.db import Database
from bootbrain.errors import FieldError
from bootbrain.models import Bmc, Machine, MachineTag, NextBoot, Profile, Rule, utcnow

from .base import add_event, by_name, get_by_id


def select_machines(
    db: Database, hostnames: list[str] | None, tag: str | None, rule: str | None
) -> list[tuple[int, str]]:
    """``(id, name)`` of the machines one selector names, in id order (hostnames: in
    the order given). A rule names the machines its stored selectors match
    (manufacturer, product, tags); its buildarch and platform are facts of a boot,
    not of a machine, so they do not narrow it."""
    with db.read() as s:
        if hostnames:
            out = []
            for h in hostnames:
                m = s.scalar(select(Machine).where(Machine.hostname == h))
                if m is None:
                    raise FieldError("hostnames", f"no machine with hostname {h!r}")
                out.append((m.id, h))
            return out
        stmt = select(Machine.id, Machine.hostname)
        if tag:
            tagged = select(MachineTag.machine_id).where(MachineTag.tag == tag)
            stmt = stmt.where(Machine.id.in_(tagged))
        elif rule:
            r: Rule = by_name(s, Rule, rule, "rule")
            if r.manufacturer:
                stmt = stmt.where(Machine.manufacturer == r.manufacturer)
            if r.product:
                stmt = stmt.where(Machine.product == r.product)
            for t in r.tags:
                stmt = stmt.where(
                    Machine.id.in_(select(MachineTag.machine_id).where(MachineTag.tag == t))
                )
        return [(i, h or f"#{i}") for i, h in s.execute(stmt.order_by(Machine.id))]


def check_profile(db: Database, name: str) -> None:
    """A FieldError on ``profile`` if there is no such profile (before any machine)."""
    with db.read() as s:
        by_name(s, Profile, name, "profile")


def next_boot_ref(db: Database, machine_id: int) -> str | None:
    with db.read() as s:
        return s.scalar(select(NextBoot.ref).where(NextBoot.machine_id == machine_id))


def withdraw_next_boot(db: Database, machine_id: int, ref: str, actor: str, why: str) -> bool:
    """Cancel the machine's one-shot next boot if it is still ``ref`` (not one set, or
    consumed and set again, since); whether it did."""
    with db.write() as s:
        m = get_by_id(s, Machine, machine_id)
        nb = m.next_boot
        if nb is None or nb.ref != ref:
            return False
        profile = nb.profile.name
        m.next_boot = None
        m.updated_at = utcnow()
        s.flush()
        add_event(
            s, "next_boot", f"next boot of machine {m.id} ({profile}) withdrawn: {why}",
            machine_id=m.id, actor=actor, profile=profile, outcome="withdrawn",
        )
        return True


def observe(
    db: Database, machine_id: int, power: str | None = None, error: str | None = None
) -> None:
    """Keep what the BMC last reported: a power state (which clears the last error,
    unless one is given too) or an error. The record's ``updated_at`` is left alone:
    it says when an operator changed the BMC."""
    now = utcnow()
    values: dict[str, object] = {"updated_at": Bmc.updated_at}
    if power is not None:
        values |= {"power_state": power, "power_seen_at": now}
        if error is None:
            values |= {"last_error": None, "last_error_at": None}
    if error is not None:
        values |= {"last_error": error, "last_error_at": now}
    with db.write() as s:
        s.execute(update(Bmc).where(Bmc.machine_id == machine_id).values(values))
