"""``bootbrain serve`` refuses a schema that is not the newest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bootbrain import migrate
from tests.api.serving import bootbrain_env

pytestmark = pytest.mark.slow


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
