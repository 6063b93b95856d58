"""A change made with the CLI reaches the DHCP server, as one made through the API does.

Before the services builder, the CLI built its own database and missed the DHCP
listener the app wired in: with ``dhcp = "dnsmasq"`` or ``"kea"``, ``machine add
--address``, ``edit``, ``delete``, ``import`` and ``demo`` changed the inventory but
no reservation reached the server until someone ran ``sync``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, make_cli

MAC = "52:54:00:aa:cc:01"


@pytest.fixture
def dnsmasq_cli(tmp_path: Path, db_url: str) -> Cli:
    return make_cli(
        tmp_path,
        db_url,
        f'dhcp = "dnsmasq"\n[dnsmasq]\nhostsdir = "{tmp_path / "hosts"}"\n'
        f'pid_file = "{tmp_path / "no-dnsmasq.pid"}"\n',
    )


@pytest.fixture
def kea_cli(tmp_path: Path, db_url: str) -> Cli:
    return make_cli(
        tmp_path,
        db_url,
        f'dhcp = "kea"\n[kea]\nsubnet = "10.20.0.0/24"\nserver_ip = "10.20.0.2"\n'
        f'config_path = "{tmp_path / "kea-dhcp4.conf"}"\n'
        f'control_socket = "{tmp_path / "no-kea.sock"}"\nhost_cmds = false\n',
    )


def hosts(cli: Cli) -> dict[str, str]:
    folder = cli.data_dir.parent / "hosts"
    return (
        {p.name: p.read_text() for p in sorted(folder.glob("*.hosts"))} if folder.is_dir() else {}
    )


def kea_reservations(cli: Cli) -> list[dict[str, str]]:
    document = json.loads((cli.data_dir.parent / "kea-dhcp4.conf").read_text())
    return list(document["Dhcp4"]["subnet4"][0]["reservations"])


def rack(cli: Cli) -> None:
    cli(
        "network",
        "add",
        "--set",
        "name=rack1",
        "--set",
        "cidr=10.20.0.0/24",
        "--set",
        "gateway=10.20.0.1",
    )


def test_machine_add_edit_delete_write_dnsmasq_host_files(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    rack(cli)
    cli(
        "machine",
        "add",
        "--hostname",
        "node-01",
        "--mac",
        MAC,
        "--network",
        "rack1",
        "--address",
        "10.20.0.50",
    )
    assert hosts(cli) == {"machine-1.hosts": f"{MAC},10.20.0.50,node-01\n"}
    cli("machine", "edit", "1", "--address", "10.20.0.51")
    assert hosts(cli) == {"machine-1.hosts": f"{MAC},10.20.0.51,node-01\n"}
    cli("machine", "edit", "1", "--hostname", "node-one")
    assert hosts(cli) == {"machine-1.hosts": f"{MAC},10.20.0.51,node-one\n"}
    cli("machine", "delete", "1")
    assert hosts(cli) == {}


def test_import_writes_dnsmasq_host_files(dnsmasq_cli: Cli, tmp_path: Path) -> None:
    cli = dnsmasq_cli
    rack(cli)
    csv = tmp_path / "machines.csv"
    csv.write_text(
        "hostname,macs,network,address\n"
        "n1,52:54:00:00:00:01,rack1,10.20.0.11\n"
        "n2,52:54:00:00:00:02;52:54:00:00:00:12,rack1,10.20.0.12\n"
        "n3,52:54:00:00:00:03,,\n"
    )
    cli("import", str(csv))
    assert hosts(cli) == {
        "machine-1.hosts": "52:54:00:00:00:01,10.20.0.11,n1\n",
        "machine-2.hosts": "52:54:00:00:00:02,10.20.0.12,n2\n",
    }


def test_demo_writes_dnsmasq_host_files(dnsmasq_cli: Cli) -> None:
    dnsmasq_cli("demo")
    assert hosts(dnsmasq_cli) == {
        "machine-1.hosts": "52:54:00:00:a1:01,10.20.0.11,node-a1\n",
        "machine-2.hosts": "52:54:00:00:a2:01,10.20.0.12,node-a2\n",
    }


def test_a_refused_import_writes_no_host_file(dnsmasq_cli: Cli, tmp_path: Path) -> None:
    cli = dnsmasq_cli
    rack(cli)
    csv = tmp_path / "machines.csv"
    csv.write_text(
        "hostname,macs,network,address\n"
        "n1,52:54:00:00:00:01,rack1,10.20.0.11\n"
        "n2,52:54:00:00:00:02,rack1,10.99.0.12\n"
    )
    cli("import", str(csv), code=2)
    assert hosts(cli) == {}
    assert cli.json("machine", "list", "--json") == []


def test_machine_add_edit_delete_update_kea(kea_cli: Cli) -> None:
    cli = kea_cli
    rack(cli)
    cli(
        "machine",
        "add",
        "--hostname",
        "node-01",
        "--mac",
        MAC,
        "--network",
        "rack1",
        "--address",
        "10.20.0.50",
    )
    assert kea_reservations(cli) == [
        {"hw-address": MAC, "ip-address": "10.20.0.50", "hostname": "node-01"}
    ]
    cli("machine", "edit", "1", "--address", "10.20.0.51")
    assert [r["ip-address"] for r in kea_reservations(cli)] == ["10.20.0.51"]
    cli("machine", "delete", "1")
    assert kea_reservations(cli) == []


def test_import_updates_kea_once(kea_cli: Cli, tmp_path: Path) -> None:
    cli = kea_cli
    rack(cli)
    rows = "".join(f"n{i},52:54:00:00:01:{i:02x},rack1,10.20.0.{100 + i}\n" for i in range(20))
    (tmp_path / "m.csv").write_text("hostname,macs,network,address\n" + rows)
    cli("import", str(tmp_path / "m.csv"))
    assert sorted(r["ip-address"] for r in kea_reservations(cli)) == sorted(
        f"10.20.0.{100 + i}" for i in range(20)
    )
