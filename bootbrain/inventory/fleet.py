"""The dashboard's reads: the fleet at a glance, the machine list's search, and a
machine's latest events. Each is one cheap, indexed query, so the pages stay fast at
100,000 machines (``bench/ui_list.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy import ColumnElement, case, func, or_, select

from bootbrain import identity, schemas
from bootbrain.db import Database
from bootbrain.errors import IdentityError
from bootbrain.models import Boot, Event, Machine, MachineTag, Nic, Profile

from .base import page_of

#: What part of a canonical MAC may look like.
_MAC_PART = re.compile(r"[0-9a-f:]+")


@dataclass(frozen=True)
class Fleet:
    """Machines by state, and the last hour's boots (per-boot records) by outcome."""

    states: dict[str, int]
    boots: dict[str, int] = field(default_factory=dict)

    @property
    def machines(self) -> int:
        return sum(self.states.values())


class MachineSearch(schemas.PageQuery):
    """The machine list's filters: ``text`` matches part of a hostname, serial or MAC."""

    limit: int = Field(default=50, ge=1, le=200)
    text: schemas.Text | None = None
    state: schemas.State | None = None
    tag: schemas.Tag | None = None
    profile: schemas.Name | None = None


def fleet(db: Database, now: datetime) -> Fleet:
    since = now - timedelta(hours=1)
    with db.read() as s:
        states: dict[str, int] = {
            state: n
            for state, n in s.execute(select(Machine.state, func.count()).group_by(Machine.state))
        }
        # expires_at >= created_at: the bound lets the expiry index find the hour's boots.
        outcome = case(
            (Boot.completed_at.is_not(None), "completed"),
            (Boot.expires_at > now, "in progress"),
            else_="lapsed",
        ).label("outcome")
        boots = {"completed": 0, "in progress": 0, "lapsed": 0}
        for key, n in s.execute(
            select(outcome, func.count())
            .where(Boot.expires_at >= since, Boot.created_at >= since)
            .group_by(outcome)
        ):
            boots[key] = n
        boots["conflict"] = (
            s.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.kind == "conflict", Event.at >= since)
            )
            or 0
        )
    return Fleet(states=states, boots=boots)


def search_machines(db: Database, q: MachineSearch) -> tuple[list[Machine], int | None]:
    """One page of machines (by id, after ``q.after``) and the next cursor."""
    stmt = select(Machine)
    if q.state:
        stmt = stmt.where(Machine.state == q.state)
    if q.tag:
        stmt = stmt.where(
            Machine.id.in_(select(MachineTag.machine_id).where(MachineTag.tag == q.tag))
        )
    if q.profile:
        stmt = stmt.where(
            Machine.profile_id.in_(select(Profile.id).where(Profile.name == q.profile))
        )
    if q.text:
        stmt = stmt.where(_text_matches(q.text.strip()))
    with db.read() as s:
        return page_of(s, stmt, Machine.id, q)


def recent_events(db: Database, machine_id: int, limit: int) -> list[Event]:
    """The machine's last ``limit`` events, newest first."""
    with db.read() as s:
        return list(
            s.scalars(
                select(Event)
                .where(Event.machine_id == machine_id)
                .order_by(Event.id.desc())
                .limit(limit)
            )
        )


def profile_names(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(Profile.name).order_by(Profile.name)))


def _escape(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_matches(term: str) -> ColumnElement[bool]:
    """Part of a hostname or serial (any case), or of a MAC. A term that is a whole MAC,
    in any spelling, is taken as one and looked up by the NIC index alone; a term that
    cannot be part of a MAC does not scan the NICs at all."""
    try:
        mac = identity.canonical_mac(term)
    except IdentityError:
        mac = None
    if mac is not None:
        return Machine.id.in_(select(Nic.machine_id).where(Nic.mac == mac))
    like = f"%{_escape(term.lower())}%"
    found = [
        func.lower(Machine.hostname).like(like, escape="\\"),
        func.lower(Machine.serial).like(like, escape="\\"),
    ]
    if _MAC_PART.fullmatch(term.lower()):
        found.append(Machine.id.in_(select(Nic.machine_id).where(Nic.mac.like(like, escape="\\"))))
    return or_(*found)
