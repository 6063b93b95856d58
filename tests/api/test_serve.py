"""``bootbrain serve``: sized by the CPUs it may run on, and refusing a stale schema."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bootbrain import migrate
from tests.api.serving import bootbrain_env, start_serve

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


@pytest.mark.parametrize("revision", [None, "0003"])
def test_serve_refuses_a_schema_that_is_not_the_newest(
    tmp_path: Path, revision: str | None
) -> None:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    if revision:
        migrate.upgrade(url, revision)
    result = subprocess.run(
        [sys.executable, "-m", "bootbrain", "serve", "--bind", "127.0.0.1:1"],
        env=bootbrain_env(url, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"schema is at {revision or 'nothing'}" in result.stderr
    assert "run `bootbrain db upgrade`" in result.stderr
