"""Database faults under a running ``bootbrain serve`` (issue 16, cases 4 and 17, and
the database drills): a lock held by someone else, the SQLite file removed, replaced,
corrupted, stripped of its schema or made read-only.

What a user checks: an operator's write is answered 503 with ``Retry-After`` within a
few seconds instead of waiting on (and holding a worker) or failing with 500; every
machine still gets a valid iPXE script, promptly; ``/healthz`` says 503 and names the
failing check whenever nothing could be answered.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from bootbrain import db as storage
from bootbrain import inventory, migrate, schemas
from bootbrain.db import Database
from tests.api.serving import bootbrain_env, start_serve
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

SECRET = "serve-test-secret"  # what tests.api.serving configures
MAC = "52:54:00:16:04:01"


@dataclass
class Served:
    base: str
    url: str
    token: str
    machine_id: int
    log: Path

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.base}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
            **kw,
        )

    def ipxe(self) -> requests.Response:
        return requests.get(f"{self.base}/ipxe?mac={MAC}&buildarch=x86_64", timeout=60)


def _token(url: str, tmp_path: Path, name: str = "admin") -> str:
    db = Database(url)
    try:
        settings = make_settings(url, tmp_path, secret_key=SECRET)
        _, token = inventory.create_token(
            db, settings.secret(), schemas.TokenIn(name=name, scope="write"), "test"
        )
    finally:
        db.dispose()
    return token


@contextmanager
def _serve(
    url: str,
    data_dir: Path,
    workers: int = 2,
) -> Iterator[Served]:
    """``bootbrain serve`` with a write token and one machine."""
    token = _token(url, data_dir)

    log = data_dir / "gunicorn.log"
    proc, base = start_serve(
        bootbrain_env(url, data_dir),
        log,
        "--workers",
        str(workers),
        "--no-access-log",
    )
    try:
        served = Served(base, url, token, 0, log)
        made = served.api("POST", "/machines", json={"nics": [{"mac": MAC}]})
        assert made.status_code == 201, made.text
        served.machine_id = made.json()["id"]
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _sqlite_file(url: str) -> Path:
    return Path(str(make_url(url).database))


def _valid_script(resp: requests.Response) -> bool:
    return (
        resp.status_code == 200
        and resp.text.startswith("#!ipxe\n")
        and resp.headers["Content-Type"].startswith("text/plain")
    )


# --- case 4: API writes waiting on a lock ------------------------------------------------


@contextmanager
def _lock_held(url: str, machine_id: int) -> Iterator[None]:
    """Another process's write lock: SQLite's (the whole database), PostgreSQL's (the
    machine's row), held until the block ends."""
    if make_url(url).get_backend_name() == "sqlite":
        conn = sqlite3.connect(_sqlite_file(url), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as pg:
        pg.execute("SELECT id FROM machine WHERE id = %s FOR UPDATE", (machine_id,))
        yield
        pg.rollback()


def test_an_api_write_behind_a_held_lock_is_503_and_machines_still_boot(
    db_url: str, tmp_path: Path
) -> None:
    """Old code: the PATCH waited the 30 s busy timeout (SQLite) or for ever
    (PostgreSQL), holding a worker, then answered 500."""
    with _serve(db_url, tmp_path) as served:
        answers: dict[str, Any] = {}

        def patch() -> None:
            started = time.monotonic()
            answers["patch"] = served.api(
                "PATCH", f"/machines/{served.machine_id}", json={"hostname": "locked-out"}
            )
            answers["patch_s"] = time.monotonic() - started

        with _lock_held(db_url, served.machine_id):
            writer = threading.Thread(target=patch)
            writer.start()
            time.sleep(0.5)  # the PATCH is waiting on the lock in one worker
            started = time.monotonic()
            boot = served.ipxe()
            boot_s = time.monotonic() - started
            writer.join(timeout=60)

        assert _valid_script(boot)
        assert boot_s < 1.0, f"/ipxe waited {boot_s:.1f} s behind an API write"
        resp = answers["patch"]
        assert resp.status_code == 503, resp.text
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert int(resp.headers["Retry-After"]) > 0
        assert "busy" in resp.json()["detail"]
        assert answers["patch_s"] < storage.API_LOCK_WAIT_S + 2
        # Once the lock is gone, the same write goes through: nothing was half-done.
        ok = served.api("PATCH", f"/machines/{served.machine_id}", json={"hostname": "after"})
        assert ok.status_code == 200, ok.text


def test_a_read_whose_bookkeeping_meets_a_held_lock_is_503_not_500(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A token's first use records when (a write): under a held lock a GET with it
    waited 30 s and answered 500."""
    with _serve(sqlite_url, tmp_path) as served:
        fresh = _token(sqlite_url, tmp_path, "reader")
        with _lock_held(sqlite_url, served.machine_id):
            started = time.monotonic()
            resp = requests.get(
                f"{served.base}/api/v1/machines/{served.machine_id}",
                headers={"Authorization": f"Bearer {fresh}"},
                timeout=60,
            )
            waited = time.monotonic() - started
        assert resp.status_code == 503, resp.text
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert "Retry-After" in resp.headers
        assert waited < storage.API_LOCK_WAIT_S + 2


# --- case 17: /healthz ---------------------------------------------------------------------


def _healthz(served: Served) -> requests.Response:
    return requests.get(f"{served.base}/healthz", timeout=30)


def _failing(resp: requests.Response) -> list[str]:
    assert resp.status_code == 503, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["status"] == "failing"
    failing: list[str] = body["failing"]
    assert all(body["checks"][name] != "ok" for name in failing)
    return failing


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    return url


def test_healthz_is_ok_on_a_working_database(sqlite_url: str, tmp_path: Path) -> None:
    with _serve(sqlite_url, tmp_path) as served:
        resp = _healthz(served)
        assert resp.status_code == 200 and resp.text == "ok\n"


def test_drill_database_file_removed_under_a_running_server(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Old code: /healthz said ok and /ipxe answered from the deleted file (whose boot
    records vanish with it)."""
    path = _sqlite_file(sqlite_url)
    with _serve(sqlite_url, tmp_path) as served:
        assert "#!ipxe" in served.ipxe().text
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        time.sleep(1.2)  # the file is looked at once a second
        boots = [served.ipxe() for _ in range(20)]
        assert all(_valid_script(b) for b in boots), [b.status_code for b in boots]
        # a retry: the lookup fails, or the writer (which cannot write either) sheds the boot
        assert all(
            "inventory unavailable" in b.text or "boot server busy" in b.text for b in boots
        )
        assert all("chain --replace --autofree boot.ipxe" in b.text for b in boots)  # a retry
        assert _failing(_healthz(served)) == ["file"]
        assert "removed" in _healthz(served).json()["checks"]["file"]
        write = served.api("PATCH", f"/machines/{served.machine_id}", json={"hostname": "x"})
        assert write.status_code == 503 and "Retry-After" in write.headers
        assert not path.exists(), "an empty database was created in its place"


def test_healthz_names_a_replaced_database_file(sqlite_url: str, tmp_path: Path) -> None:
    path = _sqlite_file(sqlite_url)
    with _serve(sqlite_url, tmp_path) as served:
        copy = tmp_path / "copy.db"
        shutil.copy(path, copy)
        copy.replace(path)
        assert _failing(_healthz(served)) == ["file"]
        assert "replaced" in _healthz(served).json()["checks"]["file"]


def test_healthz_names_a_corrupt_database(sqlite_url: str, tmp_path: Path) -> None:
    path = _sqlite_file(sqlite_url)
    with _serve(sqlite_url, tmp_path) as served:
        with path.open("r+b") as f:  # in place: the same file, its header destroyed
            f.write(b"\xde\xad\xbe\xef" * 256)
        failing = _failing(_healthz(served))
        assert failing == ["database"], _healthz(served).json()
        assert "not a database" in _healthz(served).json()["checks"]["database"]
        assert _valid_script(served.ipxe())


def test_healthz_names_a_missing_schema(sqlite_url: str, tmp_path: Path) -> None:
    with _serve(sqlite_url, tmp_path) as served:
        with sqlite3.connect(_sqlite_file(sqlite_url)) as conn:
            conn.execute("DROP TABLE alembic_version")
        assert _failing(_healthz(served)) == ["schema"]
        assert "no schema" in _healthz(served).json()["checks"]["schema"]


def test_healthz_names_a_schema_this_bootbrain_does_not_serve(
    sqlite_url: str, tmp_path: Path
) -> None:
    with _serve(sqlite_url, tmp_path) as served:
        with sqlite3.connect(_sqlite_file(sqlite_url)) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0999'")
        assert _failing(_healthz(served)) == ["schema"]
        assert "0999" in _healthz(served).json()["checks"]["schema"]


def test_healthz_names_a_read_only_database(sqlite_url: str, tmp_path: Path) -> None:
    """chmod a-w on the file under a running server: its pooled connections would still
    write, new ones cannot; /healthz says so (a write probe, cached a few seconds)."""
    with _serve(sqlite_url, tmp_path) as served:
        assert _healthz(served).status_code == 200
        _sqlite_file(sqlite_url).chmod(0o444)
        time.sleep(Database.PROBE_INTERVAL_S + 0.5)  # past the cached probe
        assert _failing(_healthz(served)) == ["writable"]
        assert "readonly" in _healthz(served).json()["checks"]["writable"]


# --- drill: SQLite locked beyond the busy timeout during a stream of boots --------------


def test_drill_sqlite_locked_beyond_the_busy_timeout_during_a_boot_stream(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer holds the lock past every wait (API and background); boots keep coming
    and operators keep writing. Every /ipxe answer is a valid script, none is 5xx; the
    API writes are 503 with Retry-After, never 500."""
    with _serve(sqlite_url, tmp_path) as served:
        boots: list[requests.Response] = []
        writes: list[requests.Response] = []
        stop = threading.Event()

        def stream() -> None:
            while not stop.is_set():
                boots.append(served.ipxe())

        def operator() -> None:
            while not stop.is_set():
                writes.append(
                    served.api("PATCH", f"/machines/{served.machine_id}", json={"hostname": "op"})
                )

        threads = [threading.Thread(target=stream), threading.Thread(target=operator)]
        with _lock_held(sqlite_url, served.machine_id):
            for t in threads:
                t.start()
            time.sleep(storage.API_LOCK_WAIT_S * 3)
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert len(boots) > 10
        assert all(_valid_script(b) for b in boots), {b.status_code for b in boots}
        assert writes and {w.status_code for w in writes} == {503}
        assert all("Retry-After" in w.headers for w in writes)
        assert _healthz(served).status_code == 200  # busy is not broken


def test_a_short_wait_does_not_stay_on_the_pooled_connection(sqlite_url: str) -> None:
    """The API's 3 s wait is for its own transactions: the connection it used goes
    back to the pool with SQLite's 30 s busy timeout, for the CLI and the event
    writer, which wait out a passing lock rather than fail."""
    db = Database(sqlite_url)
    try:
        with storage.short_lock_waits(), db.write() as s:
            assert s.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == 3000
        with db.write() as s:
            waited = s.connection().exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert waited == storage.SQLITE_BUSY_TIMEOUT_MS
    finally:
        db.dispose()
