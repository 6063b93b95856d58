"""Service functions over the inventory. Each owns its transaction and raises domain
errors (:mod:`bootbrain.errors`); nothing here knows about HTTP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar, cast

import orjson
from sqlalchemy import (
    Integer,
    Select,
    Table,
    Text,
    bindparam,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bootbrain import identity, lookup, profiles, schemas, security
from bootbrain.boot import types as bt
from bootbrain.db import ConnectionReader, Database
from bootbrain.errors import (
    AuthError,
    ConflictError,
    FieldError,
    ForbiddenError,
    NotFoundError,
    StaleError,
)
from bootbrain.integrations.reservations import Reservation
from bootbrain.models import (
    ApiToken,
    Boot,
    Event,
    Machine,
    MachineTag,
    Network,
    NextBoot,
    Nic,
    Profile,
    Rule,
    utcnow,
)

T = TypeVar("T")


def reservation_of(m: Machine) -> Reservation | None:
    if not m.address or not m.nics:
        return None
    nic = next((n for n in m.nics if n.boot), m.nics[0])
    return Reservation(machine_id=m.id, mac=nic.mac, ip=m.address, hostname=m.hostname)


def notify(db: Database, machine_id: int, reservation: Reservation | None) -> None:
    for listener in db.reservation_listeners:
        listener(machine_id, reservation)


def _event(
    s: Session,
    kind: str,
    message: str,
    *,
    machine_id: int | None = None,
    mac: str | None = None,
    ip: str | None = None,
    **data: Any,
) -> None:
    s.add(Event(kind=kind, message=message, machine_id=machine_id, mac=mac, ip=ip, data=data))


def _check_version(resource: str, current: int, if_match: int | None) -> None:
    if if_match is not None and if_match != current:
        raise StaleError(resource, str(if_match), str(current))


def _page(
    s: Session, stmt: Select[Any], id_col: Any, q: schemas.PageQuery
) -> tuple[list[Any], int | None]:
    if q.after is not None:
        stmt = stmt.where(id_col > q.after)
    rows = list(s.scalars(stmt.order_by(id_col).limit(q.limit + 1)).unique())
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, (getattr(rows[-1], "id", None) if more and rows else None)


def _by_name(s: Session, model: Any, name: str, field: str) -> Any:
    obj = s.scalar(select(model).where(model.name == name))
    if obj is None:
        raise FieldError(field, f"no {model.__tablename__} named {name!r}")
    return obj


MAX_ID = 2**31 - 1  # the id columns are 32-bit integers on every backend


def _get(s: Session, model: type[T], key: int) -> T:
    obj = s.get(model, key) if 0 < key <= MAX_ID else None
    if obj is None:
        raise NotFoundError(getattr(model, "__tablename__", "resource"), key)
    return obj


def _flush(s: Session, on_conflict: Callable[[IntegrityError], Exception]) -> None:
    try:
        s.flush()
    except IntegrityError as e:
        raise on_conflict(e) from None
    except StaleDataError:
        raise StaleError("resource", "?", "newer") from None


# --- machines ---------------------------------------------------------------------


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
        m.profile = (
            _by_name(s, Profile, fields["profile"], "profile") if fields["profile"] else None
        )
    if "network" in fields:
        m.network = (
            _by_name(s, Network, fields["network"], "network") if fields["network"] else None
        )
    if m.address is not None and m.network is None:
        raise FieldError("network", "a static address needs the network it belongs to")
    if m.network is not None and m.address is not None:
        try:
            identity.check_address_in(m.address, m.network.cidr)
        except identity.IdentityError as e:
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
    _apply_os_config(m, fields)
    affects_documents = {"user_data", "vendor_data", "metadata", "ssh_keys", "tags", "profile"}
    if fields.keys() & affects_documents:
        # The templates this machine's OS gets with its assigned profile, rendered once.
        context = os_config_of(m.profile) if m.profile else bt.OsConfig()
        profiles.check_documents(os_config_of(m), context)


def _apply_os_config(obj: Machine | Profile, fields: dict[str, Any]) -> None:
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


def os_config_of(obj: Machine | Profile) -> bt.OsConfig:
    return bt.OsConfig(
        ssh_keys=tuple(obj.ssh_keys),
        tags=tuple(obj.tag_names if isinstance(obj, Machine) else obj.tags),
        metadata=dict(obj.meta),
        user_data=obj.user_data,
        vendor_data=obj.vendor_data,
    )


def os_nic(m: Machine) -> tuple[str, str | None]:
    """(interface, MAC) the booted OS configures: the assignment's interface name
    (default eth0) on the NIC of that name, else the boot NIC, else the first NIC."""
    name = m.interface or "eth0"
    nic = (
        next((n for n in m.nics if n.name == name), None)
        or next((n for n in m.nics if n.boot), None)
        or (m.nics[0] if m.nics else None)
    )
    return name, nic.mac if nic else None


def add_machine(s: Session, data: schemas.MachineCreate, actor: str) -> Machine:
    """Create within the caller's transaction (imports); see :func:`create_machine`."""
    m = Machine(state=data.state)
    s.add(m)
    with s.no_autoflush:
        _apply_machine(s, m, data.model_dump())
        _precheck_machine(s, m, [n.mac for n in data.nics])
    _flush(s, _machine_conflict(s, m))
    s.refresh(m)  # load the relationships the response shows, inside the session
    _event(
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
        reservation = reservation_of(m)
    if reservation:
        notify(db, m.id, reservation)
    return m


def get_machine(db: Database, machine_id: int) -> Machine:
    with db.read() as s:
        return _get(s, Machine, machine_id)


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
        return _page(s, stmt, Machine.id, q)


def update_machine(
    db: Database, machine_id: int, data: schemas.MachineUpdate, if_match: int | None, actor: str
) -> Machine:
    fields = data.model_dump(exclude_unset=True)
    if data.nics is not None:  # each NIC whole, defaults included
        fields["nics"] = [n.model_dump() for n in data.nics]
    with db.write() as s:
        m = _get(s, Machine, machine_id)
        _check_version("machine", m.version, if_match)
        before = reservation_of(m)
        with s.no_autoflush:
            _apply_machine(s, m, fields)
            _precheck_machine(s, m, [n["mac"] for n in fields.get("nics", [])])
        _flush(s, _machine_conflict(s, m))
        s.refresh(m)
        _event(
            s,
            "change",
            f"machine {m.id} changed by {actor}",
            machine_id=m.id,
            actor=actor,
            fields=sorted(fields),
        )
        after = reservation_of(m)
    if before != after:
        notify(db, m.id, after)
    return m


def delete_machine(db: Database, machine_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        m = _get(s, Machine, machine_id)
        _check_version("machine", m.version, if_match)
        had = reservation_of(m) is not None
        s.execute(delete(Boot).where(Boot.machine_id == machine_id))
        s.delete(m)
        s.flush()
        _event(
            s,
            "change",
            f"machine {machine_id} deleted by {actor}",
            machine_id=machine_id,
            actor=actor,
        )
    if had:
        notify(db, machine_id, None)


def set_next_boot(
    db: Database, machine_id: int, data: schemas.NextBootIn, default_ttl: int, actor: str
) -> Machine:
    with db.write() as s:
        m = _get(s, Machine, machine_id)
        profile = _by_name(s, Profile, data.profile, "profile")
        expires = utcnow() + timedelta(seconds=data.expires_in or default_ttl)
        if m.next_boot is None:
            m.next_boot = NextBoot(
                profile=profile, expires_at=expires, complete_state=data.complete_state
            )
        else:
            m.next_boot.profile = profile
            m.next_boot.expires_at = expires
            m.next_boot.complete_state = data.complete_state
        m.updated_at = utcnow()  # bumps the version: the machine's ETag changes
        s.flush()
        _event(
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
        m = _get(s, Machine, machine_id)
        if m.next_boot is None:
            raise NotFoundError("next boot of machine", machine_id)
        profile = m.next_boot.profile.name
        m.next_boot = None
        m.updated_at = utcnow()
        s.flush()
        _event(
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


# --- networks, profiles, rules ------------------------------------------------------


def _named_conflict(resource: str, name: str | None) -> Callable[[IntegrityError], Exception]:
    return lambda e: ConflictError("name", f"a {resource} named {name!r} exists")


def _name_free(s: Session, model: type[Any], name: str) -> None:
    if s.scalar(select(model.id).where(model.name == name)) is not None:
        raise ConflictError("name", f"a {model.__tablename__} named {name!r} exists")


def add_network(s: Session, data: schemas.NetworkIn, actor: str) -> Network:
    _name_free(s, Network, data.name)
    n = Network(**data.model_dump())
    s.add(n)
    _flush(s, _named_conflict("network", data.name))
    _event(s, "change", f"network {n.name} created by {actor}", actor=actor)
    return n


def create_network(db: Database, data: schemas.NetworkIn, actor: str) -> Network:
    with db.write() as s:
        return add_network(s, data, actor)


def get_network(db: Database, network_id: int) -> Network:
    with db.read() as s:
        return _get(s, Network, network_id)


def list_networks(db: Database, q: schemas.PageQuery) -> tuple[list[Network], int | None]:
    with db.read() as s:
        return _page(s, select(Network), Network.id, q)


def update_network(
    db: Database, network_id: int, data: schemas.NetworkUpdate, if_match: int | None, actor: str
) -> Network:
    fields = data.model_dump(exclude_unset=True)
    with db.write() as s:
        n = _get(s, Network, network_id)
        _check_version("network", n.version, if_match)
        for k, v in fields.items():
            setattr(n, k, v)
        if n.gateway is not None:
            try:
                identity.check_address_in(n.gateway, n.cidr)
            except identity.IdentityError as e:
                raise FieldError("gateway", str(e)) from None
        _flush(s, _named_conflict("network", n.name))
        _event(
            s, "change", f"network {n.name} changed by {actor}", actor=actor, fields=sorted(fields)
        )
        users = list(s.scalars(select(Machine).where(Machine.network_id == n.id)))
        reservations = [(m.id, reservation_of(m)) for m in users]
    for machine_id, r in reservations:
        notify(db, machine_id, r)
    return n


def _delete_in_use(resource: str) -> Callable[[IntegrityError], Exception]:
    return lambda e: ConflictError(
        "id", f"the {resource} is in use (machines or rules refer to it)"
    )


def delete_network(db: Database, network_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        n = _get(s, Network, network_id)
        _check_version("network", n.version, if_match)
        holder = s.scalar(select(Machine.id).where(Machine.network_id == n.id).limit(1))
        if holder is not None:
            raise ConflictError(
                "id", f"network {n.name} is used by machine {holder}", holder=holder
            )
        s.delete(n)
        _flush(s, _delete_in_use("network"))
        _event(s, "change", f"network {n.name} deleted by {actor}", actor=actor)


ProfileChecker = Callable[[dict[str, Any], Callable[[str], bt.ProfileView | None]], None]


def _profile_lookup(s: Session) -> Callable[[str], bt.ProfileView | None]:
    """Profiles by name as the boot core sees them, inside this transaction."""
    return lambda name: lookup.profile_named(ConnectionReader(s.connection()), name)


_OS_CONFIG_FIELDS = ("tags", "ssh_keys", "metadata", "user_data", "vendor_data")


def add_profile(s: Session, data: schemas.ProfileIn, check: ProfileChecker, actor: str) -> Profile:
    fields = data.model_dump()
    check(fields, _profile_lookup(s))
    _name_free(s, Profile, data.name)
    p = Profile(**{k: v for k, v in fields.items() if k not in _OS_CONFIG_FIELDS})
    _apply_os_config(p, fields)
    s.add(p)
    _flush(s, _named_conflict("profile", data.name))
    _event(s, "change", f"profile {p.name} created by {actor}", actor=actor)
    return p


def create_profile(
    db: Database, data: schemas.ProfileIn, check: ProfileChecker, actor: str
) -> Profile:
    with db.write() as s:
        return add_profile(s, data, check, actor)


def get_profile(db: Database, profile_id: int) -> Profile:
    with db.read() as s:
        return _get(s, Profile, profile_id)


def list_profiles(db: Database, q: schemas.PageQuery) -> tuple[list[Profile], int | None]:
    with db.read() as s:
        return _page(s, select(Profile), Profile.id, q)


_PROFILE_COLUMNS = (
    "name",
    "kind",
    "description",
    "kernel",
    "initrds",
    "cmdline",
    "script",
    "chain_url",
    "local_method",
    "menu",
    "complete_state",
)


def update_profile(
    db: Database,
    profile_id: int,
    data: schemas.ProfileUpdate,
    check: ProfileChecker,
    if_match: int | None,
    actor: str,
) -> Profile:
    changes = data.model_dump(exclude_unset=True)
    with db.write() as s:
        p = _get(s, Profile, profile_id)
        _check_version("profile", p.version, if_match)
        current = {c: getattr(p, c) for c in _PROFILE_COLUMNS}
        current.update(
            tags=p.tags,
            ssh_keys=p.ssh_keys,
            metadata=p.meta,
            user_data=p.user_data,
            vendor_data=p.vendor_data,
        )
        check(current | changes, _profile_lookup(s))
        for k, v in changes.items():
            if k not in _OS_CONFIG_FIELDS:
                setattr(p, k, v)
        _apply_os_config(p, changes)
        _flush(s, _named_conflict("profile", p.name))
        _event(
            s, "change", f"profile {p.name} changed by {actor}", actor=actor, fields=sorted(changes)
        )
        return p


def delete_profile(db: Database, profile_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        p = _get(s, Profile, profile_id)
        _check_version("profile", p.version, if_match)
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
        _flush(s, _delete_in_use("profile"))
        _event(s, "change", f"profile {p.name} deleted by {actor}", actor=actor)


def add_rule(s: Session, data: schemas.RuleIn, actor: str) -> Rule:
    fields = data.model_dump()
    _name_free(s, Rule, data.name)
    fields["profile"] = _by_name(s, Profile, fields["profile"], "profile")
    r = Rule(**fields)
    s.add(r)
    _flush(s, _named_conflict("rule", data.name))
    _event(s, "change", f"rule {r.name} created by {actor}", actor=actor)
    return r


def create_rule(db: Database, data: schemas.RuleIn, actor: str) -> Rule:
    with db.write() as s:
        return add_rule(s, data, actor)


def get_rule(db: Database, rule_id: int) -> Rule:
    with db.read() as s:
        return _get(s, Rule, rule_id)


def list_rules(db: Database, q: schemas.PageQuery) -> tuple[list[Rule], int | None]:
    with db.read() as s:
        return _page(s, select(Rule), Rule.id, q)


def update_rule(
    db: Database, rule_id: int, data: schemas.RuleUpdate, if_match: int | None, actor: str
) -> Rule:
    fields = data.model_dump(exclude_unset=True)
    with db.write() as s:
        r = _get(s, Rule, rule_id)
        _check_version("rule", r.version, if_match)
        if "profile" in fields:
            fields["profile"] = _by_name(s, Profile, fields["profile"], "profile")
        for k, v in fields.items():
            setattr(r, k, v)
        _flush(s, _named_conflict("rule", r.name))
        _event(s, "change", f"rule {r.name} changed by {actor}", actor=actor, fields=sorted(fields))
        return r


def delete_rule(db: Database, rule_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        r = _get(s, Rule, rule_id)
        _check_version("rule", r.version, if_match)
        s.delete(r)
        _event(s, "change", f"rule {r.name} deleted by {actor}", actor=actor)


# --- API tokens -------------------------------------------------------------------


def create_token(
    db: Database, secret: bytes, data: schemas.TokenIn, actor: str
) -> tuple[ApiToken, str]:
    token, prefix = security.new_api_token()
    expires = utcnow() + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    with db.write() as s:
        t = ApiToken(
            name=data.name,
            prefix=prefix,
            token_hash=security.token_hash(secret, token),
            scope=data.scope,
            expires_at=expires,
        )
        s.add(t)
        _flush(s, _named_conflict("token", data.name))
        _event(
            s,
            "change",
            f"API token {data.name} ({prefix}, {data.scope}) created by {actor}",
            actor=actor,
        )
        return t, token


def list_tokens(db: Database, q: schemas.PageQuery) -> tuple[list[ApiToken], int | None]:
    with db.read() as s:
        return _page(s, select(ApiToken), ApiToken.id, q)


def revoke_token(db: Database, token_id: int, actor: str) -> ApiToken:
    with db.write() as s:
        t = _get(s, ApiToken, token_id)
        if t.revoked_at is None:
            t.revoked_at = utcnow()
            _event(s, "change", f"API token {t.name} ({t.prefix}) revoked by {actor}", actor=actor)
        return t


def token_count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(ApiToken)) or 0


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    scope: str


def authenticate(db: Database, secret: bytes, token: str, *, write: bool) -> Principal:
    prefix = security.api_token_prefix(token)
    if prefix is None:
        raise AuthError("malformed token")
    now = utcnow()
    with db.read() as s:
        t = s.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    if t is None or not security.same(t.token_hash, security.token_hash(secret, token)):
        raise AuthError("unknown token")
    if t.revoked_at is not None:
        raise AuthError("token revoked")
    if t.expires_at is not None and t.expires_at <= now:
        raise AuthError("token expired")
    if write and t.scope != "write":
        raise ForbiddenError(f"token {t.name} has scope {t.scope}; this needs write")
    if t.last_used_at is None or now - t.last_used_at > timedelta(minutes=1):
        # At most one write a minute per token, so API reads stay reads.
        with db.write() as s:
            s.execute(update(ApiToken).where(ApiToken.id == t.id).values(last_used_at=now))
    return Principal(t.id, t.name, t.scope)


# --- events -----------------------------------------------------------------------


def list_events(db: Database, q: schemas.EventQuery) -> tuple[list[Event], int | None]:
    stmt = select(Event)
    if q.machine_id is not None:
        stmt = stmt.where(Event.machine_id == q.machine_id)
    if q.kind:
        stmt = stmt.where(Event.kind == q.kind)
    if q.mac:
        stmt = stmt.where(Event.mac == q.mac)
    if q.since:
        stmt = stmt.where(Event.at >= q.since)
    with db.read() as s:
        return _page(s, stmt, Event.id, q)


#: The fields of a queued event record; a record may leave out any but ``kind``.
_EVENT_FIELDS: Final = ("at", "kind", "machine_id", "mac", "ip", "message", "data")


def _event_row(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with every field: records from the hot path and from metadata fetches
    share a batch, and a batch is written by one statement whatever each record sent."""
    row = {name: event.get(name) for name in _EVENT_FIELDS}
    row["message"] = row["message"] or ""
    row["data"] = row["data"] or {}
    return row


def _json_rows(table: Table, names: Sequence[str]) -> Any:
    """PostgreSQL: the rows bound as ``rows`` (a JSON array of objects, see
    :func:`_json_doc`) as the set ``json_to_recordset(:rows) AS v(name type, …)``.

    A batch of any size is one fixed (prepared) statement with one parameter, one
    round trip, where executemany sends a statement per row; the parameter is made
    by the C JSON encoder, where psycopg escapes array parameters element by element
    in Python (measured: twice the client CPU of executemany)."""
    columns = [column(n, table.c[n].type) for n in names]
    source = func.json_to_recordset(cast_(bindparam("rows", type_=Text), postgresql.JSON))
    return source.table_valued(*columns).render_derived(name="v", with_types=True)


def _json_doc(rows: Sequence[dict[str, Any]]) -> str:
    """orjson writes an aware datetime as RFC 3339 with its offset, which PostgreSQL
    reads exactly; a naive one in a column is refused first, as :class:`UTCDateTime`
    refuses it.
    (The writer's CPU per boot: 48 µs with the standard library's encoder, 22.)"""
    for row in rows:
        for value in row.values():
            if type(value) is datetime and value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
    return orjson.dumps(rows).decode()


@functools.cache
def _json_insert(table: Table, names: tuple[str, ...]) -> Any:
    v = _json_rows(table, names)
    return insert(table).from_select(names, select(*v.c))


_SEEN_FIELDS: Final = ("id", "last_seen_at", "last_seen_ip")


@functools.cache
def _seen_statements() -> tuple[Any, Any]:
    """(lock, update) of last-seen times; an UPDATE … FROM locks rows in whatever order
    its plan joins them, so the rows are locked in id order first (the ORDER BY is
    applied before the lock)."""
    machines = cast(Table, Machine.__table__)
    ids = bindparam("ids", type_=postgresql.ARRAY(Integer))
    lock = (
        select(machines.c.id)
        .where(machines.c.id == func.any(ids))
        .order_by(machines.c.id)
        .with_for_update(key_share=True)
    )
    v = _json_rows(machines, _SEEN_FIELDS)
    change = (
        update(machines)
        .where(machines.c.id == v.c.id)
        .values(
            last_seen_at=v.c.last_seen_at,
            last_seen_ip=v.c.last_seen_ip,
            updated_at=machines.c.updated_at,  # last-seen is not an operator change
        )
    )
    return lock, change


@functools.cache
def _seen_executemany() -> Any:
    """SQLite: last-seen times, a row at a time (executemany, in-process). The bind
    names differ from the columns SET, which SQLAlchemy reserves."""
    machines = cast(Table, Machine.__table__)
    return (
        update(machines)
        .where(machines.c.id == bindparam("machine_id"))
        .values(
            last_seen_at=bindparam("at"),
            last_seen_ip=bindparam("ip"),
            updated_at=machines.c.updated_at,  # last-seen is not an operator change
        )
    )


def write_batch(
    db: Database,
    events: Iterable[dict[str, Any]],
    boots: Iterable[dict[str, Any]],
    seen: dict[int, tuple[datetime, str | None]],
) -> None:
    """The event writer's flush: one transaction for a batch from the hot path."""
    event_rows = [_event_row(e) for e in events]
    boot_rows = list(boots)
    # In id order: brains (and a host's workers) writing overlapping batches then lock
    # rows in the same order and wait, instead of deadlocking.
    seen_rows = [
        {"id": m, "last_seen_at": at, "last_seen_ip": ip} for m, (at, ip) in sorted(seen.items())
    ]
    tables = ((cast(Table, Boot.__table__), boot_rows), (cast(Table, Event.__table__), event_rows))
    with db.write() as s:
        # Core on the session's connection: the ORM's bulk paths cost more per row than
        # the database does, and this runs once per batch of boots.
        conn = s.connection()
        if db.is_sqlite:  # in-process: executemany is already one call per table
            for table, rows in tables:
                if rows:
                    conn.execute(insert(table), rows)
            if seen_rows:
                conn.execute(
                    _seen_executemany(),
                    [
                        {"machine_id": r["id"], "at": r["last_seen_at"], "ip": r["last_seen_ip"]}
                        for r in seen_rows
                    ],
                )
            return
        for table, rows in tables:
            if rows:
                conn.execute(_json_insert(table, tuple(rows[0])), {"rows": _json_doc(rows)})
        if seen_rows:
            lock, change = _seen_statements()
            conn.execute(lock, {"ids": [r["id"] for r in seen_rows]})
            conn.execute(change, {"rows": _json_doc(seen_rows)})


# --- boots ------------------------------------------------------------------------


class BootTokenError(ForbiddenError):
    """A per-boot token that opens nothing; ``reason`` is for the event log only."""

    def __init__(
        self, reason: str, boot_id: str | None = None, machine_id: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.boot_id = boot_id
        self.machine_id = machine_id


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
    return bt.ConfigSource(
        machine=lookup.load_machine(ConnectionReader(s.connection()), m.id)
        if m is not None
        else None,
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
        m = _get(s, Machine, machine_id)
        profile = _by_name(s, Profile, profile_name, "profile") if profile_name else None
        return config_source(s, m, profile, profile_name)


def complete_boot(
    db: Database, secret: bytes, token: str, report: dict[str, str], source_ip: str | None
) -> Boot:
    """The booted OS says it is up: consume the one-shot action, move the state on."""
    now = utcnow()
    th = security.token_hash(secret, token)
    with db.write() as s:
        boot = s.scalar(select(Boot).where(Boot.token_hash == th))
        if boot is None:
            raise ForbiddenError("unknown boot token")
        m = _machine_of_boot(s, boot, "unknown boot token")
        if boot.completed_at is not None:
            _event(
                s,
                "completion_refused",
                "completion replayed",
                machine_id=boot.machine_id,
                ip=source_ip,
                boot_id=boot.id,
            )
            raise ForbiddenError("this boot has already completed")
        if boot.expires_at <= now:
            _event(
                s,
                "completion_refused",
                "completion after the token expired",
                machine_id=boot.machine_id,
                ip=source_ip,
                boot_id=boot.id,
            )
            raise ForbiddenError("boot token expired")
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
            if boot.step == "action" and nb is not None and nb.profile.name == boot.profile_name:
                new_state = nb.complete_state or nb.profile.complete_state
                m.next_boot = None
                data["consumed_action"] = boot.profile_name
            elif m.profile is not None and m.profile.name == boot.profile_name:
                new_state = m.profile.complete_state
            if new_state and new_state != m.state:
                data["state"] = [m.state, new_state]
                m.state = new_state
            m.last_seen_at = now
            m.last_seen_ip = source_ip
        _event(
            s,
            "completion",
            f"boot {boot.id} ({boot.profile_name}) completed",
            machine_id=boot.machine_id,
            ip=source_ip,
            **data,
        )
        return boot


# --- retention --------------------------------------------------------------------

#: Rows deleted per transaction. Each chunk holds SQLite's write lock (PostgreSQL's row
#: locks) only briefly, so the event writer's batches keep flowing while a prune runs.
PRUNE_CHUNK: Final = 5000


@dataclass(frozen=True)
class Pruned:
    events: int
    boots: int


def prune(
    db: Database, now: datetime, event_days: int, boot_days: int, chunk: int = PRUNE_CHUNK
) -> Pruned:
    """Delete events older than ``event_days`` and boot records whose token expired
    more than ``boot_days`` ago; 0 keeps that kind forever.

    Nothing else refers to either: an event outlives its machine by design, and an
    expired boot token opens nothing whether its record is there or not."""
    if min(event_days, boot_days) < 0 or chunk < 1:
        raise ValueError("retention days must be 0 (keep) or more, and chunk at least 1")
    events = _prune_events(db, now - timedelta(days=event_days), chunk) if event_days else 0
    boots = _prune_boots(db, now - timedelta(days=boot_days), chunk) if boot_days else 0
    return Pruned(events=events, boots=boots)


def _prune_events(db: Database, cutoff: datetime, chunk: int) -> int:
    """Oldest first, in id order. Ids follow time (the writer stores an event a moment
    after it happened), so the walk ends at the first chunk holding a newer event, and
    ``event.at`` needs no index of its own, which every boot would pay for. An old
    event stored after that chunk is deleted by a later run."""
    deleted, after = 0, 0
    while True:
        with db.write() as s:
            conn = s.connection()
            bound = conn.scalar(
                select(Event.id)
                .where(Event.id > after)
                .order_by(Event.id)
                .offset(chunk - 1)
                .limit(1)
            )
            stmt = delete(Event).where(Event.id > after, Event.at < cutoff)
            if bound is not None:
                stmt = stmt.where(Event.id <= bound)
            count = conn.execute(stmt).rowcount
        deleted += count
        if bound is None or count < chunk:
            return deleted
        after = bound


def _prune_boots(db: Database, cutoff: datetime, chunk: int) -> int:
    oldest = (
        select(Boot.id)
        .where(Boot.expires_at < cutoff)
        .order_by(Boot.expires_at)
        .limit(chunk)
        .scalar_subquery()
    )
    stmt = delete(Boot).where(Boot.id.in_(oldest))
    deleted = 0
    while True:
        with db.write() as s:
            count = s.connection().execute(stmt).rowcount
        deleted += count
        if count < chunk:
            return deleted
