"""The event log: listing it, and the event writer's batch statements.

:func:`write_batch` is the one write the ``/ipxe`` hot path causes, made off the
path by :class:`bootbrain.machine.events.EventWriter`: a batch of boot records,
events and last-seen times in one transaction, each table's rows in one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final, cast

import orjson
from sqlalchemy import Integer, Table, Text, bindparam, column, func, insert, select, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.models import Boot, Event, Machine

from .base import page_of


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
        return page_of(s, stmt, Event.id, q)


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
