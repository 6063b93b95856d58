"""Kea: the rendered Dhcp4 document, and the control-socket logic against a fake Kea.

The fake answers on a unix socket the way kea-dhcp4 does (one JSON command in, one
JSON answer out, connection closed), so both reservation paths can be tested here:
Kea 2.2's config-test + config-reload (tested for real in tests/integration) and the
host commands of Kea >= 2.7, which no Debian package offers yet.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootbrain.config import Settings
from bootbrain.integrations import kea
from bootbrain.integrations.kea import (
    KeaCommandError,
    KeaConfigError,
    KeaUnavailableError,
    render_config,
    sync_reservations,
)
from bootbrain.integrations.reservations import Reservation, ReservationError

BASE = "http://10.0.0.1:8080"
MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


def make(tmp: Path | None = None, **kea_values: Any) -> Settings:
    base = tmp or Path("/nonexistent")
    values: dict[str, Any] = {
        "interface": "br0",
        "subnet": "10.0.0.0/24",
        "pool_start": "10.0.0.100",
        "pool_end": "10.0.0.199",
        "server_ip": "10.0.0.1",
        "router": "10.0.0.254",
        "config_path": str(base / "kea-dhcp4.conf"),
        "control_socket": str(base / "kea.sock"),
        "lease_file": str(base / "leases.csv"),
        "hook_library_dir": str(base / "hooks"),
        "hook_script": "/usr/local/lib/bootbrain/kea-hook",
    }
    values.update(kea_values)
    return Settings.model_validate({"kea": values})


def res(machine_id: int, mac: str, ip: str, hostname: str | None = None) -> Reservation:
    return Reservation(machine_id, mac, ip, hostname)


def test_document() -> None:
    doc = render_config(make(), BASE, [res(1, MAC1, "10.0.0.50", "node-1")])
    d = doc["Dhcp4"]
    assert d["interfaces-config"] == {"interfaces": ["br0"]}
    assert d["control-socket"] == {"socket-type": "unix",
                                   "socket-name": "/nonexistent/kea.sock"}
    assert d["option-def"] == [
        {"name": "ipxe-encap-opts", "code": 175, "space": "dhcp4", "type": "empty",
         "encapsulate": "ipxe"},
        {"name": "no-pxedhcp", "code": 176, "space": "ipxe", "type": "uint8"},
    ]
    classes = {c["name"]: c for c in d["client-classes"]}
    assert list(classes) == [kea.CLASS_IPXE, kea.CLASS_BIOS, kea.CLASS_EFI64, kea.CLASS_HTTP]
    ipxe = classes[kea.CLASS_IPXE]
    assert ipxe["test"] == "substring(option[77].hex,0,4) == 'iPXE'"
    assert ipxe["boot-file-name"] == f"{BASE}/boot.ipxe"
    assert {"name": "no-pxedhcp", "space": "ipxe", "data": "1"} in ipxe["option-data"]
    bios = classes[kea.CLASS_BIOS]
    assert bios["test"] == "not member('bootbrain-ipxe') and option[93].hex == 0x0000"
    assert (bios["next-server"], bios["boot-file-name"]) == ("10.0.0.1", "undionly.kpxe")
    efi = classes[kea.CLASS_EFI64]
    assert "0x0007" in efi["test"] and "0x0009" in efi["test"]
    assert efi["boot-file-name"] == "snponly.efi"
    http = classes[kea.CLASS_HTTP]
    assert http["boot-file-name"] == f"{BASE}/tftp/snponly.efi"
    assert http["option-data"][0]["data"] == "HTTPClient"
    [subnet] = d["subnet4"]
    assert subnet["id"] == 1 and subnet["subnet"] == "10.0.0.0/24"
    assert subnet["pools"] == [{"pool": "10.0.0.100 - 10.0.0.199"}]
    assert subnet["option-data"] == [{"name": "routers", "data": "10.0.0.254"}]
    assert subnet["reservations"] == [
        {"hw-address": MAC1, "ip-address": "10.0.0.50", "hostname": "node-1"}
    ]
    libs = [h["library"].rsplit("/", 1)[1] for h in d["hooks-libraries"]]
    assert libs == ["libdhcp_lease_cmds.so", "libdhcp_run_script.so"]
    assert d["hooks-libraries"][1]["parameters"] == {
        "name": "/usr/local/lib/bootbrain/kea-hook", "sync": False
    }
    json.dumps(doc)  # plain JSON all the way down


def test_optional_parts(tmp_path: Path) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "libdhcp_host_cmds.so").touch()
    doc = render_config(
        make(tmp_path, arm64_binary="snp-arm64.efi", hook_script=None, router=None,
             dns_servers=["10.0.0.53", "9.9.9.9"], tftp_server="10.9.9.9", pool_start=None,
             pool_end=None, http_boot_url="http://files/ipxe.efi"),
        BASE, [],
    )["Dhcp4"]
    classes = {c["name"]: c for c in d_classes(doc)}
    assert classes[kea.CLASS_ARM64]["test"].endswith("option[93].hex == 0x000b")
    assert classes[kea.CLASS_BIOS]["next-server"] == "10.9.9.9"  # TFTP may live elsewhere
    assert classes[kea.CLASS_HTTP]["boot-file-name"] == "http://files/ipxe.efi"
    libs = [h["library"].rsplit("/", 1)[1] for h in doc["hooks-libraries"]]
    assert libs == ["libdhcp_lease_cmds.so", "libdhcp_host_cmds.so"]  # found, so loaded
    subnet = doc["subnet4"][0]
    assert "pools" not in subnet
    assert subnet["option-data"] == [{"name": "domain-name-servers",
                                      "data": "10.0.0.53, 9.9.9.9"}]


def d_classes(d: dict[str, Any]) -> list[dict[str, Any]]:
    return list(d["client-classes"])


def test_reservations_kea_would_refuse_are_left_out() -> None:
    kept = render_config(make(), BASE, [
        res(1, MAC1, "10.0.0.50"),
        res(2, MAC2, "10.1.0.50"),    # another subnet: Kea refuses the whole file
        res(3, MAC3, "10.0.0.1"),     # the server itself
        res(4, "52:54:00:00:00:04", "10.0.0.255"),  # broadcast
        res(5, "52:54:00:00:00:05", "10.0.0.150"),  # inside the pool: fine
    ])["Dhcp4"]["subnet4"][0]["reservations"]
    assert [h["hw-address"] for h in kept] == [MAC1, "52:54:00:00:00:05"]


@pytest.mark.parametrize("bad", [
    [res(1, MAC1, "10.0.0.50"), res(2, MAC1, "10.0.0.51")],
    [res(1, MAC1, "10.0.0.50"), res(2, MAC2, "10.0.0.50")],
    [res(1, "52:54:00:00:00:0x", "10.0.0.50")],
    [res(1, MAC1, "10.0.0.50", "bad name")],
])
def test_invalid_or_duplicate_reservations_are_refused(bad: list[Reservation]) -> None:
    with pytest.raises(ReservationError):
        render_config(make(), BASE, bad)


@pytest.mark.parametrize(("settings", "base"), [
    ({"subnet": None}, BASE),
    ({"pool_start": "10.0.1.1"}, BASE),
    ({"pool_end": None}, BASE),
    ({"pool_start": "10.0.0.200", "pool_end": "10.0.0.100"}, BASE),
    ({"server_ip": None}, BASE),  # no TFTP server for PXE ROMs
    ({"interface": "br0 eth1"}, BASE),
    ({}, "http://x/\"}, {\"evil\": 1"),
    ({}, "http://" + "a" * 120),
])
def test_refuses_bad_settings(settings: dict[str, Any], base: str) -> None:
    with pytest.raises((KeaConfigError, ValueError)):
        render_config(make(**settings), base, [])


# --- a fake kea-dhcp4 control socket ------------------------------------------------------


class FakeKea:
    def __init__(self, path: Path, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.commands: list[dict[str, Any]] = []
        self.handler = handler
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    buf += conn.recv(65536)
                    try:
                        message = json.loads(buf)
                        break
                    except ValueError:
                        continue
                self.commands.append(message)
                conn.sendall(json.dumps(self.handler(message)).encode())

    def names(self) -> list[str]:
        return [c["command"] for c in self.commands]

    def close(self) -> None:
        self.sock.close()


BASIC = ["config-get", "config-reload", "config-test", "config-write", "list-commands",
         "lease4-get", "version-get"]


def kea22(message: dict[str, Any]) -> dict[str, Any]:
    if message["command"] == "list-commands":
        return {"result": 0, "arguments": BASIC}
    if message["command"] == "config-test":
        pools = message["arguments"]["Dhcp4"]["subnet4"][0].get("pools", [])
        if any("10.99" in p["pool"] for p in pools):
            return {"result": 1, "text": "pool outside subnet"}
        return {"result": 0, "text": "Configuration seems sane."}
    if message["command"] == "config-reload":
        return {"result": 0, "text": "Configuration successful."}
    return {"result": 2, "text": f"'{message['command']}' command not supported."}


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bbkea-") as d:
        yield Path(d)


def test_sync_on_kea_2_2_uses_config_reload(short_tmp: Path) -> None:
    settings = make(short_tmp)
    fake = FakeKea(settings.kea.control_socket, kea22)
    try:
        result = sync_reservations(settings, BASE, [res(1, MAC1, "10.0.0.50")])
    finally:
        fake.close()
    assert result.method == "config-reload" and result.changed
    assert fake.names() == ["list-commands", "config-test", "config-reload"]
    tested = fake.commands[1]["arguments"]
    assert tested == json.loads(settings.kea.config_path.read_text())


def test_refused_document_leaves_the_file_alone(short_tmp: Path) -> None:
    settings = make(short_tmp)
    settings.kea.config_path.write_text("{}\n")
    settings.kea.config_path.chmod(0o640)
    broken = make(short_tmp, pool_start="10.99.0.1", pool_end="10.99.0.9", subnet="10.0.0.0/8")
    fake = FakeKea(settings.kea.control_socket, kea22)
    try:
        with pytest.raises(KeaCommandError, match="pool outside subnet"):
            sync_reservations(broken, BASE, [])
        assert settings.kea.config_path.read_text() == "{}\n"
        assert "config-reload" not in fake.names()
        sync_reservations(settings, BASE, [])
    finally:
        fake.close()
    assert oct(settings.kea.config_path.stat().st_mode & 0o777) == "0o640"  # mode kept


def test_sync_with_kea_down_writes_the_file_only(short_tmp: Path) -> None:
    settings = make(short_tmp)
    result = sync_reservations(settings, BASE, [res(1, MAC1, "10.0.0.50")])
    assert result.method == "file-only" and result.changed
    doc = json.loads(settings.kea.config_path.read_text())
    assert doc["Dhcp4"]["subnet4"][0]["reservations"][0]["hw-address"] == MAC1
    assert kea.reload(settings) == "not-running"
    assert not sync_reservations(settings, BASE, [res(1, MAC1, "10.0.0.50")]).changed


class HostCmdsKea:
    """Kea >= 2.7 with libdhcp_host_cmds: reservations live in memory, by MAC."""

    def __init__(self, hosts: list[dict[str, Any]], fail_add: bool = False) -> None:
        self.hosts = {h["hw-address"]: h for h in hosts}
        self.fail_add = fail_add

    def __call__(self, message: dict[str, Any]) -> dict[str, Any]:
        name, args = message["command"], message.get("arguments", {})
        if name == "list-commands":
            return {"result": 0, "arguments": [*BASIC, "reservation-add", "reservation-del",
                                               "reservation-get-all"]}
        if name == "reservation-get-all":
            assert args == {"subnet-id": 1, "operation-target": "primary"}
            return {"result": 0, "arguments": {"hosts": [
                {**h, "subnet-id": 1, "client-classes": [], "option-data": []}
                for h in self.hosts.values()]}}
        if name == "reservation-del":
            assert args["operation-target"] == "primary"
            self.hosts.pop(args["identifier"])
            return {"result": 0, "text": "Host deleted."}
        if name == "reservation-add":
            if self.fail_add:
                return {"result": 1, "text": "Unable to add new host because there is no "
                                             "hosts-database configured."}
            r = dict(args["reservation"])
            assert r.pop("subnet-id") == 1 and args["operation-target"] == "primary"
            self.hosts[r["hw-address"]] = r
            return {"result": 0, "text": "Host added."}
        return kea22(message)


def test_sync_with_host_commands_applies_the_difference(short_tmp: Path) -> None:
    settings = make(short_tmp)
    server = HostCmdsKea([
        {"hw-address": MAC1, "ip-address": "10.0.0.50", "hostname": "node-1"},  # unchanged
        {"hw-address": MAC2, "ip-address": "10.0.0.51"},                        # removed
        {"hw-address": MAC3, "ip-address": "10.0.0.52"},                        # changed
    ])
    fake = FakeKea(settings.kea.control_socket, server)
    try:
        result = sync_reservations(settings, BASE, [
            res(1, MAC1, "10.0.0.50", "node-1"),
            res(3, MAC3, "10.0.0.62"),
            res(4, "52:54:00:00:00:04", "10.0.0.53", "node-4"),
        ])
    finally:
        fake.close()
    assert result.method == "host-commands"
    assert result.deleted == [MAC2, MAC3]
    assert result.added == [MAC3, "52:54:00:00:00:04"]
    assert "config-reload" not in fake.names()
    assert {m: h["ip-address"] for m, h in server.hosts.items()} == {
        MAC1: "10.0.0.50", MAC3: "10.0.0.62", "52:54:00:00:00:04": "10.0.0.53"}
    on_disk = json.loads(settings.kea.config_path.read_text())["Dhcp4"]["subnet4"][0]
    assert len(on_disk["reservations"]) == 3  # a restart gives the same answer


def test_host_commands_that_cannot_change_config_hosts_fall_back(short_tmp: Path) -> None:
    settings = make(short_tmp)
    fake = FakeKea(settings.kea.control_socket, HostCmdsKea([], fail_add=True))
    try:
        result = sync_reservations(settings, BASE, [res(1, MAC1, "10.0.0.50")])
    finally:
        fake.close()
    assert result.method == "config-reload"
    assert fake.names()[-2:] == ["config-test", "config-reload"]


def test_command_errors(short_tmp: Path) -> None:
    with pytest.raises(KeaUnavailableError):
        kea.command(short_tmp / "nothing.sock", "list-commands")
    fake = FakeKea(short_tmp / "k.sock", kea22)
    try:
        with pytest.raises(KeaCommandError) as info:
            kea.command(short_tmp / "k.sock", "reservation-add", {"reservation": {}})
        assert info.value.result == 2
        answer = kea.command(short_tmp / "k.sock", "reservation-add", check=False)
        assert answer["result"] == 2
    finally:
        fake.close()


def test_config_behind_a_symlink_stays_a_symlink(short_tmp: Path) -> None:
    real = short_tmp / "real.json"
    real.write_text("{}")
    settings = make(short_tmp)
    settings.kea.config_path.symlink_to(real)
    assert sync_reservations(settings, BASE, []).method == "file-only"
    assert settings.kea.config_path.is_symlink()
    assert json.loads(real.read_text())["Dhcp4"]["subnet4"][0]["reservations"] == []
