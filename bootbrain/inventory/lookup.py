"""The boot decision's reads: identity → the frozen views :mod:`bootbrain.boot` decides on.

This is the ``/ipxe`` hot path, so it is fixed SQLAlchemy Core statements read
through a :class:`~bootbrain.db.Reader`, not the ORM. One statement resolves every
identity key the machine sent (so a conflict between two keys is seen, never guessed
away) and, for each key that names a machine, loads that machine with its profile,
network, next-boot action, tags and MACs: a known machine's boot is one indexed
round trip. Rules, the default profile and menu items are read only when the
decision can need them; the groups that may apply are one more statement, filtered
in SQL on their one-column selectors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from ipaddress import IPv4Network
from typing import Any, Final

from sqlalchemy import (
    Select,
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
from bootbrain.db import Reader, Row
from bootbrain.models import Group, Machine, MachineTag, Network, NextBoot, Nic, Profile, Rule

#: The profile columns the boot reads: the fields of the view the core decides on.
PROFILE_COLUMNS: Final = tuple(f.name for f in fields(bt.ProfileView))


@dataclass(frozen=True)
class Lookup:
    machine: bt.MachineView | None
    rules: tuple[bt.RuleView, ...]
    default: bt.ProfileView | None
    conflict: tuple[int, ...] = ()
    #: Groups that may apply (filtered in SQL; the decision has the last word).
    groups: tuple[bt.GroupView, ...] = ()


_KEYS = ("uuid", "mac", "serial", "board_serial")


def _identity_query(present: tuple[str, ...]) -> Any:
    """(key, machine id) for each identity key sent that names a machine."""
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


_assigned = aliased(Profile, name="assigned")
_action = aliased(Profile, name="action")


def _profile_cols(alias: Any, prefix: str) -> list[Any]:
    return [getattr(alias, c).label(f"{prefix}{c}") for c in PROFILE_COLUMNS]


def _joined(column: Any, dialect: str) -> Any:
    """Space-joined values (tags and MACs hold no spaces), as each database spells it.
    A literal separator keeps the statement fully cached (no post-compile parameter)."""
    agg = func.string_agg if dialect == "postgresql" else func.group_concat
    return agg(column, literal_column("' '"))


def _machine_select(dialect: str, base: Any, *extra: Any) -> Any:
    """The machine's row with everything the decision reads; ``base`` is the FROM
    clause that yields ``machine`` (the table itself, or the identity hits joined to it)."""
    joined = (
        base.outerjoin(_assigned, _assigned.id == Machine.profile_id)
        .outerjoin(Network, Network.id == Machine.network_id)
        .outerjoin(NextBoot, NextBoot.machine_id == Machine.id)
        .outerjoin(_action, _action.id == NextBoot.profile_id)
    )
    return select(
        *extra,
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
        Machine.labels,
        Machine.variables,
        Network.name.label("network_name"),
        Network.cidr,
        Network.gateway,
        Network.dns,
        Network.domain,
        NextBoot.expires_at.label("nb_expires_at"),
        NextBoot.ref.label("nb_ref"),
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
    ).select_from(joined)


@functools.cache
def _machine_query(dialect: str) -> Any:
    return _machine_select(dialect, Machine.__table__).where(Machine.id == bindparam("machine_id"))


@functools.cache
def _boot_query(present: tuple[str, ...], dialect: str) -> Any:
    """Per identity key that names a machine: the key, and that machine's full row."""
    hits = _identity_query(present).subquery("hits")
    base = hits.join(Machine, Machine.id == hits.c.id)
    return _machine_select(dialect, base, hits.c.key.label("hit_key"))


def _profile_of(reader: Reader, row: Row, prefix: str = "") -> bt.ProfileView | None:
    if row[f"{prefix}name"] is None:
        return None
    menu = None
    raw_menu = row[f"{prefix}menu"]
    if row[f"{prefix}kind"] == "menu" and raw_menu:
        menu = _menu_of(reader, raw_menu)
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
        variables=dict(row[f"{prefix}variables"] or {}),
    )


def _menu_of(reader: Reader, menu: Mapping[str, Any]) -> bt.MenuView:
    items = []
    for item in menu.get("items", []):
        profile = profile_named(reader, item["profile"])
        if profile is not None and profile.kind != "menu":
            items.append(bt.MenuItem(key=item["key"], label=item["label"], profile=profile))
    return bt.MenuView(
        items=tuple(items), default=menu.get("default"), timeout=int(menu.get("timeout", 10))
    )


def load_machine(reader: Reader, machine_id: int) -> bt.MachineView | None:
    rows = reader.rows(_machine_query(reader.dialect), {"machine_id": machine_id})
    return _machine_of(reader, rows[0]) if rows else None


@functools.lru_cache(maxsize=1024)
def _prefix_and_netmask(cidr: str) -> tuple[int, str]:
    """A network's prefix length and netmask: the same for every machine on it."""
    net = IPv4Network(cidr)
    return net.prefixlen, str(net.netmask)


def _machine_of(reader: Reader, r: Row) -> bt.MachineView:
    static = None
    if r["cidr"] is not None and r["address"] is not None:
        prefix, netmask = _prefix_and_netmask(r["cidr"])
        static = bt.StaticNet(
            ip=r["address"],
            prefix=prefix,
            netmask=netmask,
            gateway=r["gateway"],
            dns=tuple(r["dns"] or ()),
            domain=r["domain"],
            hostname=r["hostname"],
            interface=r["interface"] or "eth0",
        )
    action = _profile_of(reader, r, "a_")
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
        profile=_profile_of(reader, r, "p_"),
        next_boot=bt.NextBootView(
            profile=action, expires_at=r["nb_expires_at"], ref=r["nb_ref"]
        )
        if action is not None
        else None,
        static=static,
        macs=tuple(sorted((r["mac_list"] or "").split())),
        network=r["network_name"],
        labels=tuple(r["labels"] or ()),
        variables=dict(r["variables"] or {}),
    )


def _rule_of(reader: Reader, row: Row) -> bt.RuleView:
    profile = _profile_of(reader, row, "p_")
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


_SELECTORS = ("manufacturer", "product", "buildarch", "platform")


@functools.cache
def _rules_query() -> Select[Any]:
    p = aliased(Profile, name="rule_profile")
    # ``col = NULL`` is never true: an absent fact matches only rules without that selector.
    return (
        select(
            Rule.id,
            Rule.name,
            Rule.priority,
            Rule.manufacturer,
            Rule.product,
            Rule.buildarch,
            Rule.platform,
            Rule.tags,
            *_profile_cols(p, "p_"),
        )
        .join(p, p.id == Rule.profile_id)
        .where(
            *(
                or_(getattr(Rule, name).is_(None), getattr(Rule, name) == bindparam(name))
                for name in _SELECTORS
            )
        )
        .order_by(Rule.id)
    )


def candidate_rules(
    reader: Reader, facts: bt.Facts, machine: bt.MachineView | None
) -> tuple[bt.RuleView, ...]:
    """Rules that could match, filtered in SQL; the decision has the last word."""
    params = {
        "manufacturer": facts.manufacturer or (machine.manufacturer if machine else None),
        "product": facts.product or (machine.product if machine else None),
        "buildarch": facts.buildarch,
        "platform": facts.platform,
    }
    rows = reader.rows(_rules_query(), {k: v or None for k, v in params.items()})
    return tuple(_rule_of(reader, r) for r in rows)


@functools.cache
def _profile_query() -> Select[Any]:
    return select(*[getattr(Profile, c) for c in PROFILE_COLUMNS]).where(
        Profile.name == bindparam("name")
    )


def profile_named(reader: Reader, name: str) -> bt.ProfileView | None:
    if not name:
        return None
    rows = reader.rows(_profile_query(), {"name": name})
    return _profile_of(reader, rows[0]) if rows else None


def lookup_for_boot(reader: Reader, facts: bt.Facts, default_profile: str) -> Lookup:
    """Everything the decision needs for these facts; one round trip for a machine
    with a profile."""
    params = _identity_params(facts)
    present = tuple(k for k in _KEYS if k in params)
    rows = reader.rows(_boot_query(present, reader.dialect), params) if present else []
    by_key: dict[str, list[int]] = {}
    row_of: dict[int, Row] = {}
    for r in rows:
        by_key.setdefault(r["hit_key"], []).append(r["id"])
        row_of[r["id"]] = r
    # A key naming two machines (a shared chassis serial) identifies nothing; two keys
    # naming two machines is a conflict.
    ids = sorted({found[0] for found in by_key.values() if len(found) == 1})
    if len(ids) > 1:
        return Lookup(None, (), None, conflict=tuple(ids))
    machine = _machine_of(reader, row_of[ids[0]]) if ids else None
    groups = candidate_groups(reader, machine, facts)
    if machine is not None and machine.profile is not None:
        return Lookup(machine, (), None, groups=groups)
    rules = candidate_rules(reader, facts, machine)
    return Lookup(machine, rules, profile_named(reader, default_profile), groups=groups)


_GROUP_SQL_SELECTORS = ("manufacturer", "product", "state", "network")


@functools.cache
def _groups_query() -> Select[Any]:
    # As for rules, ``col = NULL`` is never true: a machine without a state or a
    # network (an unknown one) matches only groups without that selector.
    return (
        select(
            Group.name,
            Group.manufacturer,
            Group.product,
            Group.state,
            Group.network,
            Group.tags,
            Group.labels,
            Group.variables,
            Group.ssh_keys,
            Group.os_tags,
            Group.meta,
        )
        .where(
            *(
                or_(getattr(Group, name).is_(None), getattr(Group, name) == bindparam(name))
                for name in _GROUP_SQL_SELECTORS
            )
        )
        .order_by(Group.name)
    )


def candidate_groups(
    reader: Reader, machine: bt.MachineView | None, facts: bt.Facts | None = None
) -> tuple[bt.GroupView, ...]:
    """Groups that could apply to the machine, filtered in SQL by the selectors that
    are one column each; tags and labels are left to :mod:`bootbrain.boot.groups`."""
    params = {
        "manufacturer": (facts.manufacturer if facts else None)
        or (machine.manufacturer if machine else None),
        "product": (facts.product if facts else None) or (machine.product if machine else None),
        "state": machine.state if machine else None,
        "network": machine.network if machine else None,
    }
    rows = reader.rows(_groups_query(), {k: v or None for k, v in params.items()})
    return tuple(
        bt.GroupView(
            name=r["name"],
            manufacturer=r["manufacturer"],
            product=r["product"],
            state=r["state"],
            network=r["network"],
            tags=tuple(r["tags"] or ()),
            labels=tuple(r["labels"] or ()),
            config=bt.OsConfig(
                ssh_keys=tuple(r["ssh_keys"] or ()),
                tags=tuple(r["os_tags"] or ()),
                metadata=dict(r["meta"] or {}),
                variables=dict(r["variables"] or {}),
            ),
        )
        for r in rows
    )
