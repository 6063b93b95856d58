"""Storage: the engine and sessions, one :class:`Database` per process's services.

SQLite is tuned for several gunicorn workers: WAL (readers never wait for the
writer), a busy timeout, foreign keys on, and write transactions that start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of one failing with
"database is locked" when it upgrades a read snapshot. Reads keep a plain deferred
``BEGIN``; the boot hot path reads in autocommit through :class:`BootReader`, so it
never takes the write lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Engine, PoolProxiedConnection, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from bootbrain.security import create_private_file

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: What storage raises when the database cannot answer (down, locked, full, broken):
#: the layers above catch this name, never SQLAlchemy's.
DatabaseError = SQLAlchemyError


def _sqlite_setup(engine: Engine, path: Path | None) -> None:
    if path is not None:

        @event.listens_for(engine, "do_connect")
        def _before_connect(*_args: Any) -> None:
            # Again for every new connection: a database file removed under a running
            # brain is re-created by SQLite, and must be owner-only as well.
            create_private_file(path)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        # The boot lookup touches random rows of large tables: a 64 MiB page cache and
        # memory-mapped reads keep it off read(2) (65 µs → 15 µs per lookup measured).
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = None
        if parsed.database and parsed.database != ":memory:":
            # The database holds secrets (user-data, token hashes). SQLite creates its
            # file 0644 but gives the -wal and -shm files the database file's mode, so
            # an owner-only empty file made first (SQLite takes it as a new database)
            # keeps all three owner-only, whatever the umask.
            path = Path(parsed.database)
            create_private_file(path)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=8,
            max_overflow=8,
        )
        _sqlite_setup(engine, path)
        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


Row = Mapping[Any, Any]


class Reader(Protocol):
    """What the boot lookup reads through: rows of a SELECT, as mappings by label."""

    dialect: str

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Row]: ...


class ConnectionReader:
    """A :class:`Reader` on an SQLAlchemy connection, e.g. inside a write transaction
    so that the lookup sees the changes about to be committed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Row]:
        return [r._mapping for r in self.conn.execute(stmt, dict(params))]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order, for positional drivers
    fixed: dict[str, Any]  # literal values the statement binds itself
    names: tuple[str, ...]  # result keys, as SQLAlchemy's rows would have them
    processors: tuple[Callable[[Any], Any] | None, ...]


class BootReader:
    """The ``/ipxe`` hot path's reads: each thread holds one DBAPI connection in
    autocommit and runs statements compiled once, with SQLAlchemy's own type
    processing of the results but none of its per-execution machinery.

    A boot storm is thousands of two-index lookups a second; per lookup, pool
    checkout, pre-ping and the execution context cost more than the database did
    (PostgreSQL: the pre-ping alone is a third round trip). Without a pre-ping, a
    connection the server dropped fails once: that failure is retried on a fresh
    connection, so a database restart costs no machine its boot.

    Statements must be built once (module-level or cached) and take plain str/int
    parameters; the compiled form is cached per statement object.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._local = threading.local()
        self._compiled: dict[Select[Any], _Compiled] = {}
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    def _compile(self, stmt: Select[Any]) -> _Compiled:
        found = self._compiled.get(stmt)
        if found is not None:
            return found
        dialect = self.engine.dialect
        compiled = stmt.compile(dialect=dialect)
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        processors = tuple(
            col.type.dialect_impl(dialect).result_processor(dialect, None)
            for col in stmt.selected_columns
        )
        names = tuple(stmt.selected_columns.keys())
        assert len(set(names)) == len(names), f"duplicate result names in {names}"
        found = _Compiled(compiled.string, positions, dict(compiled.params), names, processors)
        if len(self._compiled) > 256:  # statements are meant to be few and fixed
            self._compiled.clear()
        self._compiled[stmt] = found
        return found

    def _connection(self) -> PoolProxiedConnection:
        held: tuple[int, PoolProxiedConnection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        # After a fork the parent's connection is not ours to use, or to close.
        conn = self.engine.raw_connection()
        if self.dialect != "sqlite":  # SQLite connections are in autocommit already
            conn.driver_connection.autocommit = True  # type: ignore[union-attr]
        self._local.held = (os.getpid(), conn)
        return conn

    def _drop(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None and held[0] == os.getpid():
            held[1].invalidate()

    def rows(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Row]:
        c = self._compile(stmt)
        values = {**c.fixed, **params}
        args: Any = tuple(values[n] for n in c.positions) if c.positions is not None else values
        for attempt in (1, 2):
            conn = self._connection()
            cursor = conn.cursor()
            try:
                cursor.execute(c.sql, args)
                data = cursor.fetchall()
            except self._dbapi_error as e:
                gone = self.engine.dialect.is_disconnect(
                    cast(Any, e), conn.driver_connection, cursor
                )
                self._drop()  # whatever broke, the next statement gets a fresh connection
                if gone and attempt == 1:
                    continue
                raise DBAPIError.instance(c.sql, args, e, self._dbapi_error) from e
            cursor.close()
            # Names come from the statement: psycopg builds cursor.description afresh
            # on every call, which cost as much as the rest of the read.
            names, procs = c.names, c.processors
            return [
                {
                    n: (p(v) if p is not None else v)
                    for n, p, v in zip(names, procs, row, strict=True)
                }
                for row in data
            ]
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.is_sqlite
            else (self.engine)
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        #: Called after a commit that changed reservations, with the changes
        #: (:data:`bootbrain.inventory.ReservationChanges`); :mod:`bootbrain.services`
        #: registers the DHCP integration here.
        self.reservation_listeners: list[Callable[[Any], None]] = []
        self.boot_reader = BootReader(self.engine)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._write() as session, session.begin():
            yield session

    def ping(self) -> None:
        """A round trip to the database; raises :data:`DatabaseError` when it fails."""
        with self.read() as s:
            s.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.boot_reader.close()
        self.engine.dispose()
