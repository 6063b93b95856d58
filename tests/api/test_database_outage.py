"""The PostgreSQL outage drill (issue 16): the database stopped in the middle of a
stream of boots and started again. Every machine gets a valid script (a retry while
the database is away), no answer is a 5xx, and once it is back every boot that was
handed a token has exactly one boot record and one event: nothing lost, nothing twice.

A private PostgreSQL cluster of the test's own (initdb on a free port), so stopping
it disturbs nothing else; a real ``bootbrain serve`` with two workers."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bootbrain import migrate, security
from bootbrain.app import create_app
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.models import Boot, Event
from tests.api.serving import bootbrain_env, start_serve
from tests.conftest import Api, make_settings, make_token
from tests.ports import free_port

pytestmark = pytest.mark.slow

TOKEN_RE = re.compile(r"/boot/([A-Za-z0-9_-]+)/")


class Cluster:
    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if os.geteuid() != 0 or not bins:
            pytest.skip("needs root and PostgreSQL's server binaries (Debian's postgresql)")
        self.bin = Path(bins[-1]).parent
        # Not under pytest's tmp_path: its parents are 0700 to everyone but root.
        self.root = Path(tempfile.mkdtemp(prefix="bootbrain-pg-"))
        self.root.chmod(0o755)
        self.dir = self.root / "pgdata"
        self.port = free_port()
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres"
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            opts,
            "-w",
            "-l",
            str(self.dir / "log"),
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.start()
    try:
        yield c
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            c.stop()
        shutil.rmtree(c.root, ignore_errors=True)


def test_postgresql_stopped_and_started_under_a_stream_of_boots(
    tmp_path: Path, cluster: Cluster
) -> None:
    migrate.upgrade(cluster.url)
    setup = create_app(make_settings(cluster.url, tmp_path))
    Api(setup.test_client(), make_token(setup, "admin", "write")).post(
        "/profiles",
        {"name": "installer", "kind": "linux", "kernel": "http://assets/vmlinuz"},
        expect=201,
    )
    setup.extensions["bootbrain"].db.dispose()

    data = tmp_path / "serve"
    data.mkdir()
    env = bootbrain_env(cluster.url, data)
    env["BOOTBRAIN_DEFAULT_PROFILE"] = "installer"
    proc, base = start_serve(env, tmp_path / "gunicorn.log", "--workers", "2", "--no-access-log")
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def stream() -> None:
        i = 0
        with requests.Session() as http:
            while not stop.is_set():
                i += 1
                mac = f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
                try:
                    r = http.get(f"{base}/ipxe", params={"mac": mac}, timeout=30)
                    answers.append((r.status_code, r.text))
                except requests.RequestException as e:
                    answers.append((0, str(e)))
                time.sleep(0.01)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        time.sleep(1.5)
        before = len(answers)
        cluster.stop()
        time.sleep(6)  # longer than the old writer's five tries took before dropping
        during = len(answers)
        cluster.start()
        # boots resume once the pool reconnects; a loaded host may take a while
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            TOKEN_RE.search(t) for _, t in answers[during:]
        ):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        streamer.join()
        proc.terminate()  # a clean stop drains both workers' writers
        proc.wait(timeout=60)

    assert all(status == 200 for status, _ in answers), {s for s, _ in answers}
    assert all(text.startswith("#!ipxe\n") for _, text in answers)
    outage = [text for _, text in answers[before:during]]
    assert any("inventory unavailable" in t or "boot server busy" in t for t in outage)
    tokens = [m.group(1) for _, t in answers if (m := TOKEN_RE.search(t))]
    assert len(tokens) > 20 and len(set(tokens)) == len(tokens)
    assert any(TOKEN_RE.search(t) for _, t in answers[during:]), "no boot after the restart"

    secret = Settings.model_validate({"secret_key": env["BOOTBRAIN_SECRET_KEY"]}).secret()
    db = Database(cluster.url)
    try:
        with db.read() as s:
            hashes = s.scalars(select(Boot.token_hash)).all()
            events = s.scalar(select(func.count()).select_from(Event).where(Event.kind == "boot"))
    finally:
        db.dispose()
    assert sorted(hashes) == sorted(security.token_hash(secret, t) for t in tokens)
    assert events == len(tokens)
