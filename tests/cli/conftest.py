"""The ``bootbrain`` command as an operator runs it: a real TOML config file named by
``BOOTBRAIN_CONFIG``, a data directory, ``bootbrain init`` first, then commands.

Every CLI test runs once on SQLite (the default database in the data directory, which
``init`` creates by migrating) and once on PostgreSQL (``BOOTBRAIN_TEST_PG_URL``,
migrated once per session and emptied before each test, as the API tests do).
"""

from __future__ import annotations

import gc
import json
import os
import tomllib
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bootbrain.cli import main
from bootbrain.config import Settings
from tests.conftest import _truncate

PUBLIC_URL = "http://bootbrain.test"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def toml(config: dict[str, Any]) -> str:
    """A TOML document from plain keys and one level of tables."""
    top = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
        for name, table in config.items()
        if isinstance(table, dict)
    ]
    return "\n".join(top) + "\n" + "".join(tables)


def dnsmasq_section(base: Path) -> dict[str, Any]:
    """A full-DHCP dnsmasq on 10.20.0.0/24 whose files all live under ``base``."""
    return {
        "interface": "lo",
        "server_ip": "10.20.0.1",
        "range_start": "10.20.0.100",
        "range_end": "10.20.0.200",
        "netmask": "255.255.255.0",
        "hostsdir": str(base / "dnsmasq-hosts"),
        # No dnsmasq runs: a pid file that names none, so nothing is ever signalled.
        "pid_file": str(base / "dnsmasq.pid"),
        "lease_file": str(base / "dnsmasq.leases"),
        "tftp_root": str(base / "tftp"),
        "hook_script": str(base / "dnsmasq-hook"),
        "spool_dir": str(base / "spool"),
    }


def kea_section(base: Path) -> dict[str, Any]:
    """A Kea on 10.20.0.0/24 whose files all live under ``base``; nothing listens on the
    control socket, so every sync is "file-only"."""
    return {
        "interface": "lo",
        "subnet": "10.20.0.0/24",
        "pool_start": "10.20.0.100",
        "pool_end": "10.20.0.200",
        "server_ip": "10.20.0.1",
        "config_path": str(base / "kea-dhcp4.conf"),
        "control_socket": str(base / "kea4-ctrl-socket"),
        "lease_file": str(base / "kea-leases4.csv"),
        "hook_script": str(base / "kea-hook"),
        "spool_dir": str(base / "spool"),
    }


@dataclass
class Cli:
    """``bootbrain`` run through click's CliRunner against one config file."""

    home: Path
    config: dict[str, Any]
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def config_file(self) -> Path:
        return self.home / "bootbrain.toml"

    @property
    def data_dir(self) -> Path:
        return Path(self.config["data_dir"])

    @property
    def hostsdir(self) -> Path:
        return Path(self.config["dnsmasq"]["hostsdir"])

    @property
    def kea_config(self) -> Path:
        return Path(self.config["kea"]["config_path"])

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(toml(self.config))

    def env(self) -> dict[str, str | None]:
        # Only the config file speaks: no BOOTBRAIN_* of the caller's leaks in.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("BOOTBRAIN_")}
        env["BOOTBRAIN_CONFIG"] = str(self.config_file)
        return env

    def settings(self) -> Settings:
        """The settings the CLI reads, from the same file (for the API beside it)."""
        return Settings.model_validate(tomllib.loads(self.config_file.read_text()))

    def run(self, *args: str, input: str | None = None, code: int | None = 0) -> Result:
        """Run ``bootbrain ARGS``; never a traceback; exit ``code`` unless None."""
        result = self.runner.invoke(main, list(args), env=self.env(), input=input)
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        assert not crashed, (
            f"bootbrain {' '.join(args)} raised:\n"
            + "".join(traceback.format_exception(*result.exc_info))  # type: ignore[misc]
            + result.output
        )
        assert "Traceback" not in result.output, result.output
        if code is not None:
            assert result.exit_code == code, (
                f"bootbrain {' '.join(args)}: exit {result.exit_code}, not {code}\n" + result.output
            )
        return result

    def fails(self, *args: str, code: int = 2, input: str | None = None) -> str:
        """Run a command that must fail with ``code``; its stderr, with no traceback."""
        result = self.run(*args, input=input, code=code)
        return result.stderr

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    # --- what an operator looks at afterwards -----------------------------------------

    def machines(self) -> list[dict[str, Any]]:
        return self.json("machine", "list", "--json")  # type: ignore[no-any-return]

    def machine(self, machine_id: int) -> dict[str, Any]:
        return self.json("machine", "show", str(machine_id))  # type: ignore[no-any-return]

    def export(self, fmt: str = "yaml") -> str:
        return self.run("export", "--format", fmt).stdout

    def reconciled(self) -> None:
        """What this host's reconciler does after a change (``serve`` runs it)."""
        self.run("reconcile", "--once")

    def host_files(self) -> dict[str, str]:
        """dnsmasq's ``dhcp-hostsdir`` as ``{file name: content}``, once the
        reconciler has run."""
        self.reconciled()
        if not self.hostsdir.exists():
            return {}
        return {p.name: p.read_text() for p in sorted(self.hostsdir.iterdir())}

    def kea_reservations(self) -> list[dict[str, Any]] | None:
        """The ``reservations`` of Kea's configuration file, once the reconciler has
        run; None if there is no file."""
        self.reconciled()
        if not self.kea_config.exists():
            return None
        doc = json.loads(self.kea_config.read_text())
        return doc["Dhcp4"]["subnet4"][0]["reservations"]  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _close_what_the_cli_left_open() -> Iterator[None]:
    """Each command builds a Database and never disposes of it (a process would exit);
    collect them after each test, so PostgreSQL connections do not pile up and none is
    left for the interpreter's exit to complain about."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str | None:
    """None: SQLite, the default ``<data_dir>/bootbrain.db``; else a PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_schema")
    _truncate(url)
    return url


MakeCli = Callable[..., Cli]


@pytest.fixture
def make_cli(tmp_path: Path, database: str | None) -> Iterator[MakeCli]:
    """``make_cli(name, dhcp="none", init=True, **settings)``: a config in
    ``tmp_path/name`` and, unless ``init=False``, ``bootbrain init`` run on it. On
    PostgreSQL every Cli shares the one test database (emptied again when ``fresh``)."""

    def make(
        name: str = "site", dhcp: str = "none", init: bool = True, fresh: bool = False, **extra: Any
    ) -> Cli:
        home = tmp_path / name
        config: dict[str, Any] = {"data_dir": str(home / "data"), "public_url": PUBLIC_URL}
        if database is not None:
            config["database_url"] = database
            if fresh:
                _truncate(database)
        if dhcp != "none":
            config["dhcp"] = dhcp
        config["dnsmasq"] = dnsmasq_section(home)
        config["kea"] = kea_section(home)
        for key, value in extra.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
        cli = Cli(home, config)
        cli.write_config()
        if init:
            out = cli.run("init").stdout
            assert f"created secret {cli.data_dir / 'secret_key'}" in out
            assert "created the first API token 'admin' (write scope)" in out
        return cli

    yield make


@pytest.fixture
def runner(make_cli: MakeCli) -> Cli:
    """An initialised site without DHCP integration."""
    return make_cli()


@pytest.fixture
def dnsmasq_cli(make_cli: MakeCli) -> Cli:
    """An initialised site with ``dhcp = "dnsmasq"``."""
    return make_cli("dnsmasq-site", dhcp="dnsmasq")


@pytest.fixture
def kea_cli(make_cli: MakeCli) -> Cli:
    """An initialised site with ``dhcp = "kea"`` and no Kea running."""
    return make_cli("kea-site", dhcp="kea")
