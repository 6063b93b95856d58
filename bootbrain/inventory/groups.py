"""Groups: their rows, written and read (the boot's read is :func:`lookup.candidate_groups`).

A group's values are checked by the API models (:mod:`bootbrain.schemas`); here the
API names go onto the columns (``metadata`` is ``meta``) and each change is an event.
Nothing refers to a group, so deleting one never conflicts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.models import Group

from .base import (
    add_event,
    check_version,
    flush_or_conflict,
    get_by_id,
    name_free,
    named_conflict,
    page_of,
)


def _assign(g: Group, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name == "metadata":
            g.meta = dict(value)
        elif name in ("tags", "os_tags", "ssh_keys"):
            setattr(g, name, list(dict.fromkeys(value)))
        elif name == "labels":
            g.labels = sorted(set(value))
        elif name == "variables":
            g.variables = dict(sorted(value.items()))
        else:
            setattr(g, name, value)


def add_group(s: Session, data: schemas.GroupIn, actor: str) -> Group:
    name_free(s, Group, data.name)
    g = Group()
    _assign(g, data.model_dump())
    s.add(g)
    flush_or_conflict(s, named_conflict("group", data.name))
    add_event(s, "change", f"group {g.name} created by {actor}", actor=actor)
    return g


def create_group(db: Database, data: schemas.GroupIn, actor: str) -> Group:
    with db.write() as s:
        return add_group(s, data, actor)


def get_group(db: Database, group_id: int) -> Group:
    with db.read() as s:
        return get_by_id(s, Group, group_id)


def list_groups(db: Database, q: schemas.PageQuery) -> tuple[list[Group], int | None]:
    with db.read() as s:
        return page_of(s, select(Group), Group.id, q)


def change_group(s: Session, g: Group, fields: dict[str, Any], actor: str, how: str = "") -> None:
    """Set ``fields`` (API names) on ``g`` within the caller's transaction."""
    _assign(g, fields)
    flush_or_conflict(s, named_conflict("group", g.name))
    add_event(
        s, "change", f"group {g.name} changed by {actor}{how}", actor=actor, fields=sorted(fields)
    )


def update_group(
    db: Database, group_id: int, data: schemas.GroupUpdate, if_match: int | None, actor: str
) -> Group:
    with db.write() as s:
        g = get_by_id(s, Group, group_id)
        check_version("group", g.version, if_match)
        change_group(s, g, data.model_dump(exclude_unset=True), actor)
        return g


def delete_group(db: Database, group_id: int, if_match: int | None, actor: str) -> None:
    with db.write() as s:
        g = get_by_id(s, Group, group_id)
        check_version("group", g.version, if_match)
        s.delete(g)
        add_event(s, "change", f"group {g.name} deleted by {actor}", actor=actor)
