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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

from sqlalchemy import Connection, Engine, PoolProxiedConnection, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from bootbrain.errors import BusyError
from bootbrain.security import create_private_file

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long an operator API write waits for the database's write lock before it is
#: answered 503: a sync worker waiting on a lock is a worker no machine can use.
API_LOCK_WAIT_S = 3.0
#: The ``Retry-After`` a busy answer suggests, in seconds.
BUSY_RETRY_AFTER_S = 5

#: What storage raises when the database cannot answer (down, locked, full, broken):
#: the layers above catch this name, never SQLAlchemy's.
DatabaseError = SQLAlchemyError


def is_record_error(exc: BaseException) -> bool:
    """Whether a failed write was refused for what it wrote (a constraint, a value the
    column cannot hold), so that writing it again can never succeed; otherwise the
    database could not answer (down, locked, full), and a retry may."""
    return isinstance(exc, IntegrityError | DataError | ValueError)


#: The lock wait of write transactions begun in this context (None: the default,
#: :data:`SQLITE_BUSY_TIMEOUT_MS` on SQLite, no limit on PostgreSQL). The operator
#: API sets it per request (:func:`short_lock_waits`); the event writer's thread and
#: the CLI keep the default.
_lock_wait: ContextVar[float | None] = ContextVar("bootbrain_lock_wait", default=None)


@contextmanager
def short_lock_waits(seconds: float = API_LOCK_WAIT_S) -> Iterator[None]:
    """Write transactions begun inside wait at most ``seconds`` for a lock, then raise
    :class:`~bootbrain.errors.BusyError`."""
    reset = _lock_wait.set(seconds)
    try:
        yield
    finally:
        _lock_wait.reset(reset)


def set_lock_wait(seconds: float | None) -> None:
    """:func:`short_lock_waits` for hooks that cannot wrap a block (a request's
    before/teardown pair); None restores the default."""
    _lock_wait.set(seconds)


def is_busy(e: BaseException) -> bool:
    """Whether a database error means "locked, try again" (SQLite's busy timeout ran
    out, PostgreSQL's lock_timeout fired) rather than a broken or absent database."""
    orig = getattr(e, "orig", e)
    if isinstance(orig, sqlite3.OperationalError):
        return "database is locked" in str(orig) or "database table is locked" in str(orig)
    # PostgreSQL: lock_not_available (lock_timeout, NOWAIT)
    return getattr(orig, "sqlstate", None) == "55P03"


def is_unavailable(e: BaseException) -> bool:
    """Whether a database error says the database cannot answer now (down, locked,
    file gone, full) rather than that a statement was wrong: worth a 503, not a 500."""
    if isinstance(e, DatabaseFileError | OperationalError | InterfaceError):
        return True
    return isinstance(e, DBAPIError) and bool(e.connection_invalidated)


class DatabaseFileError(SQLAlchemyError):
    """The SQLite file bootbrain opened is no longer the one at its path (removed or
    replaced under the running server): nothing is read from or written to it."""


class _FileWatch:
    """The SQLite database file's identity (device, inode) as first opened, compared
    with what the path holds now, at most once a ``interval`` per process.

    A file removed or replaced under a running server is still open in every pooled
    connection: reads would answer from a file nobody will see again, and writes
    (boot records, tokens) would vanish with it. So once the path no longer holds
    the file first opened, every connection refuses (:class:`DatabaseFileError`):
    machines get a retry script, the API 503, ``/healthz`` names it; a restart opens
    whatever is at the path then.
    """

    def __init__(self, path: str, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        #: The file this process serves: the one at the path when it started, or
        #: (a new database) the one its first connection created.
        self.opened: tuple[int, int] | None = self.current()
        self._checked = 0.0
        self._problem: str | None = None

    def current(self) -> tuple[int, int] | None:
        try:
            st = Path(self.path).stat()
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def record(self) -> None:
        if self.opened is None:
            self.opened = self.current()

    def problem(self, fresh: bool = False) -> str | None:
        """Why the file at the path is not the one opened, or None."""
        if self.opened is None:
            return None
        now = time.monotonic()
        if fresh or now - self._checked >= self.interval:
            found = self.current()
            if found is None:
                self._problem = f"the database file {self.path} was removed"
            elif found != self.opened:
                self._problem = f"the database file {self.path} was replaced"
            else:
                self._problem = None
            self._checked = now
        return self._problem

    def check(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise DatabaseFileError(f"{problem} since bootbrain opened it: restart bootbrain")


def _sqlite_setup(engine: Engine, watch: _FileWatch | None) -> None:
    if watch is not None:

        @event.listens_for(engine, "do_connect")
        def _before_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> None:
            # Refused before sqlite3 could create an empty file where the old one was.
            watch.check()
            if watch.opened is not None and not cparams.get("uri"):
                cargs[:] = [f"file:{quote(watch.path)}?mode=rw"]
                cparams["uri"] = True

        @event.listens_for(engine, "checkout")
        def _on_checkout(_dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            watch.check()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if watch is not None:
            watch.record()
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
        options = conn.get_execution_options()
        mode = options.get("sqlite_begin", "DEFERRED")
        wait = _lock_wait.get() if options.get("bootbrain_write") else None
        if wait is not None:
            # Before BEGIN: BEGIN IMMEDIATE is where a writer waits for the lock.
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait * 1000)}")
            conn.info["bootbrain_short_wait"] = True
        conn.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        # The next user of this connection gets the default wait back.
        if dbapi_conn is not None and record.info.pop("bootbrain_short_wait", False):
            try:
                dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            except sqlite3.Error:
                record.invalidate()


def _postgresql_setup(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        wait = _lock_wait.get() if conn.get_execution_options().get("bootbrain_write") else None
        if wait is not None:
            # SET LOCAL: ends with the transaction, the pooled connection keeps no trace.
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'")


def sqlite_path(url: str) -> str | None:
    """The file of an SQLite URL (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("uri") or str(parsed.database).startswith("file:"):
        return None  # a URI names its own options; not watched
    return str(Path(str(parsed.database)).absolute())


def make_engine(url: str, watch: _FileWatch | None = None) -> Engine:
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
            # Error messages (which get logged) never carry the values written:
            # user-data, BMC passwords.
            hide_parameters=True,
        )
        _sqlite_setup(engine, watch)
        return engine
    engine = create_engine(
        url, pool_size=8, max_overflow=8, pool_pre_ping=True, hide_parameters=True
    )
    _postgresql_setup(engine)
    return engine


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

    def __init__(self, engine: Engine, watch: _FileWatch | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._watch = watch
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
        if self._watch is not None and self._watch.problem() is not None:
            self._drop()  # never answer from a file that is gone
            self._watch.check()
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


@dataclass(frozen=True)
class Health:
    """What ``/healthz`` reports: each check's state ("ok" or why not)."""

    checks: dict[str, str]

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.checks.items() if state != "ok"]


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        path = sqlite_path(url)
        self._watch = _FileWatch(path) if path else None
        self.engine = make_engine(url, self._watch)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self.engine.execution_options(bootbrain_write=True)
        if self.is_sqlite:
            writer = writer.execution_options(sqlite_begin="IMMEDIATE")
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        self.boot_reader = BootReader(self.engine, self._watch)
        self._probe_lock = threading.Lock()
        self._probed = (-1e9, "ok")  # (when, result) of the last write probe

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception.

        Inside :func:`short_lock_waits` a lock not granted in time raises
        :class:`~bootbrain.errors.BusyError` instead of waiting on."""
        try:
            with self._write() as session, session.begin():
                yield session
        except DBAPIError as e:
            if _lock_wait.get() is not None and is_busy(e):
                raise BusyError("the database is busy (locked by another writer)") from e
            raise

    def ping(self) -> None:
        """A round trip to the database; raises :data:`DatabaseError` when it fails."""
        with self.read() as s:
            s.execute(text("SELECT 1"))

    # --- health -------------------------------------------------------------------------

    #: Below this many free bytes where the database lives, it counts as full.
    MIN_FREE_BYTES = 8 * 1024 * 1024
    #: The write probe runs at most once in this many seconds per process.
    PROBE_INTERVAL_S = 5.0

    def health(self, expected_revision: str) -> Health:
        """Whether this database can answer: the file is the one opened (SQLite), it
        reads, its schema is ``expected_revision``, and it takes a write. Cheap enough
        for a load balancer's poll: the write probe is cached for
        :attr:`PROBE_INTERVAL_S`."""
        checks: dict[str, str] = {}
        if self._watch is not None:
            checks["file"] = self._watch.problem(fresh=True) or "ok"
            if checks["file"] != "ok":
                return Health(checks)
        try:
            found = self._schema_revision()
        except (DBAPIError, sqlite3.Error) as e:
            message = _reason(e) if isinstance(e, DBAPIError) else str(e)
            if "no such table" in message or "does not exist" in message:
                checks["database"] = "ok"
                checks["schema"] = "no schema (alembic_version is missing)"
            else:
                checks["database"] = message
            return Health(checks)
        except DatabaseError as e:
            checks["database"] = str(e).split("\n")[0]
            return Health(checks)
        checks["database"] = "ok"
        checks["schema"] = (
            "ok"
            if found == expected_revision
            else f"schema is at {found or 'nothing'}, this bootbrain needs {expected_revision}"
        )
        checks["writable"] = self._write_probe()
        return Health(checks)

    def _schema_revision(self) -> str | None:
        if self._watch is None:
            with self.engine.connect() as conn:
                found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            return None if found is None else str(found)
        # SQLite: a connection opened now reads the file itself; a pooled one may
        # answer from pages it cached before the file was damaged.
        fresh = self._fresh_sqlite(timeout=1.0)
        try:
            fresh.execute("PRAGMA schema_version").fetchone()
            row = fresh.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            fresh.close()
        return None if row is None else str(row[0])

    def _fresh_sqlite(self, timeout: float) -> sqlite3.Connection:
        assert self._watch is not None
        conn = sqlite3.connect(f"file:{quote(self._watch.path)}?mode=rw", uri=True, timeout=timeout)
        conn.isolation_level = None
        return conn

    def _write_probe(self) -> str:
        with self._probe_lock:
            when, result = self._probed
            if time.monotonic() - when < self.PROBE_INTERVAL_S:
                return result
            result = self._probe_sqlite() if self._watch is not None else self._probe_server()
            self._probed = (time.monotonic(), result)
            return result

    def _probe_sqlite(self) -> str:
        assert self._watch is not None
        folder = str(Path(self._watch.path).parent)
        vfs = os.statvfs(folder)
        if vfs.f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
        free = vfs.f_bavail * vfs.f_frsize
        if free < self.MIN_FREE_BYTES:
            return f"disk full: {free} bytes free in {folder}"
        mode = Path(self._watch.path).stat().st_mode
        if not mode & 0o222:
            # Said as it is even to root, whom the mode does not stop: whoever took
            # every write bit away meant the database not to change.
            return f"the database file is readonly (mode {mode & 0o777:04o})"
        # A connection of its own, opened now: the pool's were opened read-write
        # before any chmod, and would not notice one.
        try:
            conn = sqlite3.connect(f"file:{quote(self._watch.path)}?mode=rw", uri=True, timeout=0.2)
        except sqlite3.Error as e:
            return f"cannot open the database file: {e}"
        try:
            conn.isolation_level = None
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE alembic_version SET version_num = version_num")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if is_busy(e):
                return "ok"  # another writer holds the lock: busy is not broken
            return f"a write failed: {e}"
        finally:
            conn.close()
        return "ok"

    def _probe_server(self) -> str:
        try:
            with self.engine.connect() as conn, conn.begin():
                conn.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                conn.exec_driver_sql("SELECT txid_current()")
        except DBAPIError as e:
            return f"a write failed: {_reason(e)}"
        return "ok"

    def dispose(self) -> None:
        self.boot_reader.close()
        self.engine.dispose()


def _reason(e: DBAPIError) -> str:
    """The driver's message, first line: for the operator, never for an API client."""
    return str(e.orig).strip().split("\n")[0] if e.orig is not None else str(e)
