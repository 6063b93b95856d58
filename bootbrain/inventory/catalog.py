"""The catalog machines boot from: networks, profiles and rules.

Profiles are checked with the boot core's own validator when saved
(:mod:`bootbrain.inventory.checks`), so a template that cannot render is refused
here, naming the field and line. A network's change re-derives the reservations of
the machines on it; deleting anything still in use is a conflict naming the user.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bootbrain import identity, schemas
from bootbrain.boot import types as bt
from bootbrain.db import ConnectionReader, Database
from bootbrain.errors import ConflictError, FieldError, IdentityError
from bootbrain.models import Machine, Network, Profile, Rule

from . import lookup
from .base import (
    add_event,
    by_name,
    check_version,
    flush_or_conflict,
    get_by_id,
    name_free,
    named_conflict,
    page_of,
)
from .checks import check_profile
from .machines import apply_os_config


def add_network(s: Session, data: schemas.NetworkIn, actor: str) -> Network:
    name_free(s, Network, data.name)
    n = Network(**data.model_dump())
    s.add(n)
    flush_or_conflict(s, named_conflict("network", data.name))
    add_event(s, "change", f"network {n.name} created by {actor}", actor=actor)
    return n


def create_network(db: Database, data: schemas.NetworkIn, actor: str) -> Network:
    with db.write() as s:
        return add_network(s, data, actor)


def get_network(db: Database, network_id: int) -> Network:
    with db.read() as s:
        return get_by_id(s, Network, network_id)


def list_networks(db: Database, q: schemas.PageQuery) -> tuple[list[Network], int | None]:
    with db.read() as s:
        return page_of(s, select(Network), Network.id, q)


def update_network(
    db: Database, network_id: int, data: schemas.NetworkUpdate, if_match: int | None, actor: str
) -> Network:
    fields = data.model_dump(exclude_unset=True)
    with db.write() as s:
        n = get_by_id(s, Network, network_id)
        check_version("network", n.version, if_match)
        for k, v in fields.items():
            setattr(n, k, v)
        if n.gateway is not None:
            try:
                identity.check_address_in(n.gateway, n.cidr)
            except IdentityError as e:
                raise FieldError("gateway", str(e)) from None
        flush_or_conflict(s, named_conflict("network", n.name))
        add_event(
            s, "change", f"network {n.name} changed by {actor}", actor=actor, fields=sorted(fields)
        )
    return n


def _delete_in_use(resource: str) -> Callable[[IntegrityError], Exception]:
    return lambda e: ConflictError(
        "id", f"the {resource} is in use (machines or rules refer to it)"
    )


def delete_network(db: Database, network_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        n = get_by_id(s, Network, network_id)
        check_version("network", n.version, if_match)
        holder = s.scalar(select(Machine.id).where(Machine.network_id == n.id).limit(1))
        if holder is not None:
            raise ConflictError(
                "id", f"network {n.name} is used by machine {holder}", holder=holder
            )
        s.delete(n)
        flush_or_conflict(s, _delete_in_use("network"))
        add_event(s, "change", f"network {n.name} deleted by {actor}", actor=actor)


def _profile_lookup(s: Session) -> Callable[[str], bt.ProfileView | None]:
    """Profiles by name as the boot core sees them, inside this transaction."""
    return lambda name: lookup.profile_named(ConnectionReader(s.connection()), name)


_OS_CONFIG_FIELDS = ("tags", "ssh_keys", "metadata", "user_data", "vendor_data")


def add_profile(s: Session, data: schemas.ProfileIn, actor: str) -> Profile:
    fields = data.model_dump()
    check_profile(fields, _profile_lookup(s))
    name_free(s, Profile, data.name)
    p = Profile(**{k: v for k, v in fields.items() if k not in _OS_CONFIG_FIELDS})
    apply_os_config(p, fields)
    s.add(p)
    flush_or_conflict(s, named_conflict("profile", data.name))
    add_event(s, "change", f"profile {p.name} created by {actor}", actor=actor)
    return p


def create_profile(db: Database, data: schemas.ProfileIn, actor: str) -> Profile:
    with db.write() as s:
        return add_profile(s, data, actor)


def get_profile(db: Database, profile_id: int) -> Profile:
    with db.read() as s:
        return get_by_id(s, Profile, profile_id)


def list_profiles(db: Database, q: schemas.PageQuery) -> tuple[list[Profile], int | None]:
    with db.read() as s:
        return page_of(s, select(Profile), Profile.id, q)


#: A profile's own columns (its booted-OS configuration aside).
_PROFILE_COLUMNS = ("description", *lookup.PROFILE_COLUMNS)


def update_profile(
    db: Database,
    profile_id: int,
    data: schemas.ProfileUpdate,
    if_match: int | None,
    actor: str,
) -> Profile:
    changes = data.model_dump(exclude_unset=True)
    with db.write() as s:
        p = get_by_id(s, Profile, profile_id)
        check_version("profile", p.version, if_match)
        current = {c: getattr(p, c) for c in _PROFILE_COLUMNS}
        current.update(
            tags=p.tags,
            ssh_keys=p.ssh_keys,
            metadata=p.meta,
            user_data=p.user_data,
            vendor_data=p.vendor_data,
            ignition=p.ignition,
        )
        check_profile(current | changes, _profile_lookup(s))
        for k, v in changes.items():
            if k not in _OS_CONFIG_FIELDS:
                setattr(p, k, v)
        apply_os_config(p, changes)
        flush_or_conflict(s, named_conflict("profile", p.name))
        add_event(
            s, "change", f"profile {p.name} changed by {actor}", actor=actor, fields=sorted(changes)
        )
        return p


def delete_profile(db: Database, profile_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        p = get_by_id(s, Profile, profile_id)
        check_version("profile", p.version, if_match)
        user = s.scalar(select(Machine.id).where(Machine.profile_id == p.id).limit(1))
        if user is not None:
            raise ConflictError(
                "id", f"profile {p.name} is assigned to machine {user}", holder=user
            )
        rule = s.scalar(select(Rule.name).where(Rule.profile_id == p.id).limit(1))
        if rule is not None:
            raise ConflictError("id", f"profile {p.name} is used by rule {rule}")
        for other in s.scalars(select(Profile).where(Profile.kind == "menu")):
            if any(i.get("profile") == p.name for i in (other.menu or {}).get("items", [])):
                raise ConflictError("id", f"profile {p.name} is an item of menu {other.name}")
        s.delete(p)
        flush_or_conflict(s, _delete_in_use("profile"))
        add_event(s, "change", f"profile {p.name} deleted by {actor}", actor=actor)


def add_rule(s: Session, data: schemas.RuleIn, actor: str) -> Rule:
    fields = data.model_dump()
    name_free(s, Rule, data.name)
    fields["profile"] = by_name(s, Profile, fields["profile"], "profile")
    r = Rule(**fields)
    s.add(r)
    flush_or_conflict(s, named_conflict("rule", data.name))
    add_event(s, "change", f"rule {r.name} created by {actor}", actor=actor)
    return r


def create_rule(db: Database, data: schemas.RuleIn, actor: str) -> Rule:
    with db.write() as s:
        return add_rule(s, data, actor)


def get_rule(db: Database, rule_id: int) -> Rule:
    with db.read() as s:
        return get_by_id(s, Rule, rule_id)


def list_rules(db: Database, q: schemas.PageQuery) -> tuple[list[Rule], int | None]:
    with db.read() as s:
        return page_of(s, select(Rule), Rule.id, q)


def update_rule(
    db: Database, rule_id: int, data: schemas.RuleUpdate, if_match: int | None, actor: str
) -> Rule:
    fields = data.model_dump(exclude_unset=True)
    with db.write() as s:
        r = get_by_id(s, Rule, rule_id)
        check_version("rule", r.version, if_match)
        if "profile" in fields:
            fields["profile"] = by_name(s, Profile, fields["profile"], "profile")
        for k, v in fields.items():
            setattr(r, k, v)
        flush_or_conflict(s, named_conflict("rule", r.name))
        add_event(
            s, "change", f"rule {r.name} changed by {actor}", actor=actor, fields=sorted(fields)
        )
        return r


def delete_rule(db: Database, rule_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        r = get_by_id(s, Rule, rule_id)
        check_version("rule", r.version, if_match)
        s.delete(r)
        add_event(s, "change", f"rule {r.name} deleted by {actor}", actor=actor)
