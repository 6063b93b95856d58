"""The whole machine inventory as rows, for ``apply`` and ``export``.

Both handle every machine at once, and loading each as an ORM object with its NICs,
tags, profile and network (then through :class:`~bootbrain.schemas.MachineOut`) is most
of their time at scale. Here a machine is read as a dict in the shape of
:class:`~bootbrain.schemas.MachineCreate`, with the values ``MachineOut`` would show,
in a handful of statements; and a batch of new machines is written with multi-row
``INSERT`` statements in the caller's transaction. The checks stay the API's: the
plan has already checked references, addresses and held keys across the whole final
state (:mod:`bootbrain.inventory.apply`), and each machine's templates are checked
here with :func:`~bootbrain.inventory.checks.check_documents`, as
:func:`~bootbrain.inventory.machines.add_machine` does. The database's reservation
triggers fire on these statements as on any other, so the reconcilers follow.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bootbrain import identity, schemas
from bootbrain.boot import types as bt
from bootbrain.errors import FieldError
from bootbrain.errors import RowProblem as Problem
from bootbrain.models import Event, Machine, MachineTag, Network, Nic, Profile, utcnow

from .checks import check_documents
from .machines import os_config_of

#: Rows a write statement carries (and the progress bar's step).
CHUNK = 2000

_FIELDS = list(schemas.MachineCreate.model_fields)
#: MachineCreate fields that are not a ``machine`` column of the same name.
_SPECIAL = frozenset({"tags", "nics", "profile", "network", "metadata"})
#: Every other field is a column of its own name (the tests compare with MachineOut).
_COLUMNS = [f for f in _FIELDS if f not in _SPECIAL]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def machine_docs(s: Session) -> list[tuple[int, int, dict[str, Any]]]:
    """Every machine as (id, version, body), in id order; the body has exactly the
    :class:`~bootbrain.schemas.MachineCreate` fields, valued as ``MachineOut`` shows
    them (NICs in id order, tags sorted)."""
    cols = [getattr(Machine, c) for c in _COLUMNS]
    nics: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for n in s.execute(select(Nic.machine_id, Nic.mac, Nic.name, Nic.boot).order_by(Nic.id)):
        nics[n.machine_id].append({"mac": n.mac, "name": n.name, "boot": n.boot})
    tags: dict[int, list[str]] = defaultdict(list)
    for t in s.execute(
        select(MachineTag.machine_id, MachineTag.tag).order_by(
            MachineTag.machine_id, MachineTag.tag
        )
    ):
        tags[t.machine_id].append(t.tag)
    profiles = {k: v for k, v in s.execute(select(Profile.id, Profile.name))}
    networks = {k: v for k, v in s.execute(select(Network.id, Network.name))}
    out = []
    stmt = select(
        Machine.id, Machine.version, Machine.profile_id, Machine.network_id, Machine.meta, *cols
    ).order_by(Machine.id)
    for row in s.execute(stmt):
        doc = {c: getattr(row, c) for c in _COLUMNS}
        doc["tags"] = tags.get(row.id, [])
        doc["profile"] = profiles.get(row.profile_id) if row.profile_id else None
        doc["network"] = networks.get(row.network_id) if row.network_id else None
        doc["metadata"] = dict(row.meta)
        doc["nics"] = nics.get(row.id, [])
        doc["ssh_keys"] = list(doc["ssh_keys"])
        out.append((row.id, row.version, {f: doc[f] for f in _FIELDS}))
    return out


def add_machines(
    s: Session,
    rows: Sequence[tuple[int | None, dict[str, Any]]],
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """Create machines from (line, normalised create body) pairs, as
    :func:`~bootbrain.inventory.machines.add_machine` would one by one: the same
    template check, the same derived keys, a ``change`` event each. Every bad row is
    returned as a problem on its line, and then nothing is written."""
    problems = _check_documents(s, rows)
    if problems:
        return problems
    profiles = {k: v for k, v in s.execute(select(Profile.name, Profile.id))}
    networks = {k: v for k, v in s.execute(select(Network.name, Network.id))}
    fields = sorted(schemas.MachineCreate.model_fields)
    now = utcnow()
    done = 0
    for chunk in chunks(rows):
        values = []
        for _, d in chunk:
            v = {c: d[c] for c in _COLUMNS}
            v.update(
                uuid_key=identity.uuid_key(d["uuid"]),
                serial_key=identity.serial_key(d["serial"]),
                board_serial_key=identity.serial_key(d["board_serial"]),
                profile_id=profiles[d["profile"]] if d["profile"] else None,
                network_id=networks[d["network"]] if d["network"] else None,
                meta=d["metadata"],
                created_at=now,
                updated_at=now,
                version=1,
            )
            values.append(v)
        ids = s.scalars(
            insert(Machine).returning(Machine.id, sort_by_parameter_order=True), values
        ).all()
        nics = [
            {"machine_id": i, "mac": n["mac"], "name": n["name"], "boot": n["boot"]}
            for i, (_, d) in zip(ids, chunk, strict=True)
            for n in d["nics"]
        ]
        tags = [
            {"machine_id": i, "tag": t}
            for i, (_, d) in zip(ids, chunk, strict=True)
            for t in dict.fromkeys(d["tags"])
        ]
        events = [
            {
                "kind": "change",
                "message": f"machine {i} created by {actor}",
                "machine_id": i,
                "data": {"actor": actor, "fields": fields},
                "at": now,
            }
            for i in ids
        ]
        for model, batch in ((Nic, nics), (MachineTag, tags), (Event, events)):
            if batch:
                s.execute(insert(model), batch)
        done += len(chunk)
        if progress is not None:
            progress(done, len(rows))
    return problems


def _check_documents(
    s: Session, rows: Sequence[tuple[int | None, dict[str, Any]]]
) -> list[Problem]:
    """:func:`check_documents` of each machine over its profile's, once per distinct
    (configuration, profile): machines made from one template share theirs."""
    profiles = {p.name: os_config_of(p) for p in s.scalars(select(Profile))}
    seen: dict[str, FieldError | None] = {}
    problems = []
    for line, d in rows:
        key = json.dumps(
            [
                d["ssh_keys"],
                d["tags"],
                d["metadata"],
                d["user_data"],
                d["vendor_data"],
                d["variables"],
                d["profile"],
            ],
            sort_keys=True,
        )
        if key not in seen:
            config = bt.OsConfig(
                ssh_keys=tuple(d["ssh_keys"]),
                tags=tuple(dict.fromkeys(d["tags"])),
                metadata=dict(d["metadata"]),
                user_data=d["user_data"],
                vendor_data=d["vendor_data"],
                variables=dict(d["variables"]),
            )
            context = profiles.get(d["profile"]) if d["profile"] else None
            try:
                check_documents(config, context or bt.OsConfig())
                seen[key] = None
            except FieldError as e:
                seen[key] = e
        if (error := seen[key]) is not None:
            problems.append(Problem(line or 0, error.field, error.message))
    return problems
