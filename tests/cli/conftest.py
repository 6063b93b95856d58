"""The ``runner`` fixture: the ``bootbrain`` command against a real config file, data
directory and database (SQLite, and PostgreSQL when BOOTBRAIN_TEST_PG_URL is set),
as an operator runs it on the boot host."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bootbrain.cli import main


@dataclass
class Cli:
    """``bootbrain`` with this test's config; every call asserts no traceback escaped."""

    config: Path
    data_dir: Path

    def __call__(self, *args: str, input: str | None = None, code: int | None = 0) -> Result:
        runner = CliRunner()
        result = runner.invoke(
            main, list(args), input=input, env={"BOOTBRAIN_CONFIG": str(self.config)}
        )
        output = result.output
        assert "Traceback" not in output, output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"bootbrain {' '.join(args)} raised") from result.exception
        if code is not None:
            assert result.exit_code == code, (result.exit_code, output)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args).stdout)


def write_config(path: Path, data_dir: Path, db_url: str, extra: str = "") -> Path:
    path.write_text(
        f'data_dir = "{data_dir}"\n'
        f'database_url = "{db_url}"\n'
        'secret_key = "cli-test-secret"\n'
        'public_url = "http://10.0.0.2"\n' + extra
    )
    return path


def make_cli(tmp_path: Path, db_url: str, extra: str = "") -> Cli:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    cli = Cli(write_config(tmp_path / "bootbrain.toml", data, db_url, extra), data)
    cli("init", "--no-admin-token")
    return cli


@pytest.fixture
def runner(db_url: str, tmp_path: Path) -> Cli:
    """The CLI on an initialised inventory (SQLite or PostgreSQL), no DHCP server."""
    return make_cli(tmp_path, db_url)
