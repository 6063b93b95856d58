"""Engine and sessions, one :class:`Database` per app.

SQLite is tuned for several gunicorn workers: WAL (readers never wait for the
writer), a busy timeout, foreign keys on, and write transactions that start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of one failing with
"database is locked" when it upgrades a read snapshot. Reads keep a plain deferred
``BEGIN`` so the hot path never takes the write lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_setup(engine: Engine) -> None:
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
        if mode != "NONE":
            conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=8,
            max_overflow=8,
        )
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


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
        #: Called after a committed change of a machine's reservation:
        #: (machine_id, reservation or None when it has none any more).
        self.reservation_listeners: list[Callable[[int, Any], None]] = []

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def quick_read(self) -> Iterator[Connection]:
        """A connection whose statements each run on their own, with no BEGIN/ROLLBACK
        round trips: for the boot hot path, which reads a few indexed rows."""
        options = {"sqlite_begin": "NONE"} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        with self.engine.connect().execution_options(**options) as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
