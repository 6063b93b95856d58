"""What the CLI prints, as an operator uses it: a machine named by hostname, MAC or UUID
wherever an id works; full values when piped; ``--output json|yaml|table`` on every
list and show."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.cli.conftest import Cli

LONG = "holdout-1-in-rack-12-of-the-second-hall-with-a-long-name"
UUID = "4c4c4544-0042-3610-8052-b4c04f4e3232"


@pytest.fixture
def site(runner: Cli) -> Cli:
    runner.run("network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24")
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    runner.run("rule", "add", "--set", "name=efi", "--set", "platform=efi",
               "--set", "profile=disk")  # fmt: skip
    runner.run("machine", "add", "--hostname", "holdout-1", "--mac", "52:54:00:aa:cc:01",
               "--uuid", UUID, "--state", "ready")  # fmt: skip
    runner.run("machine", "add", "--hostname", LONG, "--mac", "52:54:00:aa:cc:02",
               "--mac", "52:54:00:aa:cc:03", "--tag", "gpu", "--tag", "rack12",
               "--state", "maintenance", "--profile", "disk",
               "--notes", "two\nlines")  # fmt: skip
    return runner


def only(cli: Cli) -> dict[str, Any]:
    (m,) = [m for m in cli.machines() if m["hostname"] == "holdout-1"]
    return m


@pytest.mark.parametrize(
    "ref", ["holdout-1", "HOLDOUT-1", "52:54:00:aa:cc:01", "52-54-00-AA-CC-01", UUID.upper()]
)
def test_machine_show_takes_a_hostname_mac_or_uuid(site: Cli, ref: str) -> None:
    assert site.json("machine", "show", ref) == site.machine(only(site)["id"])


def test_every_machine_command_takes_a_hostname(site: Cli) -> None:
    site.run("machine", "edit", "holdout-1", "--notes", "by name")
    assert only(site)["notes"] == "by name"
    out = site.run("machine", "next-boot", "52:54:00:aa:cc:01", "--profile", "disk").stdout
    assert f"machine {only(site)['id']} boots disk next" in out
    assert only(site)["next_boot"]["profile"] == "disk"
    site.run("machine", "next-boot", "holdout-1", "--cancel")
    assert only(site)["next_boot"] is None
    config = site.run("machine", "config", "holdout-1", "--document", "meta-data")
    assert "holdout-1" in config.stdout
    site.run("machine", "delete", "holdout-1")
    assert [m["hostname"] for m in site.machines()] == [LONG]


@pytest.mark.parametrize("ref", ["nobody", "52:54:00:00:00:99", "not a name!"])
def test_a_machine_nothing_matches_is_named_in_the_error(site: Cli, ref: str) -> None:
    for command in (["show"], ["delete"], ["edit", "--notes", "x"]):
        err = site.fails("machine", command[0], ref, *command[1:])
        assert f"error: no machine {ref!r}" in err
    assert len(site.machines()) == 2


def test_a_list_piped_to_grep_has_every_value_in_full(site: Cli) -> None:
    site.runner = CliRunner(env={"COLUMNS": "80"})  # what an 80-column terminal exports
    out = site.run("machine", "list").stdout
    (line,) = [line for line in out.splitlines() if LONG in line]
    assert "maintenance" in line.split()
    assert "52:54:00:aa:cc:02, 52:54:00:aa:cc:03" in line
    assert "…" not in out
    header = out.splitlines()[0].split()
    assert header == [
        "id", "hostname", "state", "profile", "nics", "address", "tags", "next_boot",
        "power", "bmc_error",
    ]  # fmt: skip
    # One line a row, so grep finds each machine on one line.
    assert len(out.splitlines()) == 3
    shown = site.run("machine", "show", LONG, "--output", "table").stdout
    # A newline in a value does not break the row.
    assert [line.split() for line in shown.splitlines() if line.startswith("notes")] == [
        ["notes", "two\\nlines"]
    ]


LISTS = [["machine", "list"], ["token", "list"], ["network", "list"], ["profile", "list"],
         ["rule", "list"]]  # fmt: skip


@pytest.mark.parametrize("command", LISTS, ids=lambda c: " ".join(c))
def test_every_list_has_json_yaml_and_table(site: Cli, command: list[str]) -> None:
    as_json = json.loads(site.run(*command, "--output", "json").stdout)
    assert as_json == json.loads(site.run(*command, "--json").stdout)
    assert as_json == yaml.safe_load(site.run(*command, "--output", "yaml").stdout)
    assert as_json == yaml.safe_load(site.run(*command, "-o", "yaml").stdout)
    assert as_json
    table = site.run(*command, "--output", "table").stdout
    assert table == site.run(*command).stdout  # table is the default
    for item in as_json:
        assert str(item["id"]) == table.splitlines()[1 + as_json.index(item)].split()[0]


SHOWS = [["machine", "show", "holdout-1"], ["network", "show", "1"], ["profile", "show", "1"],
         ["rule", "show", "1"]]  # fmt: skip


@pytest.mark.parametrize("command", SHOWS, ids=lambda c: " ".join(c[:2]))
def test_every_show_has_json_yaml_and_table(site: Cli, command: list[str]) -> None:
    as_json = json.loads(site.run(*command).stdout)  # JSON is the default
    assert as_json == json.loads(site.run(*command, "--output", "json").stdout)
    assert as_json == yaml.safe_load(site.run(*command, "--output", "yaml").stdout)
    table = site.run(*command, "--output", "table").stdout.splitlines()
    assert table[0].split() == ["field", "value"]
    fields = {line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1:] for line in table[1:]}
    assert list(fields) == list(as_json)
    assert fields["name" if "name" in as_json else "hostname"] == [
        as_json.get("name") or as_json["hostname"]
    ]


def test_add_and_edit_print_the_item_as_asked(site: Cli) -> None:
    added = json.loads(site.run("network", "add", "--set", "name=rack2",
                                "--set", "cidr=10.30.0.0/24", "-o", "json").stdout)  # fmt: skip
    assert (added["name"], added["cidr"]) == ("rack2", "10.30.0.0/24")
    edited = yaml.safe_load(site.run("network", "edit", str(added["id"]),
                                     "--set", "vlan_id=7", "-o", "yaml").stdout)  # fmt: skip
    assert edited["vlan_id"] == 7
    m = yaml.safe_load(site.run("machine", "add", "--hostname", "n3", "-o", "yaml").stdout)
    assert m["hostname"] == "n3"
