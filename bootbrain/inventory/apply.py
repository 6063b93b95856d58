"""``bootbrain apply``: the YAML ``bootbrain export`` writes, as a desired state.

The document is compared with the inventory by natural keys — networks, profiles,
rules and groups by name; machines by hostname, else boot MAC (else UUID, else serial) — and
gives a :class:`Plan`: creates, updates with the fields that change and, with
``prune``, deletes of what the file does not name. Both sides are compared in one
form: the inventory's objects are exported and read back through the same create
models as the file's rows, so applying an exported inventory plans nothing.

A plan is checked whole before anything is written (every reference resolves in the
state it leaves, no MAC, UUID or address held twice, every address inside its
network); every problem is reported with the line of the row it concerns, as
``import`` does. It is applied in one transaction, all or nothing. It records the
version of each object it plans to change (0: absent): applying with those versions
after someone else changed one of them fails with :class:`~bootbrain.errors.PlanStaleError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bootbrain import identity, schemas
from bootbrain.db import Database
from bootbrain.errors import (
    BootbrainError,
    ConflictError,
    FieldError,
    IdentityError,
    ImportRowsError,
    PlanStaleError,
)
from bootbrain.errors import RowProblem as Problem
from bootbrain.models import Boot, Group, Machine, Network, Profile, Rule

from . import bulk
from .base import add_event, by_name, flush_or_conflict, named_conflict
from .catalog import _profile_lookup, add_network, add_profile, add_rule
from .checks import check_profile
from .groups import add_group, change_group
from .machines import (
    _apply_machine,
    _machine_conflict,
    _precheck_machine,
    add_machine,
    apply_os_config,
)
from .transfer import _MODELS, SECTIONS, Row, _yaml_rows

#: Called as the work goes with (stage, done, of): the CLI's progress bar. Stages:
#: parsing (characters), checking rows, reading the inventory, writing (steps), writing
#: machines (rows).
Stages = Callable[[str, int, int], None]

KINDS = {
    "networks": "network",
    "profiles": "profile",
    "rules": "rule",
    "groups": "group",
    "machines": "machine",
}
#: Values never printed in a diff (they can hold passwords).
SECRET = frozenset(schemas.PROFILE_SECRET_FIELDS)


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass
class Change:
    action: str  # create | update | delete
    kind: str  # network | profile | rule | group | machine
    key: str
    line: int | None  # the file's row (None for a delete)
    fields: list[FieldChange] = field(default_factory=list)
    version: int = 0  # the object's version the plan was made against (0: absent)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.key}"


@dataclass
class Plan:
    changes: list[Change]
    prune: bool

    @property
    def versions(self) -> dict[str, int]:
        """What the plan was made against: each planned object's version (0: absent)."""
        return {c.name: c.version for c in self.changes}

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("create", "update", "delete"), 0)
        for c in self.changes:
            out[c.action] += 1
        return out

    def diff(self) -> str:
        """The plan as a person reads it: ``+`` create, ``~`` change, ``-`` delete."""
        lines = []
        for c in self.changes:
            mark = {"create": "+", "update": "~", "delete": "-"}[c.action]
            lines.append(f"{mark} {c.name}")
            for f in c.fields:
                if f.field in SECRET:
                    lines.append(f"    {f.field}: (secret, changed)")
                else:
                    lines.append(f"    {f.field}: {_show(f.old)} -> {_show(f.new)}")
        n = self.counts()
        if not self.changes:
            lines.append("no changes")
        else:
            lines.append(
                f"plan: {n['create']} to create, {n['update']} to change, {n['delete']} to delete"
            )
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and value and value.isprintable() and value.strip() == value:
        return value
    return json.dumps(value, ensure_ascii=False)


# --- the two sides in one form ------------------------------------------------------------


@dataclass
class Item:
    """One object of either side, as its create model dumps it."""

    kind: str  # the section: networks | profiles | rules | machines
    data: dict[str, Any]
    line: int | None = None  # desired: the file's row
    id: int | None = None  # current: the row's id
    version: int = 0


def _normal(kind: str, model: BaseModel) -> dict[str, Any]:
    """A create body in the form the inventory stores it: defaults the writes fill in
    (the first NIC boots, eth0, tags without repeats) filled in here too."""
    d = model.model_dump()
    if kind == "machines":
        nics = d["nics"]
        if nics and not any(n["boot"] for n in nics):
            nics[0]["boot"] = True
        d["tags"] = sorted(set(d["tags"]))
        if d["address"] is not None and d["interface"] is None:
            d["interface"] = "eth0"
    elif kind == "profiles":
        d["tags"] = list(dict.fromkeys(d["tags"]))
    return d


def _current(s: Session, progress: Stages | None = None) -> dict[str, list[Item]]:
    keep = {k: set(m.model_fields) for k, m in _MODELS.items()}
    out: dict[str, list[Item]] = {k: [] for k in SECTIONS}

    def add(kind: str, row: Any, doc: dict[str, Any]) -> None:
        model = _MODELS[kind].model_validate(doc)
        out[kind].append(Item(kind, _normal(kind, model), id=row.id, version=row.version))

    for n in s.scalars(select(Network).order_by(Network.id)):
        add("networks", n, schemas.NetworkOut.of(n).model_dump(include=keep["networks"]))
    for p in s.scalars(select(Profile).order_by(Profile.id)):
        doc = schemas.ProfileOut.of(p, reveal=True).model_dump(include=keep["profiles"])
        add("profiles", p, doc)
    for r in s.scalars(select(Rule).order_by(Rule.id)):
        add("rules", r, schemas.RuleOut.of(r).model_dump(include=keep["rules"]))
    for g in s.scalars(select(Group).order_by(Group.id)):
        add("groups", g, schemas.GroupOut.of(g).model_dump(include=keep["groups"]))
    docs = bulk.machine_docs(s)
    for done, (machine_id, version, doc) in enumerate(docs, start=1):
        model = _MODELS["machines"].model_validate(doc)
        out["machines"].append(
            Item("machines", _normal("machines", model), id=machine_id, version=version)
        )
        if progress is not None and done % bulk.CHUNK == 0:
            progress("reading the inventory", done, len(docs))
    return out


def _desired(
    text: str, progress: Stages | None = None
) -> tuple[dict[str, list[Item]], list[Problem]]:
    parsed = None if progress is None else (lambda done, total: progress("parsing", done, total))
    try:
        rows: list[Row] = list(_yaml_rows(text, parsed))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ImportRowsError([Problem(mark.line + 1 if mark else 1, "file", str(e))]) from None
    out: dict[str, list[Item]] = {k: [] for k in SECTIONS}
    problems: list[Problem] = []
    for done, row in enumerate(rows, start=1):
        if progress is not None and done % bulk.CHUNK == 0:
            progress("checking rows", done, len(rows))
        try:
            model = _MODELS[row.kind].model_validate(row.data)
        except ValidationError as e:
            for err in e.errors():
                name = ".".join(str(p) for p in err["loc"]) or row.kind
                problems.append(Problem(row.line, name, err["msg"].removeprefix("Value error, ")))
            continue
        out[row.kind].append(Item(row.kind, _normal(row.kind, model), line=row.line))
    return out, problems


def _boot_mac(d: dict[str, Any]) -> str | None:
    nics = d["nics"]
    return next((n["mac"] for n in nics if n["boot"]), nics[0]["mac"] if nics else None)


def _machine_keys(d: dict[str, Any]) -> list[str]:
    """The keys a machine is matched by, best first."""
    keys = []
    if d["hostname"]:
        keys.append(d["hostname"])
    if (mac := _boot_mac(d)) is not None:
        keys.append(mac)
    if identity.uuid_key(d["uuid"]):
        keys.append(f"uuid:{d['uuid']}")
    if identity.serial_key(d["serial"]):
        keys.append(f"serial:{d['manufacturer'] or ''}/{d['serial']}")
    return keys


def _match(
    kind: str, want: list[Item], have: list[Item], problems: list[Problem]
) -> tuple[list[tuple[Item, Item | None, str]], list[tuple[Item, str]]]:
    """Pairs (desired, current or None, key) and the current objects nobody claims."""
    pairs: list[tuple[Item, Item | None, str]] = []
    claimed: set[int] = set()
    if kind != "machines":
        by_name = {h.data["name"]: h for h in have}
        seen: dict[str, int | None] = {}
        for w in want:
            name = w.data["name"]
            if name in seen:
                problems.append(
                    Problem(
                        w.line or 0, "name", f"{KINDS[kind]} {name} is also on line {seen[name]}"
                    )
                )
                continue
            seen[name] = w.line
            h = by_name.get(name)
            if h is not None:
                claimed.add(id(h))
            pairs.append((w, h, name))
        return pairs, [(h, h.data["name"]) for h in have if id(h) not in claimed]
    # Machines: by hostname first, then the rest by boot MAC, UUID or serial.
    hosts = {h.data["hostname"]: h for h in have if h.data["hostname"]}
    others: dict[str, Item] = {}
    for h in have:
        for k in _machine_keys(h.data)[1 if h.data["hostname"] else 0 :]:
            others.setdefault(k, h)
    seen_keys: dict[str, int | None] = {}
    rows: list[tuple[Item, str]] = []
    for w in want:
        keys = _machine_keys(w.data)
        if not keys:
            problems.append(
                Problem(
                    w.line or 0,
                    "hostname",
                    "a machine needs a hostname, a MAC, a UUID or a serial to be matched",
                )
            )
        elif keys[0] in seen_keys:
            problems.append(
                Problem(
                    w.line or 0,
                    "hostname",
                    f"machine {keys[0]} is also on line {seen_keys[keys[0]]}",
                )
            )
        else:
            seen_keys[keys[0]] = w.line
            rows.append((w, keys[0]))
    found: dict[int, Item] = {}
    for w, _ in rows:
        h = hosts.get(w.data["hostname"]) if w.data["hostname"] else None
        if h is not None:
            claimed.add(id(h))
            found[id(w)] = h
    for w, _ in rows:
        if id(w) in found:
            continue
        for k in _machine_keys(w.data)[1 if w.data["hostname"] else 0 :]:
            h = others.get(k)
            if h is not None and id(h) not in claimed:
                claimed.add(id(h))
                found[id(w)] = h
                break
    pairs = [(w, found.get(id(w)), key) for w, key in rows]
    left = [h for h in have if id(h) not in claimed]
    return pairs, [(h, (_machine_keys(h.data) or [f"id:{h.id}"])[0]) for h in left]


def _fields(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    return [FieldChange(k, old.get(k), v) for k, v in new.items() if old.get(k) != v]


# --- the plan -----------------------------------------------------------------------------


@dataclass
class _Draft:
    plan: Plan
    problems: list[Problem]
    #: The state the plan leaves, per section: name/key → (data, line or None).
    final: dict[str, dict[str, tuple[dict[str, Any], int | None]]]
    pairs: dict[str, list[tuple[Item, Item | None, str]]]
    gone: dict[str, list[tuple[Item, str]]]
    inconsistent: bool = False


def _draft(s: Session, text: str, prune: bool, progress: Stages | None = None) -> _Draft:
    want, problems = _desired(text, progress)
    have = _current(s, progress)
    changes: list[Change] = []
    final: dict[str, dict[str, tuple[dict[str, Any], int | None]]] = {k: {} for k in SECTIONS}
    pairs: dict[str, list[tuple[Item, Item | None, str]]] = {}
    gone: dict[str, list[tuple[Item, str]]] = {}
    for kind in SECTIONS:
        pairs[kind], left = _match(kind, want[kind], have[kind], problems)
        gone[kind] = left if prune else []
        for w, h, key in pairs[kind]:
            final[kind][key] = (w.data, w.line)
            if h is None:
                changes.append(Change("create", KINDS[kind], key, w.line))
            elif fields := _fields(h.data, w.data):
                changes.append(Change("update", KINDS[kind], key, w.line, fields, h.version))
        for h, key in left:
            if prune:
                changes.append(Change("delete", KINDS[kind], key, None, version=h.version))
            else:
                final[kind].setdefault(key, (h.data, None))
    draft = _Draft(Plan(changes, prune), problems, final, pairs, gone)
    found = len(problems)
    _check_consistency(draft)
    draft.inconsistent = len(problems) > found
    return draft


def _check_consistency(d: _Draft) -> None:
    """Every problem of the state the plan would leave, on the line of a row it concerns."""
    p = d.problems
    profiles, networks = d.final["profiles"], d.final["networks"]
    deleted = {KINDS[k]: {key for _, key in d.gone[k]} for k in SECTIONS}

    def missing(kind: str, name: str) -> str:
        if name in deleted[kind]:
            return f"{kind} {name} is deleted by this plan (prune)"
        return f"no {kind} named {name!r}"

    def report(line: int | None, where: str, name: str, message: str) -> None:
        p.append(Problem(line or 0, name, message if line else f"{where}: {message}"))

    for pname, (data, line) in profiles.items():
        for i, item in enumerate((data.get("menu") or {}).get("items", [])):
            if item["profile"] not in profiles:
                report(
                    line,
                    f"profile {pname}",
                    f"menu.items.{i}.profile",
                    missing("profile", item["profile"]),
                )
    for rname, (data, line) in d.final["rules"].items():
        if data["profile"] not in profiles:
            report(line, f"rule {rname}", "profile", missing("profile", data["profile"]))
    holders: dict[tuple[str, str], tuple[str, int | None]] = {}
    for key, (data, line) in d.final["machines"].items():
        where = f"machine {key}"
        if data["profile"] and data["profile"] not in profiles:
            report(line, where, "profile", missing("profile", data["profile"]))
        net, address = data["network"], data["address"]
        if net and net not in networks:
            report(line, where, "network", missing("network", net))
        elif net and address:
            try:
                identity.check_address_in(address, networks[net][0]["cidr"])
                if address == networks[net][0]["gateway"]:
                    report(line, where, "address", f"{address} is the network's gateway")
            except IdentityError as e:
                report(line, where, "address", str(e))
        if address and not net:
            report(line, where, "network", "a static address needs the network it belongs to")
        if net and not address:
            report(line, where, "address", "a machine on a static network needs an address")
        claims = [("nics", "MAC", n["mac"]) for n in data["nics"]]
        if (uuid := identity.uuid_key(data["uuid"])) is not None:
            claims.append(("uuid", "UUID", uuid))
        if net and address:
            claims.append(("address", "address", f"{address} on {net}"))
        for name, label, value in claims:
            other_where, other_line = holders.setdefault((name, value), (where, line))
            if other_where == where:
                continue
            both = f"{label} {value} would belong to both {other_where} and {where}"
            if line:
                report(line, where, name, both)
            else:
                report(other_line, other_where, name, both)


# --- applying -----------------------------------------------------------------------------


class _DryRun(Exception):  # noqa: N818 - control flow, never leaves this module
    """Raised to roll back a dry run's transaction."""


def plan(db: Database, text: str, prune: bool = False) -> Plan:
    """The plan of ``text`` against the inventory now; changes nothing.

    It is carried out in a transaction that is rolled back, so it finds every problem
    the real apply would (a template that does not compile, a key another machine
    holds) and raises :class:`~bootbrain.errors.ImportRowsError` listing each.
    """
    return _run(db, text, "dry-run", prune, None, None, commit=False)


def apply(
    db: Database,
    text: str,
    actor: str,
    prune: bool = False,
    expected: dict[str, int] | None = None,
    progress: Stages | None = None,
) -> Plan:
    """Plan ``text`` and carry the plan out in one transaction, all or nothing.

    ``expected``: the :attr:`Plan.versions` of the plan the caller reviewed; a planned
    object changed since (or a change that plan did not show) raises
    :class:`~bootbrain.errors.PlanStaleError` naming each, and nothing is written.
    """
    # The DHCP servers follow through the reservation version the triggers raise.
    return _run(db, text, actor, prune, expected, progress, commit=True)


def _run(
    db: Database,
    text: str,
    actor: str,
    prune: bool,
    expected: dict[str, int] | None,
    progress: Stages | None,
    commit: bool,
) -> Plan:
    try:
        with db.write() as s:
            draft = _draft(s, text, prune, progress)
            if expected is not None:
                _check_versions(draft.plan.versions, expected)
            problems = list(draft.problems)
            if not draft.inconsistent:  # else the writes would only repeat those problems
                problems += _execute(s, draft, actor, progress)
            if problems:
                first: dict[tuple[int, str], Problem] = {}
                for p in problems:
                    first.setdefault((p.line, p.field), p)
                raise ImportRowsError(sorted(first.values(), key=lambda x: x.line))
            if not commit:
                raise _DryRun
    except _DryRun:
        pass
    return draft.plan


def _check_versions(now: dict[str, int], expected: dict[str, int]) -> None:
    stale = [
        f"{name} changed since the plan was made"
        if name in expected
        else f"{name} would change, and the plan you reviewed did not say so"
        for name in now
        if expected.get(name) != now[name]
    ]
    stale += [f"{name} changed since the plan was made" for name in expected if name not in now]
    if stale:
        raise PlanStaleError(stale)


def _execute(s: Session, d: _Draft, actor: str, progress: Stages | None) -> list[Problem]:
    problems: list[Problem] = []
    steps: list[tuple[int | None, str, Callable[[], Any]]] = []
    changed = {(c.kind, c.key) for c in d.plan.changes}

    def upserts(
        kind: str,
        only: Callable[[dict[str, Any]], bool] = lambda _: True,
        existing: bool | None = None,
    ) -> None:
        for w, h, key in d.pairs[kind]:
            if (KINDS[kind], key) not in changed or not only(w.data):
                continue
            if existing is not None and (h is not None) != existing:
                continue
            steps.append((w.line, kind, _upsert(s, kind, w, h, key, actor)))

    def deletes(kind: str, only: Callable[[dict[str, Any]], bool] = lambda _: True) -> None:
        for h, key in d.gone[kind]:
            if only(h.data):
                steps.append((None, f"{KINDS[kind]} {key}", _delete(s, kind, h, key, actor)))

    deletes("machines")
    deletes("rules")
    upserts("networks")
    upserts("profiles", lambda p: p["kind"] != "menu")
    upserts("profiles", lambda p: p["kind"] == "menu")
    upserts("rules")
    upserts("groups")
    deletes("groups")
    upserts("machines", existing=True)  # first: they may free what a new machine takes
    # New machines are written together, in multi-row statements (bulk).
    creates = [
        (w.line, w.data)
        for w, h, key in d.pairs["machines"]
        if h is None and ("machine", key) in changed
    ]
    if creates:
        steps.append((None, "machines", lambda: _add_machines(s, creates, actor, progress)))
    deletes("profiles", lambda p: p["kind"] == "menu")
    deletes("profiles", lambda p: p["kind"] != "menu")
    deletes("networks")
    for done, (line, where, step) in enumerate(steps, start=1):
        if progress is not None:
            progress("writing", done, len(steps))
        try:
            with s.begin_nested():
                step()
        except (FieldError, ConflictError) as e:
            problems.append(
                Problem(line or 0, e.field, e.message if line else f"{where}: {e.message}")
            )
        except ImportRowsError as e:
            problems.extend(e.problems)
        except BootbrainError as e:
            problems.append(Problem(line or 0, where, str(e)))
    return problems


def _add_machines(
    s: Session,
    rows: list[tuple[int | None, dict[str, Any]]],
    actor: str,
    progress: Stages | None,
) -> None:
    done = None if progress is None else (lambda n, of: progress("writing machines", n, of))
    try:
        problems = bulk.add_machines(s, rows, actor, done)
    except IntegrityError as e:  # the plan refused keys held twice; this is the last word
        raise ConflictError("machines", f"conflicts with the inventory: {e.orig}") from None
    if problems:
        raise ImportRowsError(problems)


def _upsert(
    s: Session, kind: str, w: Item, h: Item | None, key: str, actor: str
) -> Callable[[], Any]:
    model = _MODELS[kind].model_validate(w.data)
    if h is None:
        adder: dict[str, Callable[[], Any]] = {
            "networks": lambda: add_network(s, model, actor),  # type: ignore[arg-type]
            "profiles": lambda: add_profile(s, model, actor),  # type: ignore[arg-type]
            "rules": lambda: add_rule(s, model, actor),  # type: ignore[arg-type]
            "groups": lambda: add_group(s, model, actor),  # type: ignore[arg-type]
            "machines": lambda: add_machine(s, model, actor),  # type: ignore[arg-type]
        }
        return adder[kind]
    changes = {f.field: f.new for f in _fields(h.data, w.data)}
    assert h.id is not None

    def update() -> None:
        message = f"{KINDS[kind]} {key} changed by {actor} (apply)"
        if kind == "networks":
            n = s.get_one(Network, h.id)
            for k, v in changes.items():
                setattr(n, k, v)
            flush_or_conflict(s, named_conflict("network", n.name))
        elif kind == "profiles":
            check_profile(w.data, _profile_lookup(s))
            p = s.get_one(Profile, h.id)
            for k, v in changes.items():
                if k not in ("tags", "ssh_keys", "metadata", "user_data", "vendor_data"):
                    setattr(p, k, v)
            apply_os_config(p, changes)
            flush_or_conflict(s, named_conflict("profile", p.name))
        elif kind == "groups":
            change_group(s, s.get_one(Group, h.id), changes, actor, " (apply)")
            return
        elif kind == "rules":
            r = s.get_one(Rule, h.id)
            for k, v in changes.items():
                setattr(r, k, by_name(s, Profile, v, "profile") if k == "profile" else v)
            flush_or_conflict(s, named_conflict("rule", r.name))
        else:
            m = s.get_one(Machine, h.id)
            with s.no_autoflush:
                _apply_machine(s, m, changes)
                _precheck_machine(s, m, [n["mac"] for n in changes.get("nics", [])])
            flush_or_conflict(s, _machine_conflict(s, m))
            add_event(s, "change", message, machine_id=m.id, actor=actor, fields=sorted(changes))
            return
        add_event(s, "change", message, actor=actor, fields=sorted(changes))

    return update


def _delete(s: Session, kind: str, h: Item, key: str, actor: str) -> Callable[[], Any]:
    model = {
        "networks": Network,
        "profiles": Profile,
        "rules": Rule,
        "groups": Group,
        "machines": Machine,
    }[kind]

    def remove() -> None:
        obj = s.get_one(model, h.id)
        if kind == "machines":
            s.execute(delete(Boot).where(Boot.machine_id == h.id))
        s.delete(obj)
        flush_or_conflict(s, lambda e: ConflictError("id", f"{KINDS[kind]} {key} is still in use"))
        add_event(
            s,
            "change",
            f"{KINDS[kind]} {key} deleted by {actor} (apply)",
            actor=actor,
            machine_id=h.id if kind == "machines" else None,
        )

    return remove
