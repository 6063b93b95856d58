"""``bootbrain group …``, machine labels and variables on the command line, and groups
through ``export`` and ``apply`` (the round trip, and a second apply changing nothing)."""

from __future__ import annotations

from tests.cli.conftest import Cli, MakeCli
from tests.cli.test_apply import write

SITE = """\
networks:
  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1}
profiles:
  - name: installer
    kind: linux
    kernel: '{{ assets }}/vmlinuz'
    cmdline: 'ntp={{ vars.ntp }}'
    variables: {ntp: pool.example}
groups:
  - name: rack-a
    network: rack1
    variables: {ntp: 10.0.0.1}
    os_tags: ['rack:a']
    metadata: {rack: a}
  - name: gpu
    labels: [accel=gpu]
    state: ready
    variables: {disk: nvme0n1}
machines:
  - hostname: node-01
    nics: [{mac: '52:54:00:aa:cc:01'}]
    network: rack1
    address: 10.20.0.50
    profile: installer
    state: ready
    labels: [accel=gpu, room=2]
    variables: {console: ttyS1}
"""


def test_group_commands(runner: Cli) -> None:
    added = runner.json("group", "add", "--set", "name=rack-a", "--set", "network=rack1", "--json")
    assert added["network"] == "rack1"
    runner.run("group", "edit", str(added["id"]), "-f", "-", input="variables: {ntp: 10.0.0.1}\n")
    shown = runner.json("group", "show", str(added["id"]))
    assert shown["variables"] == {"ntp": "10.0.0.1"}
    assert "rack-a" in runner.run("group", "list").stdout
    runner.fails("group", "add", "-f", "-", input="name: bad\nvariables: {ntp: 'a b'}\n")
    runner.run("group", "delete", str(added["id"]))
    assert runner.json("group", "list", "--json") == []


def test_machine_labels_and_variables(runner: Cli) -> None:
    m = runner.json(
        "machine", "add", "--hostname", "n1", "--label", "rack=a", "--var", "ntp=10.0.0.1", "--json"
    )
    assert m["labels"] == ["rack=a"]
    assert m["variables"] == {"ntp": "10.0.0.1"}
    assert "labels" in runner.fails("machine", "add", "--hostname", "n2", "--label", "rack")
    assert "NAME=VALUE" in runner.fails("machine", "add", "--hostname", "n3", "--var", "ntp")


def test_render_prints_where_each_variable_comes_from(runner: Cli) -> None:
    runner.run("apply", str(write(runner, SITE)))
    result = runner.run("render", "--mac", "52:54:00:aa:cc:01")
    assert "groups applied (least specific first): rack-a, gpu" in result.stderr
    assert "# ntp = 10.0.0.1 from group rack-a\n" in result.stderr
    assert "# disk = nvme0n1 from group gpu\n" in result.stderr
    assert "# console = ttyS1 from machine\n" in result.stderr
    assert " ntp=10.0.0.1 " in result.stdout


def test_export_apply_round_trip_with_groups(make_cli: MakeCli) -> None:
    first = make_cli("first")
    first.run("apply", str(write(first, SITE)))
    exported = first.export()
    assert "groups:\n" in exported
    assert "  labels:\n  - accel=gpu\n  - room=2\n" in exported

    second = make_cli("second", fresh=True)
    path = write(second, exported)
    out = second.run("apply", str(path)).stdout
    assert "+ group rack-a\n" in out
    assert "+ group gpu\n" in out
    assert second.export() == exported
    assert second.run("apply", str(path)).stdout == "no changes\n"

    changed = exported.replace("ntp: 10.0.0.1", "ntp: 10.0.0.2")
    out = second.run("apply", "--dry-run", str(write(second, changed, "changed.yaml"))).stdout
    assert out == (
        "~ group rack-a\n"
        '    variables: {"ntp": "10.0.0.1"} -> {"ntp": "10.0.0.2"}\n'
        "plan: 0 to create, 1 to change, 0 to delete\n"
    )
    pruned = "\n".join(line for line in exported.splitlines() if "room=2" not in line) + "\n"
    out = second.run("apply", str(write(second, pruned, "pruned.yaml"))).stdout
    assert "~ machine node-01\n    labels:" in out
