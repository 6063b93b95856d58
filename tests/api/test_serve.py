"""``bootbrain serve``: sized by the CPUs it may run on, and refusing a stale schema."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bootbrain import migrate
from tests.api.serving import bootbrain_env, start_serve
from tests.ports import free_port

pytestmark = pytest.mark.slow


def _booted_workers(log: Path, expect: int) -> int:
    """Workers gunicorn reported booting, once ``expect`` have (or after 10 s)."""
    for _ in range(100):
        if len(re.findall(r"Booting worker with pid", log.read_text())) >= expect:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # one more than expected would have been booted by now
    return len(re.findall(r"Booting worker with pid", log.read_text()))


@pytest.mark.parametrize(("extra", "expect"), [((), 1), (("--workers", "3"), 3)])
def test_workers_default_to_the_cpus_it_may_use(
    tmp_path: Path, extra: tuple[str, ...], expect: int
) -> None:
    """Pinned to one CPU (as systemd's CPUAffinity= or taskset would), serve starts one
    worker; --workers still wins."""
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    cpu = min(os.sched_getaffinity(0))
    env = bootbrain_env(url, tmp_path)
    log = tmp_path / "gunicorn.log"
    proc, base = start_serve(
        env, log, *extra, "--no-access-log", preexec_fn=lambda: os.sched_setaffinity(0, {cpu})
    )
    try:
        assert _booted_workers(log, expect) == expect, log.read_text()
        assert requests.get(f"{base}/boot.ipxe", timeout=5).text.startswith("#!ipxe\n")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _serve_refusal(url: str, data_dir: Path) -> str:
    """What ``bootbrain serve`` says when it refuses to start (it must)."""
    result = subprocess.run(
        [sys.executable, "-m", "bootbrain", "serve", "--bind", "127.0.0.1:1"],
        env=bootbrain_env(url, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_serve_refuses_an_empty_database(tmp_path: Path) -> None:
    said = _serve_refusal(f"sqlite:///{tmp_path}/bootbrain.db", tmp_path)
    assert "the database has no schema: run `bootbrain init`" in said


def test_serve_refuses_an_older_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url, "0003")
    said = _serve_refusal(url, tmp_path)
    assert f"schema is at 0003, this bootbrain needs {migrate.newest()}" in said
    assert "run `bootbrain db upgrade`" in said


def test_serve_refuses_a_schema_from_a_newer_bootbrain(tmp_path: Path) -> None:
    """Brains sharing a PostgreSQL: one was upgraded and migrated, this one was not."""
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "bootbrain.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    said = _serve_refusal(url, tmp_path)
    assert "schema is at 0999, which this bootbrain does not know" in said
    assert "upgrade bootbrain on this host" in said


def test_serve_says_when_it_cannot_reach_the_database(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://bootbrain:x@127.0.0.1:{free_port()}/bootbrain"
    assert "cannot read the database: connection" in _serve_refusal(url, tmp_path)
