"""Every command group of ``bootbrain``, as an operator uses it: what it prints, its
exit code, and what the inventory holds afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.cli.conftest import Cli, make_cli

MAC = "52:54:00:aa:cc:01"


def add_network(cli: Cli) -> None:
    cli(
        "network",
        "add",
        "--set",
        "name=rack1",
        "--set",
        "cidr=10.20.0.0/24",
        "--set",
        "gateway=10.20.0.1",
        "--set",
        'dns=["10.20.0.2"]',
    )


def add_machine(cli: Cli, *extra: str) -> dict:
    cli("machine", "add", "--hostname", "node-01", "--mac", MAC, "--tag", "gpu", *extra)
    return cli.json("machine", "show", "1")


# --- setup --------------------------------------------------------------------------------


def test_init_creates_the_secret_schema_and_one_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    config = tmp_path / "fresh.toml"
    config.write_text(f'data_dir = "{data}"\npublic_url = "http://10.0.0.2"\n')
    cli = Cli(config, data)
    first = cli("init").stdout
    assert (data / "secret_key").is_file() and (data / "bootbrain.db").is_file()
    token = re.search(r"bbt_[A-Za-z0-9_-]+", first)
    assert token, first
    assert "bbt_" not in cli("init").stdout  # shown once; a second init creates none
    (tmp_path / "t").write_text(token.group(0))
    assert "scope write" in cli("token", "check", str(tmp_path / "t")).stdout
    assert re.search(r"Rev: [0-9a-f]{4} \(head\)", cli("db", "current").stdout)
    assert "database at head" in cli("db", "upgrade").stdout


def test_serve_refuses_without_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "b.toml"
    config.write_text(f'data_dir = "{tmp_path / "none"}"\n')
    result = Cli(config, tmp_path)("serve", code=1)
    assert "no secret configured" in result.output


# --- tokens -------------------------------------------------------------------------------


def test_tokens_create_list_check_revoke(runner: Cli, tmp_path: Path) -> None:
    token = runner("token", "create", "--name", "ci", "--scope", "write", "--quiet").stdout.strip()
    assert token.startswith("bbt_")
    listed = runner.json("token", "list", "--json")
    assert [(t["name"], t["scope"], t["revoked_at"]) for t in listed] == [("ci", "write", None)]
    assert token not in str(listed)  # listings never show the secret
    (tmp_path / "tok").write_text(token + "\n")
    runner("token", "check", str(tmp_path / "tok"))
    assert "revoked ci" in runner("token", "revoke", str(listed[0]["id"])).stdout
    assert "revoked" in runner("token", "check", str(tmp_path / "tok"), code=1).output
    bad = runner("token", "create", "--name", "bad name", code=2)
    assert "name" in bad.output


# --- machines -----------------------------------------------------------------------------


def test_machine_add_list_show_edit_delete(runner: Cli) -> None:
    add_network(runner)
    m = add_machine(runner, "--network", "rack1", "--address", "10.20.0.50", "--state", "ready")
    assert (m["hostname"], m["address"], m["state"], m["tags"]) == (
        "node-01",
        "10.20.0.50",
        "ready",
        ["gpu"],
    )
    assert m["nics"] == [{"mac": MAC, "name": None, "boot": True}]
    listed = runner.json("machine", "list", "--json", "--tag", "gpu")
    assert [x["hostname"] for x in listed] == ["node-01"]
    assert runner.json("machine", "list", "--json", "--state", "deployed") == []
    runner("machine", "edit", "1", "--state", "deployed", "--notes", "rack 12")
    shown = runner.json("machine", "show", "1")
    assert (shown["state"], shown["notes"]) == ("deployed", "rack 12")
    assert "deleted machine 1" in runner("machine", "delete", "1").stdout
    assert runner.json("machine", "list", "--json") == []


def test_machine_errors_name_the_field_and_never_trace(runner: Cli) -> None:
    bad_mac = runner("machine", "add", "--mac", "not-a-mac", code=2)
    assert "nics" in bad_mac.output and "MAC" in bad_mac.output
    no_net = runner("machine", "add", "--address", "10.0.0.5", code=2)
    assert "network" in no_net.output
    assert "does not exist" in runner("machine", "show", "99", code=2).output
    assert "does not exist" in runner("machine", "edit", "99", "--state", "ready", code=2).output
    assert "state" in runner("machine", "edit", "99", "--state", "gone", code=2).output
    add_machine(runner)
    dup = runner("machine", "add", "--hostname", "node-02", "--mac", MAC, code=2)
    assert "belongs to machine 1" in dup.output
    assert runner.json("machine", "list", "--json")[0]["hostname"] == "node-01"


def test_next_boot_set_and_cancel(runner: Cli) -> None:
    runner("profile", "add", "--set", "name=disk", "--set", "kind=local")
    add_machine(runner)
    out = runner("machine", "next-boot", "1", "--profile", "disk", "--expires-in", "3600").stdout
    assert "machine 1 boots disk next" in out
    assert runner.json("machine", "show", "1")["next_boot"]["profile"] == "disk"
    assert "cancelled" in runner("machine", "next-boot", "1", "--cancel").stdout
    assert runner.json("machine", "show", "1")["next_boot"] is None
    assert "--profile is required" in runner("machine", "next-boot", "1", code=2).output
    assert (
        "no profile named"
        in runner("machine", "next-boot", "1", "--profile", "nope", code=2).output
    )


def test_machine_config_prints_the_documents(runner: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "cloud",
                "kind": "linux",
                "kernel": "{{ assets }}/vmlinuz",
                "user_data": "#cloud-config\nhostname: {{ hostname }}\n",
            }
        )
    )
    runner("profile", "add", "-f", str(spec))
    add_machine(runner, "--profile", "cloud")
    result = runner("machine", "config", "1", "--document", "user-data")
    assert result.stdout == "#cloud-config\nhostname: node-01\n"
    everything = runner("machine", "config", "1").stdout
    assert "instance-id: bootbrain-machine-1" in everything
    assert "---------- network-config ----------" in everything


# --- profiles, networks, rules ------------------------------------------------------------


def test_profile_network_rule_lifecycle(runner: Cli, tmp_path: Path) -> None:
    add_network(runner)
    spec = tmp_path / "installer.yaml"
    spec.write_text(
        "name: installer\nkind: linux\nkernel: '{{ assets }}/vmlinuz'\n"
        "cmdline: '${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0'\n"
    )
    runner("profile", "add", "-f", str(spec))
    assert [p["name"] for p in runner.json("profile", "list", "--json")] == ["installer"]
    runner("profile", "edit", "1", "--set", "description=Debian 12")
    assert runner.json("profile", "show", "1")["description"] == "Debian 12"
    runner(
        "rule", "add", "--set", "name=gpus", "--set", "profile=installer", "--set", 'tags=["gpu"]'
    )
    rule = runner.json("rule", "show", "1")
    assert (rule["profile"], rule["tags"]) == ("installer", ["gpu"])
    in_use = runner("profile", "delete", "1", code=2)
    assert "used by rule gpus" in in_use.output
    runner("rule", "delete", "1")
    runner("profile", "delete", "1")
    assert runner.json("profile", "list", "--json") == []
    runner("network", "edit", "1", "--set", "domain=dc1.example.net")
    assert runner.json("network", "show", "1")["domain"] == "dc1.example.net"
    runner("network", "delete", "1")
    assert runner.json("network", "list", "--json") == []


def test_a_template_error_names_the_field_and_line(runner: Cli) -> None:
    result = runner(
        "profile",
        "add",
        "--set",
        "name=x",
        "--set",
        "kind=ipxe",
        "--set",
        "script=#!ipxe\necho {{ nope }}\n",
        code=2,
    )
    assert "script" in result.output and "nope" in result.output
    assert runner.json("profile", "list", "--json") == []


# --- render, prune, demo ------------------------------------------------------------------


def test_render_prints_the_script_and_why(runner: Cli) -> None:
    runner("profile", "add", "--set", "name=disk", "--set", "kind=local")
    add_machine(runner, "--profile", "disk")
    result = runner("render", "--mac", MAC, "--platform", "pcbios", "--buildarch", "i386")
    assert result.stdout.startswith("#!ipxe\n")
    assert "step assigned, profile disk" in result.stderr
    unknown = runner("render", "--mac", "52:54:00:00:00:99")
    assert "not in the inventory" in unknown.stderr and "step default" in unknown.stderr
    assert "not a MAC" in runner("render", "--mac", "zz", code=2).output


def test_prune_reports_what_it_deleted(runner: Cli) -> None:
    result = runner("prune", "--events-days", "0", "--boots-days", "1")
    assert "deleted 0 event(s) (kept forever)" in result.stdout
    assert "deleted 0 boot record(s) (older than 1 day)" in result.stdout


def test_demo_loads_an_inventory_that_boots(runner: Cli) -> None:
    assert "3 machines" in runner("demo").stdout
    hosts = {m["hostname"] for m in runner.json("machine", "list", "--json")}
    assert hosts == {"node-a1", "node-a2", "node-a3"}
    result = runner("render", "--mac", "52:54:00:00:a1:01")
    assert "kernel" in result.stdout and "profile debian-installer" in result.stderr


# --- integrations without a DHCP server running -------------------------------------------


def test_dnsmasq_config_and_hook(tmp_path: Path, db_url: str) -> None:
    cli = make_cli(
        tmp_path,
        db_url,
        f'[dnsmasq]\nmode = "proxy"\nserver_ip = "10.0.0.2"\nhook_script = "{tmp_path / "hook"}"\n',
    )
    conf = cli("dnsmasq", "config").stdout
    assert "dhcp-boot=tag:ipxe,http://10.0.0.2/boot.ipxe,,10.0.0.2" in conf
    cli("dnsmasq", "hook", "--hook-config", str(tmp_path / "leasehook.conf"))
    assert (tmp_path / "hook").stat().st_mode & 0o777 == 0o755
    assert "url=http://10.0.0.2\n" in (tmp_path / "leasehook.conf").read_text()
    assert "written 0, removed 0" in cli("dnsmasq", "sync").stdout


def test_kea_config_sync_reload_hook_tftp(tmp_path: Path, db_url: str) -> None:
    config_path = tmp_path / "kea-dhcp4.conf"
    cli = make_cli(
        tmp_path,
        db_url,
        f'[kea]\nsubnet = "10.0.0.0/24"\nserver_ip = "10.0.0.2"\nconfig_path = "{config_path}"\n'
        f'control_socket = "{tmp_path / "no.sock"}"\nhost_cmds = false\n'
        f'hook_script = "{tmp_path / "kea-hook"}"\n',
    )
    assert '"Dhcp4"' in cli("kea", "config").stdout
    assert "file-only: changed" in cli("kea", "sync").stdout
    assert config_path.is_file()
    assert "not-running" in cli("kea", "reload").stdout
    cli("kea", "hook")
    assert "leasehook.py kea" in (tmp_path / "kea-hook").read_text()
    assert "enable-tftp" in cli("kea", "tftp-config").stdout
