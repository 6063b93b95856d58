"""The boot decision's reads: identity → the frozen views :mod:`bootbrain.boot` decides on.

This is the ``/ipxe`` hot path, so it is SQLAlchemy Core on one connection, not the
ORM: one indexed query resolves every identity key the machine sent (so a conflict
between two keys is seen, never guessed away), one query loads the machine with its
profile, network, next-boot action, tags and MACs. Rules, the default profile and
menu items are read only when the decision can need them. Compiled statements are
cached by SQLAlchemy, so a boot costs two round trips and no ORM bookkeeping.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from bootbrain import identity
from bootbrain.boot import types as bt
from bootbrain.models import Machine, MachineTag, Network, NextBoot, Nic, Profile, Rule

_PROFILE_COLUMNS = (
    "name",
    "kind",
    "kernel",
    "initrds",
    "cmdline",
    "script",
    "chain_url",
    "local_method",
    "menu",
    "complete_state",
)


@dataclass(frozen=True)
class Lookup:
    machine: bt.MachineView | None
    rules: tuple[bt.RuleView, ...]
    default: bt.ProfileView | None
    conflict: tuple[int, ...] = ()
    matched_by: str | None = None


_KEYS = ("uuid", "mac", "serial", "board_serial")


@functools.cache
def _identity_query(present: tuple[str, ...]) -> Any:
    """One statement per combination of keys sent, built once: SQLAlchemy's compiled
    cache then skips even the cache-key computation on the hot path."""
    branches: list[Any] = []
    if "uuid" in present:
        branches.append(
            select(literal("uuid").label("key"), Machine.id.label("id")).where(
                Machine.uuid_key == bindparam("uuid")
            )
        )
    if "mac" in present:
        branches.append(
            select(literal("mac").label("key"), Nic.machine_id.label("id")).where(
                Nic.mac == bindparam("mac")
            )
        )
    for key, column in (("serial", Machine.serial_key), ("board_serial", Machine.board_serial_key)):
        if key in present:
            # Two hits mean a shared (chassis) serial, which identifies nothing.
            hits = (
                select(Machine.id)
                .where(Machine.manufacturer == bindparam("manufacturer"), column == bindparam(key))
                .limit(2)
                .subquery()
            )
            branches.append(select(literal(key).label("key"), hits.c.id.label("id")))
    return branches[0] if len(branches) == 1 else union_all(*branches)


def _identity_params(facts: bt.Facts) -> dict[str, str]:
    params: dict[str, str] = {}
    uuid = identity.uuid_key(facts.uuid)
    if uuid:
        params["uuid"] = uuid
    if facts.mac:
        params["mac"] = facts.mac
    if facts.manufacturer:
        for key in ("serial", "board_serial"):
            value = identity.serial_key(getattr(facts, key))
            if value:
                params[key] = value
                params["manufacturer"] = facts.manufacturer
    return params


def resolve(conn: Connection, facts: bt.Facts) -> tuple[dict[str, int], tuple[int, ...]]:
    """Which machine each identity key names, and the distinct machines named."""
    params = _identity_params(facts)
    present = tuple(k for k in _KEYS if k in params)
    if not present:
        return {}, ()
    by_key: dict[str, list[int]] = {}
    for key, machine_id in conn.execute(_identity_query(present), params):
        by_key.setdefault(key, []).append(machine_id)
    found = {k: ids[0] for k, ids in by_key.items() if len(ids) == 1}
    return found, tuple(sorted(set(found.values())))


_assigned = aliased(Profile, name="assigned")
_action = aliased(Profile, name="action")


def _profile_cols(alias: Any, prefix: str) -> list[Any]:
    return [getattr(alias, c).label(f"{prefix}{c}") for c in _PROFILE_COLUMNS]


def _joined(column: Any, dialect: str) -> Any:
    """Space-joined values (tags and MACs hold no spaces), as each database spells it.
    A literal separator keeps the statement fully cached (no post-compile parameter)."""
    agg = func.string_agg if dialect == "postgresql" else func.group_concat
    return agg(column, literal_column("' '"))


@functools.cache
def _machine_query(dialect: str) -> Any:
    return (
        select(
            Machine.id,
            Machine.hostname,
            Machine.state,
            Machine.uuid,
            Machine.serial,
            Machine.manufacturer,
            Machine.product,
            Machine.asset_tag,
            Machine.address,
            Machine.interface,
            Network.cidr,
            Network.gateway,
            Network.dns,
            Network.domain,
            NextBoot.expires_at.label("nb_expires_at"),
            select(_joined(MachineTag.tag, dialect))
            .where(MachineTag.machine_id == Machine.id)
            .scalar_subquery()
            .label("tag_list"),
            select(_joined(Nic.mac, dialect))
            .where(Nic.machine_id == Machine.id)
            .scalar_subquery()
            .label("mac_list"),
            *_profile_cols(_assigned, "p_"),
            *_profile_cols(_action, "a_"),
        )
        .outerjoin(_assigned, _assigned.id == Machine.profile_id)
        .outerjoin(Network, Network.id == Machine.network_id)
        .outerjoin(NextBoot, NextBoot.machine_id == Machine.id)
        .outerjoin(_action, _action.id == NextBoot.profile_id)
        .where(Machine.id == bindparam("machine_id"))
    )


def _profile_of(
    conn: Connection, row: Mapping[Any, Any], prefix: str = ""
) -> bt.ProfileView | None:
    if row[f"{prefix}name"] is None:
        return None
    menu = None
    raw_menu = row[f"{prefix}menu"]
    if row[f"{prefix}kind"] == "menu" and raw_menu:
        menu = _menu_of(conn, raw_menu)
    return bt.ProfileView(
        name=row[f"{prefix}name"],
        kind=row[f"{prefix}kind"],
        kernel=row[f"{prefix}kernel"],
        initrds=tuple(row[f"{prefix}initrds"] or ()),
        cmdline=row[f"{prefix}cmdline"],
        script=row[f"{prefix}script"],
        chain_url=row[f"{prefix}chain_url"],
        local_method=row[f"{prefix}local_method"],
        menu=menu,
        complete_state=row[f"{prefix}complete_state"],
    )


def _menu_of(conn: Connection, menu: Mapping[Any, Any]) -> bt.MenuView:
    names = [i["profile"] for i in menu.get("items", [])]
    targets = {
        r.name: r
        for r in conn.execute(
            select(*[getattr(Profile, c) for c in _PROFILE_COLUMNS]).where(Profile.name.in_(names))
        )
    }
    items = []
    for item in menu.get("items", []):
        target = targets.get(item["profile"])
        profile = _profile_of(conn, target._mapping) if target is not None else None
        if profile is not None and profile.kind != "menu":
            items.append(bt.MenuItem(key=item["key"], label=item["label"], profile=profile))
    return bt.MenuView(
        items=tuple(items), default=menu.get("default"), timeout=int(menu.get("timeout", 10))
    )


def load_machine(conn: Connection, machine_id: int) -> bt.MachineView | None:
    row = conn.execute(_machine_query(conn.dialect.name), {"machine_id": machine_id}).first()
    if row is None:
        return None
    r = row._mapping
    static = None
    if r["cidr"] is not None and r["address"] is not None:
        net = IPv4Network(r["cidr"])
        static = bt.StaticNet(
            ip=r["address"],
            prefix=net.prefixlen,
            netmask=str(net.netmask),
            gateway=r["gateway"],
            dns=tuple(r["dns"] or ()),
            domain=r["domain"],
            hostname=r["hostname"],
            interface=r["interface"] or "eth0",
        )
    action = _profile_of(conn, r, "a_")
    return bt.MachineView(
        id=r["id"],
        hostname=r["hostname"],
        state=r["state"],
        tags=tuple(sorted((r["tag_list"] or "").split())),
        uuid=r["uuid"],
        serial=r["serial"],
        manufacturer=r["manufacturer"],
        product=r["product"],
        asset_tag=r["asset_tag"],
        profile=_profile_of(conn, r, "p_"),
        next_boot=bt.NextBootView(profile=action, expires_at=r["nb_expires_at"])
        if action is not None
        else None,
        static=static,
        macs=tuple(sorted((r["mac_list"] or "").split())),
    )


def _rule_of(conn: Connection, row: Mapping[Any, Any]) -> bt.RuleView:
    profile = _profile_of(conn, row, "p_")
    assert profile is not None  # rule.profile_id is NOT NULL
    return bt.RuleView(
        id=row["id"],
        name=row["name"],
        priority=row["priority"],
        manufacturer=row["manufacturer"],
        product=row["product"],
        buildarch=row["buildarch"],
        platform=row["platform"],
        tags=tuple(row["tags"] or ()),
        profile=profile,
    )


def candidate_rules(
    conn: Connection, facts: bt.Facts | None, machine: bt.MachineView | None
) -> tuple[bt.RuleView, ...]:
    """Rules that could match, filtered in SQL; the decision has the last word."""
    p = aliased(Profile, name="rule_profile")
    stmt = select(
        Rule.id,
        Rule.name,
        Rule.priority,
        Rule.manufacturer,
        Rule.product,
        Rule.buildarch,
        Rule.platform,
        Rule.tags,
        *_profile_cols(p, "p_"),
    ).join(p, p.id == Rule.profile_id)
    if facts is not None:
        for col, value in (
            (Rule.manufacturer, facts.manufacturer or (machine.manufacturer if machine else None)),
            (Rule.product, facts.product or (machine.product if machine else None)),
            (Rule.buildarch, facts.buildarch),
            (Rule.platform, facts.platform),
        ):
            stmt = stmt.where(or_(col.is_(None), col == value) if value else col.is_(None))
    return tuple(_rule_of(conn, r._mapping) for r in conn.execute(stmt.order_by(Rule.id)))


def profile_named(conn: Connection, name: str) -> bt.ProfileView | None:
    if not name:
        return None
    row = conn.execute(
        select(*[getattr(Profile, c) for c in _PROFILE_COLUMNS]).where(Profile.name == name)
    ).first()
    return _profile_of(conn, row._mapping) if row is not None else None


def lookup_for_boot(conn: Connection, facts: bt.Facts, default_profile: str) -> Lookup:
    """Everything the decision needs for these facts, in as few round trips as possible."""
    found, ids = resolve(conn, facts)
    if len(ids) > 1:
        return Lookup(None, (), None, conflict=ids)
    machine = load_machine(conn, ids[0]) if ids else None
    return _complete(conn, facts, machine, default_profile, next(iter(found), None))


def _complete(
    conn: Connection,
    facts: bt.Facts | None,
    machine: bt.MachineView | None,
    default_profile: str,
    matched_by: str | None,
) -> Lookup:
    needs_more = machine is None or machine.profile is None
    rules = candidate_rules(conn, facts, machine) if needs_more else ()
    default = profile_named(conn, default_profile) if needs_more else None
    return Lookup(machine, rules, default, matched_by=matched_by)
