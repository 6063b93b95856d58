"""``bootbrain network | profile | rule  add | edit | list | show | delete``, with
``-f file`` (YAML or JSON, ``-`` for stdin) and ``--set field=value``."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest

from tests.cli.conftest import Cli


def ed25519_key(comment: str) -> str:
    """A well-formed ``ssh-ed25519`` public key line (random key bytes)."""

    def ssh_string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = ssh_string(b"ssh-ed25519") + ssh_string(secrets.token_bytes(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def only(cli: Cli, group: str) -> dict[str, Any]:
    (item,) = cli.json(group, "list", "--json")
    return item  # type: ignore[no-any-return]


def named(cli: Cli, group: str, name: str) -> dict[str, Any]:
    return next(i for i in cli.json(group, "list", "--json") if i["name"] == name)


# --- networks ---------------------------------------------------------------------------


def test_network_lifecycle_with_set(runner: Cli) -> None:
    out = runner.run(
        "network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24",
        "--set", "gateway=10.20.0.1", "--set", 'dns=["10.20.0.2"]', "--set", "vlan_id=120",
    ).stdout  # fmt: skip
    assert "rack1" in out and "10.20.0.0/24" in out
    n = only(runner, "network")
    assert {k: n[k] for k in ("name", "cidr", "gateway", "dns", "domain", "vlan_id")} == {
        "name": "rack1",
        "cidr": "10.20.0.0/24",
        "gateway": "10.20.0.1",
        "dns": ["10.20.0.2"],
        "domain": None,
        "vlan_id": 120,  # a number, from --set
    }
    assert runner.json("network", "show", str(n["id"])) == n

    runner.run("network", "edit", str(n["id"]), "--set", 'dns=["10.20.0.2", "10.20.0.3"]',
               "--set", "domain=dc1.example.net")  # fmt: skip
    shown = runner.json("network", "show", str(n["id"]))
    assert shown["dns"] == ["10.20.0.2", "10.20.0.3"]
    assert shown["domain"] == "dc1.example.net"
    assert shown["gateway"] == "10.20.0.1"  # untouched
    assert shown["version"] == n["version"] + 1

    assert runner.run("network", "delete", str(n["id"])).stdout == f"deleted network {n['id']}\n"
    assert runner.json("network", "list", "--json") == []
    assert f"network {n['id']} does not exist" in runner.fails("network", "show", str(n["id"]))


def test_network_from_files(runner: Cli) -> None:
    spec = runner.home / "rack1.yaml"
    spec.write_text("name: rack1\ncidr: 10.20.0.0/24\ngateway: 10.20.0.1\ndns: [10.20.0.2]\n")
    runner.run("network", "add", "-f", str(spec))
    n = only(runner, "network")
    assert (n["name"], n["cidr"], n["gateway"], n["dns"]) == (
        "rack1",
        "10.20.0.0/24",
        "10.20.0.1",
        ["10.20.0.2"],
    )
    change = runner.home / "change.json"
    change.write_text(json.dumps({"vlan_id": 7, "domain": "lab.example"}))
    runner.run("network", "edit", str(n["id"]), "-f", str(change), "--set", "vlan_id=8")
    shown = runner.json("network", "show", str(n["id"]))
    assert (shown["vlan_id"], shown["domain"]) == (8, "lab.example")  # --set wins


def test_network_in_use_is_not_deleted_and_the_machine_is_named(runner: Cli) -> None:
    runner.run("network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24")
    n = only(runner, "network")
    m = runner.json("machine", "add", "--network", "rack1", "--address", "10.20.0.5", "--json")
    err = runner.fails("network", "delete", str(n["id"]))
    assert err == f"error: id: network rack1 is used by machine {m['id']}\n"
    assert only(runner, "network") == n


def test_network_bad_values_name_the_field(runner: Cli) -> None:
    for sets, field in (
        (["cidr=10.20.0.0/24"], "name"),
        (["name=r", "cidr=10.20.0.0/33"], "cidr"),
        (["name=r", "cidr=10.20.0.0/24", "vlan_id=5000"], "vlan_id"),
        (["name=r", "cidr=10.20.0.0/24", "vlan_id=abc"], "vlan_id"),
        (["name=r", "cidr=10.20.0.0/24", "color=blue"], "color"),
    ):
        args = [a for s in sets for a in ("--set", s)]
        assert runner.fails("network", "add", *args).startswith(f"error: {field}: "), sets
    # A check across fields: the message names the field (after "input: " today).
    err = runner.fails("network", "add", "--set", "name=r", "--set", "cidr=10.20.0.0/24",
                       "--set", "gateway=10.99.0.1")  # fmt: skip
    assert err.startswith("error: ") and "gateway: 10.99.0.1 is outside 10.20.0.0/24" in err
    assert runner.json("network", "list", "--json") == []
    assert "expected field=value" in runner.fails("network", "add", "--set", "name")

    runner.run("network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24")
    n = only(runner, "network")
    dup = runner.fails("network", "add", "--set", "name=rack1", "--set", "cidr=10.30.0.0/24")
    assert dup == "error: name: a network named 'rack1' exists\n"
    err = runner.fails("network", "edit", str(n["id"]), "--set", "gateway=10.99.0.1")
    assert err.startswith("error: gateway: 10.99.0.1 is outside 10.20.0.0/24")
    assert only(runner, "network") == n


# --- profiles ----------------------------------------------------------------------------


def test_profile_from_a_yaml_file_with_secrets_shown_only_on_show(runner: Cli) -> None:
    key = ed25519_key("ops@example")
    spec = runner.home / "debian-cloud.yaml"
    spec.write_text(
        "name: debian-cloud\n"
        "kind: linux\n"
        'kernel: "{{ assets }}/debian-12/vmlinuz"\n'
        'initrds: ["{{ assets }}/debian-12/initrd.img"]\n'
        'cmdline: "${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0 '
        'ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL}"\n'
        "complete_state: deployed\n"
        "tags: [os:debian]\n"
        f"ssh_keys:\n  - {key}\n"
        "metadata:\n  site: ams1\n"
        "user_data: |\n  #cloud-config\n  hostname: {{ hostname }}\n"
    )
    runner.run("profile", "add", "-f", str(spec))
    listed = only(runner, "profile")
    assert listed["name"] == "debian-cloud"
    assert listed["user_data"] is None
    assert "user_data" in listed["redacted"]  # listings withhold secrets
    shown = runner.json("profile", "show", str(listed["id"]))
    assert shown["user_data"] == "#cloud-config\nhostname: {{ hostname }}\n"
    assert shown["redacted"] == []
    assert shown["ssh_keys"] == [key]
    assert shown["metadata"] == {"site": "ams1"}
    assert shown["tags"] == ["os:debian"]
    assert shown["initrds"] == ["{{ assets }}/debian-12/initrd.img"]


def test_profile_from_stdin_json_and_set_overrides_the_file(runner: Cli) -> None:
    doc = {"name": "netboot", "kind": "chain", "chain_url": "https://boot.example/a.ipxe"}
    runner.run(
        "profile", "add", "-f", "-", "--set", "chain_url=https://boot.example/b.ipxe",
        input=json.dumps(doc),
    )  # fmt: skip
    p = only(runner, "profile")
    assert (p["name"], p["kind"], p["chain_url"]) == (
        "netboot",
        "chain",
        "https://boot.example/b.ipxe",
    )


def test_profile_edit_with_set_and_file(runner: Cli) -> None:
    runner.run(
        "profile", "add", "--set", "name=inst", "--set", "kind=linux",
        "--set", "kernel={{ assets }}/vmlinuz", "--set", "cmdline=console=ttyS0",
    )  # fmt: skip
    p = only(runner, "profile")
    runner.run("profile", "edit", str(p["id"]), "--set", "cmdline=console=ttyS1 quiet")
    assert runner.json("profile", "show", str(p["id"]))["cmdline"] == "console=ttyS1 quiet"
    change = runner.home / "change.yaml"
    change.write_text("description: the installer\ncomplete_state: deployed\n")
    runner.run("profile", "edit", str(p["id"]), "-f", str(change))
    shown = runner.json("profile", "show", str(p["id"]))
    assert shown["description"] == "the installer"
    assert shown["complete_state"] == "deployed"
    assert shown["kernel"] == "{{ assets }}/vmlinuz"  # untouched
    assert shown["version"] == p["version"] + 2


def test_profile_templates_are_checked_when_saved(runner: Cli) -> None:
    err = runner.fails("profile", "add", "--set", "name=p", "--set", "kind=linux",
                       "--set", "kernel={{ nope }}/vmlinuz")  # fmt: skip
    assert err == "error: kernel: 'nope' is undefined\n"
    err = runner.fails("profile", "add", "--set", "name=p", "--set", "kind=bogus")
    assert err.startswith("error: kind: ")
    err = runner.fails("profile", "add", "--set", "name=p", "--set", "kind=linux",
                       "--set", "kernel={{ assets }}/vmlinuz", "--set", "cmdline=a\nb")  # fmt: skip
    assert err.startswith("error: cmdline: ")
    assert runner.json("profile", "list", "--json") == []


def test_profile_in_use_is_not_deleted_and_the_user_is_named(runner: Cli) -> None:
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    runner.run("profile", "add", "--set", "name=inst", "--set", "kind=linux",
               "--set", "kernel={{ assets }}/vmlinuz")  # fmt: skip
    disk, inst = named(runner, "profile", "disk"), named(runner, "profile", "inst")
    m = runner.json("machine", "add", "--profile", "disk", "--json")
    assert runner.fails("profile", "delete", str(disk["id"])) == (
        f"error: id: profile disk is assigned to machine {m['id']}\n"
    )
    runner.run("rule", "add", "--set", "name=efi", "--set", "platform=efi", "--set", "profile=inst")
    assert runner.fails("profile", "delete", str(inst["id"])) == (
        "error: id: profile inst is used by rule efi\n"
    )
    runner.run("rule", "delete", str(only(runner, "rule")["id"]))
    menu = {
        "name": "choose",
        "kind": "menu",
        "menu": {"items": [{"key": "i", "label": "Install", "profile": "inst"}], "default": "i"},
    }
    runner.run("profile", "add", "-f", "-", input=json.dumps(menu))
    assert runner.fails("profile", "delete", str(inst["id"])) == (
        "error: id: profile inst is an item of menu choose\n"
    )
    assert {p["name"] for p in runner.json("profile", "list", "--json")} == {
        "disk",
        "inst",
        "choose",
    }
    runner.run("machine", "delete", str(m["id"]))
    assert runner.run("profile", "delete", str(disk["id"])).stdout == (
        f"deleted profile {disk['id']}\n"
    )


# --- rules ---------------------------------------------------------------------------------


def test_rule_lifecycle(runner: Cli) -> None:
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    runner.run(
        "rule", "add", "--set", "name=efi-lab", "--set", "platform=efi",
        "--set", 'tags=["lab"]', "--set", "priority=-5", "--set", "profile=disk",
    )  # fmt: skip
    r = only(runner, "rule")
    assert {k: r[k] for k in ("name", "platform", "tags", "priority", "profile")} == {
        "name": "efi-lab",
        "platform": "efi",
        "tags": ["lab"],
        "priority": -5,
        "profile": "disk",
    }
    assert runner.json("rule", "show", str(r["id"])) == r
    runner.run("rule", "edit", str(r["id"]), "--set", "priority=7", "--set", "buildarch=x86_64")
    shown = runner.json("rule", "show", str(r["id"]))
    assert (shown["priority"], shown["buildarch"], shown["platform"]) == (7, "x86_64", "efi")
    assert runner.run("rule", "delete", str(r["id"])).stdout == f"deleted rule {r['id']}\n"
    assert runner.json("rule", "list", "--json") == []


def test_rule_from_a_file(runner: Cli) -> None:
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    spec = runner.home / "rule.yaml"
    spec.write_text(
        "name: dell\nmanufacturer: Dell Inc.\nproduct: PowerEdge R650\n"
        "tags: [gpu, lab]\nprofile: disk\n"
    )
    runner.run("rule", "add", "-f", str(spec))
    r = only(runner, "rule")
    assert (r["manufacturer"], r["product"], sorted(r["tags"]), r["profile"]) == (
        "Dell Inc.",
        "PowerEdge R650",
        ["gpu", "lab"],
        "disk",
    )
    spec.write_text("priority: 9\n")
    runner.run("rule", "edit", str(r["id"]), "-f", str(spec))
    assert runner.json("rule", "show", str(r["id"]))["priority"] == 9


def test_rule_bad_values_name_the_field(runner: Cli) -> None:
    err = runner.fails("rule", "add", "--set", "name=r", "--set", "profile=nope")
    assert err.startswith("error: profile: ")
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    err = runner.fails("rule", "add", "--set", "name=r", "--set", "profile=disk",
                       "--set", "platform=amiga")  # fmt: skip
    assert err.startswith("error: platform: ")
    assert runner.json("rule", "list", "--json") == []


# --- what every group shares -------------------------------------------------------------


@pytest.mark.parametrize("group", ["network", "profile", "rule"])
@pytest.mark.parametrize("command", [["show"], ["delete"], ["edit", "--set", "name=x"]])
def test_a_missing_id_is_named(runner: Cli, group: str, command: list[str]) -> None:
    args = [command[0], "99", *command[1:]]
    assert runner.fails(group, *args) == f"error: {group} 99 does not exist\n"


@pytest.mark.parametrize("group", ["network", "profile", "rule"])
def test_a_file_that_is_not_a_mapping_is_refused(runner: Cli, group: str) -> None:
    spec = runner.home / "list.yaml"
    spec.write_text("- a\n- b\n")
    err = runner.fails(group, "add", "-f", str(spec), code=1)
    assert err == f"error: {spec}: expected a mapping of fields\n"
