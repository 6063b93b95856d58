"""Starting ``bootbrain serve`` (gunicorn) for tests that need real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.ports import free_port


def bootbrain_env(db_url: str, data_dir: Path) -> dict[str, str]:
    (data_dir / "none.toml").write_text("")
    return {
        **os.environ,
        "BOOTBRAIN_DATABASE_URL": db_url,
        "BOOTBRAIN_DATA_DIR": str(data_dir),
        "BOOTBRAIN_SECRET_KEY": "serve-test-secret",
        "BOOTBRAIN_CONFIG": str(data_dir / "none.toml"),
    }


def start_serve(
    env: dict[str, str],
    log: Path,
    *extra: str,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``bootbrain serve`` on a free loopback port, once /healthz answers: (process, base URL).
    Its output goes to ``log``; the caller terminates the process."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bootbrain", "serve", "--bind", f"127.0.0.1:{port}", *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a loaded machine imports slowly
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=30)
    pytest.fail("gunicorn did not start: " + log.read_text())
