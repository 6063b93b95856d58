"""The rendered dnsmasq configuration and reservation files against the real daemon.

One dnsmasq runs inside a network namespace; busybox udhcpc in a second namespace
plays the clients (option 93 for the architecture, option 77 ``iPXE`` for iPXE).
What is proven here: the boot file each kind of client gets, that a written
reservation is served without a restart, that a removed or changed one really stops
being served (file deleted + SIGHUP) without dnsmasq crashing, that a router
advertisement goes out, and that the lease hook receives dnsmasq's events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootbrain.config import Settings
from bootbrain.integrations import leasehook, render_hook_conf, render_hook_wrapper
from bootbrain.integrations.dnsmasq import (
    remove_reservation,
    render_config,
    sync_reservations,
    validate_config,
    write_reservation,
)
from bootbrain.integrations.reservations import Reservation

from .conftest import CLIENT_IF, SERVER_IF, SERVER_IP, DhcpLab

BASE = f"http://{SERVER_IP}:8080"
IPXE = ("-x", "0x4d:69505845")  # user class "iPXE", raw, as iPXE sends it
MAC_A = "52:54:00:bb:00:0a"
MAC_B = "52:54:00:bb:00:0b"
MAC_C = "52:54:00:bb:00:0c"


#: Sends a router solicitation (retrying until the link-local address has passed
#: DAD) and prints "RA" when a router advertisement arrives.
RA_LISTENER = """
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(5)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
where = ("ff02::2", 0, 0, socket.if_nametoindex("IFACE"))
for _ in range(50):
    try:
        s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), where)
        break
    except OSError:
        time.sleep(0.1)
while True:
    data, _ = s.recvfrom(2000)
    if data[0] == 134:
        print("RA")
        break
"""


def settings_for(tmp: Path, **dnsmasq: Any) -> Settings:
    values: dict[str, Any] = {
        "interface": SERVER_IF,
        "range_start": "10.231.0.100",
        "range_end": "10.231.0.150",
        "netmask": "255.255.255.0",
        "pid_file": str(tmp / "dnsmasq.pid"),
        "lease_file": str(tmp / "dnsmasq.leases"),
        "tftp_root": str(tmp / "tftp"),
        "hostsdir": str(tmp / "hosts"),
        "hook_script": str(tmp / "hook"),
    }
    values.update(dnsmasq)
    return Settings.model_validate({"data_dir": str(tmp), "dnsmasq": values})


class Dnsmasq:
    def __init__(self, lab: DhcpLab, settings: Settings) -> None:
        self.lab = lab
        self.settings = settings
        d = settings.dnsmasq
        assert d.hostsdir is not None and d.pid_file is not None
        self.hostsdir: Path = d.hostsdir
        self.pid_file: Path = d.pid_file
        self.log = lab.workdir / "dnsmasq.log"
        self.conf = lab.workdir / "dnsmasq.conf"

    def start(self) -> None:
        d = self.settings.dnsmasq
        d.tftp_root.mkdir(exist_ok=True)
        self.hostsdir.mkdir(exist_ok=True)
        self.conf.write_text(render_config(self.settings, BASE))
        # As root: pytest's tmp directories are 0700, dnsmasq would drop to nobody.
        self.proc = self.lab.start(
            ["dnsmasq", "--keep-in-foreground", f"--conf-file={self.conf}",
             f"--log-facility={self.log}", "--user=root"],
            self.lab.workdir / "dnsmasq.out",
        )
        assert DhcpLab.wait_for(lambda: self.pid_file.exists() and self.log_has("started"))

    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def log_has(self, text: str) -> bool:
        return text in self.log_text()

    def reads(self) -> int:
        """How often dnsmasq has (re)read a file of the hosts directory."""
        return self.log_text().count(f"read {self.hostsdir}/")

    def reread_since(self, before: int) -> None:
        """Wait for the re-read a SIGHUP causes (dnsmasq handles signals asynchronously)."""
        assert DhcpLab.wait_for(lambda: self.reads() > before, timeout=5), "no re-read"

    def settle(self, marker: str) -> None:
        """Wait until dnsmasq logged ``marker`` (inotify reads, SIGHUP re-reads)."""
        assert DhcpLab.wait_for(lambda: self.log_has(marker), timeout=5), marker


@pytest.fixture
def daemon(dhcp_lab: DhcpLab) -> Dnsmasq:
    DhcpLab.require("dnsmasq")
    tmp = dhcp_lab.workdir
    hook = tmp / "hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    d = Dnsmasq(dhcp_lab, settings_for(tmp))
    d.start()
    return d


def test_rendered_configs_pass_dnsmasq_test(tmp_path: Path) -> None:
    DhcpLab.require("dnsmasq")
    validate_config(render_config(settings_for(tmp_path), BASE))
    proxy = settings_for(tmp_path, mode="proxy", server_ip=SERVER_IP)
    validate_config(render_config(proxy, BASE))
    arm = settings_for(tmp_path, arm64_binary="snp-arm64.efi", router="10.231.0.254",
                       dns_servers=["10.231.0.53"])
    validate_config(render_config(arm, BASE))


def test_boot_file_by_architecture_and_ipxe(daemon: Dnsmasq) -> None:
    lab = daemon.lab
    bios = lab.dhcp(MAC_A, "-x", "0x5d:0000")
    assert bios is not None
    assert bios["boot_file"] == "undionly.kpxe"
    assert bios["siaddr"] == SERVER_IP  # dnsmasq's own TFTP
    assert 100 <= int(bios["ip"].rsplit(".", 1)[1]) <= 150

    for arch in ("0007", "0009"):
        efi = lab.dhcp(MAC_A, "-x", f"0x5d:{arch}")
        assert efi is not None and efi["boot_file"] == "snponly.efi"

    # iPXE (user class iPXE, whatever its arch): the bootstrap URL and no-pxedhcp.
    ipxe = lab.dhcp(MAC_A, "-x", "0x5d:0007", *IPXE, "-O", "175")
    assert ipxe is not None
    assert ipxe["boot_file"] == f"{BASE}/boot.ipxe"
    assert ipxe["opt175"].startswith("b00101")  # sub-option 176, length 1, value 1

    # UEFI HTTP boot: an HTTP URL to the EFI binary, and vendor class HTTPClient.
    http = lab.dhcp(MAC_A, "-x", "0x5d:0010", "-V", "HTTPClient:Arch:00016:UNDI:003000")
    assert http is not None and http["boot_file"] == f"{BASE}/tftp/snponly.efi"
    assert "vendor-class  48:54:54:50:43:6c:69:65:6e:74" in daemon.log_text()  # "HTTPClient"

    # arm64: no binary configured (Debian ships none), so no boot file at all.
    arm = lab.dhcp(MAC_A, "-x", "0x5d:000b")
    assert arm is not None and not arm.get("boot_file")


def test_router_advertisement_is_sent(daemon: Dnsmasq) -> None:
    """iPXE waits ~13 s for IPv6 unless it hears a router advertisement."""
    code = RA_LISTENER.replace("IFACE", CLIENT_IF)
    out = subprocess.run(["ip", "netns", "exec", daemon.lab.client_ns, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=20, check=False)
    assert out.stdout.strip() == "RA", out.stderr


def test_reservation_is_live_and_removal_takes_effect(daemon: Dnsmasq) -> None:
    lab = daemon.lab
    hostsdir = daemon.hostsdir
    started_pid = daemon.pid()

    # Outside the dynamic range: only a reservation can give this address.
    write_reservation(hostsdir, Reservation(1, MAC_B, "10.231.0.50", "node-b"))
    daemon.settle("machine-1.hosts")
    got = lab.dhcp(MAC_B)
    assert got is not None and got["ip"] == "10.231.0.50"
    assert got.get("hostname") == "node-b"
    # The lease is kept: this is the state in which dnsmasq 2.90 crashes on SIGHUP
    # when the deleted host line had carried set:<tag>. Ours never does.

    before = daemon.reads()
    assert remove_reservation(hostsdir, 1, daemon.pid_file)
    assert not (hostsdir / "machine-1.hosts").exists()
    daemon.reread_since(before)
    again = lab.dhcp(MAC_B)
    assert again is not None
    assert again["ip"] != "10.231.0.50"
    assert 100 <= int(again["ip"].rsplit(".", 1)[1]) <= 150
    assert daemon.alive() and daemon.pid() == started_pid


def test_removed_in_range_reservation_goes_to_the_next_client(daemon: Dnsmasq) -> None:
    """A reserved pool address is refused to others, and given out once removed."""
    lab = daemon.lab
    reserved = "10.231.0.120"
    sync_reservations(daemon.hostsdir, [Reservation(7, MAC_B, reserved, None)],
                      daemon.pid_file)
    daemon.settle("machine-7.hosts")
    owner = lab.dhcp(MAC_B, release=True)
    assert owner is not None and owner["ip"] == reserved

    other = lab.dhcp(MAC_C, "-r", reserved, release=True)
    assert other is not None and other["ip"] != reserved

    before = daemon.reads()
    result = sync_reservations(daemon.hostsdir, [], daemon.pid_file)
    assert result.removed == [7] and result.signalled
    daemon.reread_since(before)
    nxt = lab.dhcp(MAC_C, "-r", reserved)
    assert nxt is not None and nxt["ip"] == reserved
    assert daemon.alive()


def test_changed_reservation_replaces_the_old_address(daemon: Dnsmasq) -> None:
    lab = daemon.lab
    write_reservation(daemon.hostsdir, Reservation(3, MAC_B, "10.231.0.60", None))
    daemon.settle("machine-3.hosts")
    first = lab.dhcp(MAC_B)
    assert first is not None and first["ip"] == "10.231.0.60"

    before = daemon.reads()
    assert write_reservation(daemon.hostsdir, Reservation(3, MAC_C, "10.231.0.61", None),
                             pid_file=daemon.pid_file)
    daemon.reread_since(before + 1)  # the inotify read of the new content, then SIGHUP's
    # The MAC that used to be reserved no longer gets its address...
    old = lab.dhcp(MAC_B)
    assert old is not None and old["ip"] != "10.231.0.60"
    # ...and the new one does.
    new = lab.dhcp(MAC_C)
    assert new is not None and new["ip"] == "10.231.0.61"
    assert daemon.alive()


def test_lease_events_reach_the_hook(dhcp_lab: DhcpLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """dnsmasq -> wrapper -> leasehook.py -> spool -> replay to a bootbrain stand-in."""
    DhcpLab.require("dnsmasq")
    tmp = dhcp_lab.workdir
    spool = tmp / "spool"
    conf = tmp / "leasehook.conf"
    # Nothing listens on this port inside the namespace: every event is spooled.
    conf.write_text(render_hook_conf(f"http://{SERVER_IP}:9", None, spool, backoff=0))
    hook = tmp / "hook"
    hook.write_text(render_hook_wrapper("dnsmasq", python=sys.executable, config=conf))
    hook.chmod(0o755)
    # dnsmasq passes its own environment on to the script: keep ours out of it.
    for name in [n for n in os.environ if n.startswith("BOOTBRAIN_HOOK_")]:
        monkeypatch.delenv(name)
    d = Dnsmasq(dhcp_lab, settings_for(tmp))
    d.start()

    assert dhcp_lab.dhcp(MAC_A, "-x", "0x5d:0007", "-V", "PXEClient:Arch:00007:UNDI:003016")
    assert dhcp_lab.dhcp(MAC_A, "-x", "0x5d:0007", *IPXE)

    def events() -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in leasehook.spooled(spool)]

    got = DhcpLab.wait_for(lambda: len(events()) >= 2 and events())
    assert got, (d.log_text()[-2000:])
    first, second = got[0], got[1]
    assert first["source"] == "dnsmasq" and first["action"] == "add"
    assert first["mac"] == MAC_A and first["arch"] == 7 and first["user_class"] is None
    assert second["action"] == "old" and second["user_class"] == "iPXE"
    assert first["ip"] == second["ip"]

    # bootbrain comes back: the spool is replayed in order and emptied.
    received: list[dict[str, Any]] = []
    with _Endpoint(received) as url:
        result = leasehook.replay_spool(spool, url, "t0ken", budget=10)
    assert result.error is None and result.remaining == 0
    assert [e["id"] for e in received] == [e["id"] for e in got]


class _Endpoint:
    """A one-thread stand-in for POST /api/v1/lease-events on 127.0.0.1."""

    def __init__(self, received: list[dict[str, Any]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        sink = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.append(json.loads(body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_proxy_mode_answers_ipxe_beside_another_server(dhcp_lab: DhcpLab) -> None:
    """proxyDHCP: no address from us; iPXE gets the URL with our address as server."""
    DhcpLab.require("dnsmasq")
    tmp = dhcp_lab.workdir
    # The "other" DHCP server: a second dnsmasq on the same segment handing out addresses.
    other_conf = tmp / "other.conf"
    other_conf.write_text(
        f"port=0\ninterface={SERVER_IF}\nbind-interfaces\npid-file={tmp}/other.pid\n"
        f"dhcp-leasefile={tmp}/other.leases\ndhcp-range=10.231.0.200,10.231.0.210,12h\n"
        "no-ping\n"
    )
    dhcp_lab.start(["dnsmasq", "-k", f"--conf-file={other_conf}", f"--log-facility={tmp}/o.log",
                    "--user=root"], tmp / "other.out")
    proxy = Dnsmasq(dhcp_lab, settings_for(tmp, mode="proxy", server_ip=SERVER_IP))
    proxy.start()
    # udhcpc takes whichever offer comes first and cannot merge a proxy's reply, so
    # the client's outcome is not the point: what each server answered is, in the logs.
    dhcp_lab.dhcp(MAC_A, "-x", "0x5d:0000", *IPXE, "-V", "PXEClient:Arch:00000:UNDI:002001",
                  attempts=1, timeout=1.5)
    assert DhcpLab.wait_for(lambda: f"bootfile name: {BASE}/boot.ipxe" in proxy.log_text())
    assert f"next server: {SERVER_IP}" in proxy.log_text()  # iPXE needs the server named
    assert "DHCPOFFER(srv0) 10.231.0.2" in (tmp / "o.log").read_text()  # addresses: theirs
    assert "DHCPOFFER" not in proxy.log_text()  # ...never ours

    # A PXE ROM (no iPXE user class) gets the one-entry boot menu (option 43) instead.
    dhcp_lab.dhcp(MAC_B, "-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001",
                  attempts=1, timeout=1.5)
    assert DhcpLab.wait_for(lambda: f"PXE(srv0) {MAC_B} proxy" in proxy.log_text())
    menu = [line for line in proxy.log_text().splitlines() if "option: 43" in line]
    assert len(menu) >= 2
    assert proxy.alive()
