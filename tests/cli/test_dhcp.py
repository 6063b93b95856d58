"""``bootbrain dnsmasq …`` and ``bootbrain kea …``, and the CLI's own writes reaching
the DHCP server, as the API's do.

With ``dhcp = "dnsmasq"`` every machine with a static address has the host file
``machine-<id>.hosts`` (``mac,ip,hostname``) in ``dhcp-hostsdir``, written when the
machine is written, rewritten when its reservation changes and removed with it. With
``dhcp = "kea"`` the same writes rewrite Kea's configuration file, whose
``reservations`` list every such machine (no Kea runs here, so each write is
"file-only": the file, and nothing on the control socket).

Whoever writes — the API, ``machine add|edit|delete``, ``import``, ``demo`` — the DHCP
server must see the same thing; the tests that compare the CLI with the API run the
same steps through both.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask

from bootbrain.app import create_app
from tests.cli.conftest import PUBLIC_URL, Cli, MakeCli
from tests.conftest import Api, make_token

MAC1, MAC2, MAC3, MAC4 = (f"52:54:00:aa:cc:0{i}" for i in range(1, 5))
RACK1 = ["--set", "name=rack1", "--set", "cidr=10.20.0.0/24", "--set", "gateway=10.20.0.1"]


def kea(mac: str, ip: str, hostname: str | None = None) -> dict[str, str]:
    """One entry of Kea's ``reservations``, as bootbrain writes it."""
    return {"hw-address": mac, "ip-address": ip, **({"hostname": hostname} if hostname else {})}


def add(cli: Cli, *args: str) -> int:
    return int(cli.json("machine", "add", *args, "--json")["id"])


# --- dnsmasq: the commands ------------------------------------------------------------------


def test_dnsmasq_config_is_rendered_from_the_settings(dnsmasq_cli: Cli) -> None:
    out = dnsmasq_cli.run("dnsmasq", "config").stdout
    assert f"dhcp-hostsdir={dnsmasq_cli.hostsdir}\n" in out
    assert "dhcp-range=10.20.0.100,10.20.0.200,255.255.255.0,12h\n" in out
    assert f"dhcp-boot=tag:ipxe,{PUBLIC_URL}/boot.ipxe\n" in out
    assert f"dhcp-script={dnsmasq_cli.home / 'dnsmasq-hook'}\n" in out

    target = dnsmasq_cli.home / "dnsmasq.conf"
    first = dnsmasq_cli.run("dnsmasq", "config", "-o", str(target))
    assert first.stderr == f"{target}: written\n"
    assert target.read_text() == out
    assert dnsmasq_cli.run("dnsmasq", "config", "-o", str(target)).stderr == (
        f"{target}: unchanged\n"
    )
    other = dnsmasq_cli.run("dnsmasq", "config", "--base-url", "http://10.0.0.1:8080").stdout
    assert "dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot.ipxe\n" in other


def test_dnsmasq_config_check_runs_dnsmasq_test(dnsmasq_cli: Cli) -> None:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    out = dnsmasq_cli.run("dnsmasq", "config", "--check").stdout
    assert "dhcp-range=" in out


def test_dnsmasq_config_names_a_missing_setting(make_cli: MakeCli) -> None:
    cli = make_cli(dhcp="dnsmasq", init=False)
    del cli.config["dnsmasq"]["range_start"]
    cli.write_config()
    assert cli.fails("dnsmasq", "config", code=1) == "error: dnsmasq needs range_start\n"


def test_dnsmasq_sync_makes_the_hostsdir_match_the_inventory(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    csv = cli.home / "m.csv"
    csv.write_text(
        "hostname,macs,network,address\n"
        f"node-01,{MAC1},rack1,10.20.0.50\nnode-02,{MAC2},rack1,10.20.0.51\nnode-03,{MAC3},,\n"
    )
    cli.run("import", str(csv))
    shutil.rmtree(cli.hostsdir, ignore_errors=True)  # whatever the import wrote
    cli.hostsdir.mkdir()
    (cli.hostsdir / "machine-99.hosts").write_text("52:54:00:00:00:99,10.20.0.99\n")  # stale
    (cli.hostsdir / "operator-own.hosts").write_text("52:54:00:00:00:98,10.20.0.98\n")
    ids = [m["id"] for m in cli.machines()]
    out = cli.run("dnsmasq", "sync").stdout
    assert out == "written 2, removed 1\n"  # no dnsmasq runs: nothing signalled
    assert cli.host_files() == {
        f"machine-{ids[0]}.hosts": f"{MAC1},10.20.0.50,node-01\n",
        f"machine-{ids[1]}.hosts": f"{MAC2},10.20.0.51,node-02\n",
        "operator-own.hosts": "52:54:00:00:00:98,10.20.0.98\n",  # not ours: left alone
    }
    assert cli.run("dnsmasq", "sync").stdout == "written 0, removed 0\n"


def test_dnsmasq_hook_installs_the_wrapper_and_its_config(dnsmasq_cli: Cli) -> None:
    hook = dnsmasq_cli.home / "bin" / "dnsmasq-hook"
    conf = dnsmasq_cli.home / "leasehook.conf"
    dnsmasq_cli.run("dnsmasq", "hook", str(hook), "--hook-config", str(conf))
    assert hook.stat().st_mode & stat.S_IXUSR
    text = hook.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"BOOTBRAIN_HOOK_CONFIG={conf}\n" in text
    assert text.rstrip().endswith('dnsmasq "$@"')
    assert f"url={PUBLIC_URL}\n" in conf.read_text()
    assert f"spool_dir={dnsmasq_cli.home / 'spool'}\n" in conf.read_text()
    default = dnsmasq_cli.home / "dnsmasq-hook"  # dnsmasq.hook_script from the config
    dnsmasq_cli.run("dnsmasq", "hook", "--python", "/usr/bin/python3")
    assert default.read_text().startswith("#!/bin/sh\n")


# --- kea: the commands ----------------------------------------------------------------------


def test_kea_config_is_the_whole_document_with_the_reservations(kea_cli: Cli) -> None:
    kea_cli.run("network", "add", *RACK1)
    mid = add(kea_cli, "--hostname", "node-01", "--mac", MAC1,
              "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    doc = json.loads(kea_cli.run("kea", "config").stdout)
    dhcp4 = doc["Dhcp4"]
    assert dhcp4["interfaces-config"] == {"interfaces": ["lo"]}
    assert dhcp4["control-socket"]["socket-name"] == str(kea_cli.home / "kea4-ctrl-socket")
    (subnet,) = dhcp4["subnet4"]
    assert subnet["subnet"] == "10.20.0.0/24"
    assert subnet["reservations"] == [kea(MAC1, "10.20.0.50", "node-01")]
    assert mid == kea_cli.machines()[0]["id"]
    target = kea_cli.home / "rendered.json"
    assert kea_cli.run("kea", "config", "-o", str(target)).stderr == f"{target}: written\n"
    assert json.loads(target.read_text()) == doc


def test_kea_config_check_runs_kea_dhcp4_t(kea_cli: Cli) -> None:
    if shutil.which("kea-dhcp4") is None:
        pytest.skip("kea-dhcp4 is not installed (apt-get install kea-dhcp4-server)")
    doc = json.loads(kea_cli.run("kea", "config", "--check").stdout)
    assert doc["Dhcp4"]["subnet4"][0]["subnet"] == "10.20.0.0/24"


def test_kea_config_names_a_missing_setting(make_cli: MakeCli) -> None:
    cli = make_cli(dhcp="kea", init=False)
    del cli.config["kea"]["subnet"]
    cli.write_config()
    cli.run("init")
    assert cli.fails("kea", "config", code=1) == "error: kea.subnet is not set\n"
    assert cli.fails("kea", "sync", code=1) == "error: kea.subnet is not set\n"


def test_kea_sync_without_a_running_kea_writes_the_file(kea_cli: Cli) -> None:
    kea_cli.run("network", "add", *RACK1)
    csv = kea_cli.home / "m.csv"
    csv.write_text(f"hostname,macs,network,address\nnode-01,{MAC1},rack1,10.20.0.50\n")
    kea_cli.run("import", str(csv))
    kea_cli.kea_config.unlink(missing_ok=True)
    out = kea_cli.run("kea", "sync").stdout
    assert out.startswith("file-only: changed (")
    assert kea_cli.kea_reservations() == [kea(MAC1, "10.20.0.50", "node-01")]
    assert kea_cli.run("kea", "sync").stdout.startswith("file-only: unchanged (")


def test_kea_reload_with_nothing_on_the_socket(kea_cli: Cli) -> None:
    err = kea_cli.fails("kea", "reload", code=1)
    assert err.startswith(f"error: cannot read {kea_cli.kea_config}: ")  # no file yet
    kea_cli.run("kea", "sync")
    assert kea_cli.run("kea", "reload").stdout == "not-running\n"


def test_kea_hook_installs_the_wrapper(kea_cli: Cli) -> None:
    hook = kea_cli.home / "kea-hook"
    conf = kea_cli.home / "leasehook.conf"
    kea_cli.run("kea", "hook", "--hook-config", str(conf))
    assert hook.stat().st_mode & stat.S_IXUSR
    assert hook.read_text().rstrip().endswith('kea "$@"')
    assert f"url={PUBLIC_URL}\n" in conf.read_text()


# --- the CLI's writes reach dnsmasq ------------------------------------------------------------


def test_machine_add_writes_the_host_file(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    mid = add(cli, "--hostname", "node-01", "--mac", MAC1, "--mac", MAC2,
              "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    no_address = add(cli, "--hostname", "node-02", "--mac", MAC3)
    assert cli.host_files() == {f"machine-{mid}.hosts": f"{MAC1},10.20.0.50,node-01\n"}
    assert f"machine-{no_address}.hosts" not in cli.host_files()


def test_machine_edit_rewrites_the_host_file(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    mid = add(cli, "--hostname", "node-01", "--mac", MAC1,
              "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    name = f"machine-{mid}.hosts"
    cli.run("machine", "edit", str(mid), "--address", "10.20.0.60")
    assert cli.host_files() == {name: f"{MAC1},10.20.0.60,node-01\n"}
    cli.run("machine", "edit", str(mid), "--mac", MAC2)
    assert cli.host_files() == {name: f"{MAC2},10.20.0.60,node-01\n"}
    cli.run("machine", "edit", str(mid), "--hostname", "node-11")
    assert cli.host_files() == {name: f"{MAC2},10.20.0.60,node-11\n"}
    cli.run("machine", "edit", str(mid), "--state", "ready")  # not part of the reservation
    assert cli.host_files() == {name: f"{MAC2},10.20.0.60,node-11\n"}


def test_machine_edit_adding_an_address_writes_the_host_file(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    mid = add(cli, "--hostname", "node-01", "--mac", MAC1)
    assert cli.host_files() == {}
    cli.run("machine", "edit", str(mid), "--network", "rack1", "--address", "10.20.0.50")
    assert cli.host_files() == {f"machine-{mid}.hosts": f"{MAC1},10.20.0.50,node-01\n"}


def test_machine_delete_removes_the_host_file(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    gone = add(cli, "--hostname", "node-01", "--mac", MAC1,
               "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    kept = add(cli, "--hostname", "node-02", "--mac", MAC2,
               "--network", "rack1", "--address", "10.20.0.51")  # fmt: skip
    cli.run("machine", "delete", str(gone))
    assert cli.host_files() == {f"machine-{kept}.hosts": f"{MAC2},10.20.0.51,node-02\n"}


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_import_writes_the_host_files(dnsmasq_cli: Cli, fmt: str) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    if fmt == "csv":
        path = cli.home / "m.csv"
        path.write_text(
            "hostname,macs,network,address\n"
            f"node-01,{MAC1},rack1,10.20.0.50\nnode-02,{MAC2},,\n,{MAC3},rack1,10.20.0.52\n"
        )
    else:
        path = cli.home / "m.yaml"
        path.write_text(
            "machines:\n"
            f"  - {{hostname: node-01, nics: [{{mac: '{MAC1}'}}], network: rack1,"
            " address: 10.20.0.50}\n"
            f"  - {{hostname: node-02, nics: [{{mac: '{MAC2}'}}]}}\n"
            f"  - {{nics: [{{mac: '{MAC3}'}}], network: rack1, address: 10.20.0.52}}\n"
        )
    cli.run("import", str(path))
    one, _, three = (m["id"] for m in cli.machines())
    assert cli.host_files() == {
        f"machine-{one}.hosts": f"{MAC1},10.20.0.50,node-01\n",
        f"machine-{three}.hosts": f"{MAC3},10.20.0.52\n",  # no hostname: mac,ip
    }


def test_a_refused_import_writes_no_host_file(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    cli.run("network", "add", *RACK1)
    path = cli.home / "m.csv"
    path.write_text(
        f"hostname,macs,network,address\nnode-01,{MAC1},rack1,10.20.0.50\nbad_name,{MAC2},,\n"
    )
    cli.fails("import", str(path))
    assert cli.machines() == []
    assert cli.host_files() == {}


def test_demo_writes_the_host_files(dnsmasq_cli: Cli) -> None:
    dnsmasq_cli.run("demo")
    ids = {m["hostname"]: m["id"] for m in dnsmasq_cli.machines()}
    assert dnsmasq_cli.host_files() == {
        f"machine-{ids['node-a1']}.hosts": "52:54:00:00:a1:01,10.20.0.11,node-a1\n",
        f"machine-{ids['node-a2']}.hosts": "52:54:00:00:a2:01,10.20.0.12,node-a2\n",
    }


# --- the CLI's writes reach Kea ----------------------------------------------------------------


def test_kea_machine_add_edit_delete_update_the_reservations(kea_cli: Cli) -> None:
    cli = kea_cli
    cli.run("network", "add", *RACK1)
    one = add(cli, "--hostname", "node-01", "--mac", MAC1,
              "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    assert cli.kea_reservations() == [kea(MAC1, "10.20.0.50", "node-01")]
    two = add(cli, "--hostname", "node-02", "--mac", MAC2,
              "--network", "rack1", "--address", "10.20.0.51")  # fmt: skip
    assert cli.kea_reservations() == [
        kea(MAC1, "10.20.0.50", "node-01"),
        kea(MAC2, "10.20.0.51", "node-02"),
    ]
    cli.run("machine", "edit", str(one), "--address", "10.20.0.60", "--mac", MAC3)
    assert cli.kea_reservations() == [
        kea(MAC3, "10.20.0.60", "node-01"),
        kea(MAC2, "10.20.0.51", "node-02"),
    ]
    cli.run("machine", "delete", str(two))
    assert cli.kea_reservations() == [kea(MAC3, "10.20.0.60", "node-01")]
    cli.run("machine", "delete", str(one))
    assert cli.kea_reservations() == []


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_kea_import_updates_the_reservations(kea_cli: Cli, fmt: str) -> None:
    cli = kea_cli
    cli.run("network", "add", *RACK1)
    cli.run("network", "add", "--set", "name=rack2", "--set", "cidr=10.30.0.0/24")
    rows = [("node-01", MAC1, "rack1", "10.20.0.50"), ("node-02", MAC2, "rack2", "10.30.0.5")]
    if fmt == "csv":
        path = cli.home / "m.csv"
        path.write_text(
            "hostname,macs,network,address\n" + "".join(",".join(r) + "\n" for r in rows)
        )
    else:
        path = cli.home / "m.yaml"
        path.write_text(
            "machines:\n"
            + "".join(
                f"  - {{hostname: {h}, nics: [{{mac: '{m}'}}], network: {n}, address: {a}}}\n"
                for h, m, n, a in rows
            )
        )
    cli.run("import", str(path))
    # node-02's address is outside kea.subnet: left out of this Kea's configuration.
    assert cli.kea_reservations() == [kea(MAC1, "10.20.0.50", "node-01")]


def test_kea_demo_updates_the_reservations(kea_cli: Cli) -> None:
    kea_cli.run("demo")
    assert kea_cli.kea_reservations() == [
        kea("52:54:00:00:a1:01", "10.20.0.11", "node-a1"),
        kea("52:54:00:00:a2:01", "10.20.0.12", "node-a2"),
    ]


# --- the CLI and the API give the DHCP server the same thing --------------------------------


@contextmanager
def api_of(cli: Cli) -> Iterator[Api]:
    """The API of the app the same config file makes (``create_app``), with a token."""
    app: Flask = create_app(cli.settings())
    app.testing = True
    try:
        yield Api(app.test_client(), make_token(app, "parity", "write"))
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()


Step = tuple[Callable[[Api], Any], Callable[[Cli], Any]]


def _nic(mac: str) -> list[dict[str, Any]]:
    return [{"mac": mac, "boot": True}]


def _add_machine(hostname: str, mac: str, address: str | None = None) -> Step:
    body: dict[str, Any] = {"hostname": hostname, "nics": _nic(mac)}
    args = ["--hostname", hostname, "--mac", mac]
    if address:
        body |= {"network": "rack1", "address": address}
        args += ["--network", "rack1", "--address", address]
    return (lambda a: a.post("/machines", body, expect=201), lambda c: add(c, *args))


def _edit_machine(machine_id: int, body: dict[str, Any], *args: str) -> Step:
    return (
        lambda a: a.patch(f"/machines/{machine_id}", body, expect=200),
        lambda c: c.run("machine", "edit", str(machine_id), *args),
    )


STEPS: list[Step] = [
    (
        lambda a: a.post("/networks", {"name": "rack1", "cidr": "10.20.0.0/24"}, expect=201),
        lambda c: c.run("network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24"),
    ),
    _add_machine("node-01", MAC1, "10.20.0.50"),
    _add_machine("node-02", MAC2, "10.20.0.51"),
    _add_machine("node-03", MAC4),
    _edit_machine(1, {"address": "10.20.0.60"}, "--address", "10.20.0.60"),
    _edit_machine(2, {"nics": _nic(MAC3)}, "--mac", MAC3),
    _edit_machine(1, {"hostname": "node-11"}, "--hostname", "node-11"),
    _edit_machine(1, {"state": "ready"}, "--state", "ready"),
    _edit_machine(
        3,
        {"network": "rack1", "address": "10.20.0.53"},
        "--network",
        "rack1",
        "--address",
        "10.20.0.53",
    ),
    (
        lambda a: a.delete("/machines/2", expect=204),
        lambda c: c.run("machine", "delete", "2"),
    ),
]


def _replay(site: Cli, through: str, look: Callable[[Cli], Any]) -> list[Any]:
    seen = []
    if through == "api":
        with api_of(site) as api:
            for via_api, _ in STEPS:
                via_api(api)
                seen.append(look(site))
    else:
        for _, via_cli in STEPS:
            via_cli(site)
            seen.append(look(site))
    return seen


@pytest.mark.parametrize(
    ("dhcp", "look"),
    [("dnsmasq", Cli.host_files), ("kea", Cli.kea_reservations)],
    ids=["dnsmasq", "kea"],
)
def test_the_cli_gives_the_dhcp_server_what_the_api_gives_it(
    make_cli: MakeCli, dhcp: str, look: Callable[[Cli], Any]
) -> None:
    """The same steps through the API, then (on an emptied database: the same machine
    ids) through the CLI; after each step the DHCP server's files must be the same."""
    via_api = _replay(make_cli("api-site", dhcp=dhcp), "api", look)
    # The API side is what the e2e tests boot against: check it is what this test
    # thinks it is, so that the comparison below compares something.
    assert via_api[-1] == (
        {
            "machine-1.hosts": f"{MAC1},10.20.0.60,node-11\n",
            "machine-3.hosts": f"{MAC4},10.20.0.53,node-03\n",
        }
        if dhcp == "dnsmasq"
        else [kea(MAC1, "10.20.0.60", "node-11"), kea(MAC4, "10.20.0.53", "node-03")]
    )
    via_cli = _replay(make_cli("cli-site", dhcp=dhcp, fresh=True), "cli", look)
    for step, (api_saw, cli_saw) in enumerate(zip(via_api, via_cli, strict=True)):
        assert cli_saw == api_saw, f"after step {step}"


def test_kea_tftp_config_renders_a_tftp_only_dnsmasq(kea_cli: Cli) -> None:
    out = kea_cli.run("kea", "tftp-config").stdout
    assert "port=0\n" in out and "enable-tftp\n" in out
    ranges = [ln for ln in out.splitlines() if ln.startswith("dhcp-range=")]
    assert all(r.endswith(",ra-only") for r in ranges)  # no addresses handed out
