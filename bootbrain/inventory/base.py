"""What every inventory module shares: the change event, paging, lookups by id and
name, optimistic versions, and turning a unique-constraint failure into a
:class:`~bootbrain.errors.ConflictError` that names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bootbrain import schemas
from bootbrain.errors import ConflictError, FieldError, NotFoundError, StaleError
from bootbrain.models import Event

T = TypeVar("T")

#: The id columns are 32-bit integers on every backend.
MAX_ID = 2**31 - 1


def add_event(
    s: Session,
    kind: str,
    message: str,
    *,
    machine_id: int | None = None,
    mac: str | None = None,
    ip: str | None = None,
    **data: Any,
) -> None:
    """An event in the caller's transaction: it commits (or not) with the change."""
    s.add(Event(kind=kind, message=message, machine_id=machine_id, mac=mac, ip=ip, data=data))


def check_version(resource: str, current: int, if_match: int | None) -> None:
    if if_match is not None and if_match != current:
        raise StaleError(resource, str(if_match), str(current))


def page_of(
    s: Session, stmt: Select[Any], id_col: Any, q: schemas.PageQuery
) -> tuple[list[Any], int | None]:
    """One page of ``stmt`` after the cursor ``q.after``, and the next cursor (or None)."""
    if q.after is not None:
        stmt = stmt.where(id_col > q.after)
    rows = list(s.scalars(stmt.order_by(id_col).limit(q.limit + 1)).unique())
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, (getattr(rows[-1], "id", None) if more and rows else None)


def by_name(s: Session, model: Any, name: str, field: str) -> Any:
    """The object named ``name``, or a FieldError on ``field`` (it names a missing one)."""
    obj = s.scalar(select(model).where(model.name == name))
    if obj is None:
        raise FieldError(field, f"no {model.__tablename__} named {name!r}")
    return obj


def get_by_id(s: Session, model: type[T], key: int) -> T:
    obj = s.get(model, key) if 0 < key <= MAX_ID else None
    if obj is None:
        raise NotFoundError(getattr(model, "__tablename__", "resource"), key)
    return obj


def flush_or_conflict(s: Session, on_conflict: Callable[[IntegrityError], Exception]) -> None:
    """Flush; a unique-constraint failure becomes ``on_conflict``'s error, a lost race
    against another writer's version a StaleError."""
    try:
        s.flush()
    except IntegrityError as e:
        raise on_conflict(e) from None
    except StaleDataError:
        raise StaleError("resource", "?", "newer") from None


def named_conflict(resource: str, name: str | None) -> Callable[[IntegrityError], Exception]:
    return lambda e: ConflictError("name", f"a {resource} named {name!r} exists")


def name_free(s: Session, model: type[Any], name: str) -> None:
    if s.scalar(select(model.id).where(model.name == name)) is not None:
        raise ConflictError("name", f"a {model.__tablename__} named {name!r} exists")
