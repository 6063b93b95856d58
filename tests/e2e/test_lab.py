"""Self-test of the e2e lab, with no bootbrain involved.

A stub HTTP server inside the lab namespace plays the brain: it serves a fixed
``/boot.ipxe`` (kernel + initrd + boot), the kernel and initrd, and records
the guest's ``POST /done``. dnsmasq (hand-written minimal config) does DHCP,
TFTP and router advertisements. Guests boot with real SeaBIOS/OVMF and the
real iPXE ROMs / ``snponly.efi``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import lab
import pytest

pytestmark = pytest.mark.e2e

GUEST_IP = "10.213.0.50"
HOSTNAME = "labnode"


def boot_script(http: lab.StubHTTPServer, net: lab.LabNetwork, cmdline: str | None = None) -> str:
    """kernel + initrd + boot; by default with the static ip= and the /done callback."""
    if cmdline is None:
        cmdline = lab.kernel_cmdline(
            ip=lab.ip_param(
                GUEST_IP,
                gateway=net.address,
                netmask=net.netmask,
                hostname=HOSTNAME,
                dns=[net.address],
            ),
            done_url=http.url("/done"),
        )
    return (
        f"#!ipxe\nkernel {http.url('/vmlinuz')} {cmdline}\ninitrd {http.url('/initrd.gz')}\nboot\n"
    )


def start_dnsmasq(net: lab.LabNetwork, http: lab.StubHTTPServer) -> lab.Dnsmasq:
    conf = net.workdir / "dnsmasq.conf"
    conf.write_text(
        lab.minimal_pxe_config(
            interface=net.bridge,
            boot_url=http.url("/boot.ipxe"),
            tftp_root=lab.ipxe_file("snponly.efi").parent,
            range_start=net.host(100),
            range_end=net.host(199),
            netmask=net.netmask,
        )
    )
    return lab.Dnsmasq(net, conf).start()


def assert_full_chain(result: lab.BootResult, http: lab.StubHTTPServer) -> None:
    assert result.ok, result.describe()
    paths = [r.path for r in http.requests]
    assert paths[:3] == ["/boot.ipxe", "/vmlinuz", "/initrd.gz"], paths
    for request in http.requests[:3]:
        assert request.user_agent.startswith("iPXE/"), request.headers
    done = http.find("/done", "POST")
    assert len(done) == 1, paths
    assert done[0].headers.get("content-type") == "application/x-www-form-urlencoded"
    assert done[0].form() == {"ip": [f"{GUEST_IP}/24"], "hostname": [HOSTNAME], "iface": ["eth0"]}
    assert done[0].client == GUEST_IP
    assert f"BOOTBRAIN-LAB-DONE status=ok ip={GUEST_IP}/24 hostname={HOSTNAME}" in result.text


@pytest.mark.parametrize(
    ("mode", "nic"),
    [
        (lab.Mode.BIOS, "e1000"),
        (lab.Mode.UEFI, "e1000"),
        (lab.Mode.UEFI_NATIVE, "virtio"),
    ],
)
def test_boot_chain(
    mode: lab.Mode, nic: str, lab_net: lab.LabNetwork, lab_http: lab.StubHTTPServer
) -> None:
    lab_http.route("/boot.ipxe", lab.ipxe_script(boot_script(lab_http, lab_net)))
    lab_http.route("/done", "ok\n")
    romfile = "" if mode is lab.Mode.UEFI_NATIVE else None
    with start_dnsmasq(lab_net, lab_http) as dnsmasq:
        guest = lab.Guest(lab_net, mode=mode, nics=[lab.Nic(model=nic, romfile=romfile)])
        result = guest.boot(timeout=180)
        log = dnsmasq.log_text()
    print(f"{mode} boot took {result.duration:.1f}s")
    assert_full_chain(result, lab_http)
    mac = guest.mac
    assert re.search(rf"DHCPACK\(br0\) \S+ {mac}", log), log
    if mode is lab.Mode.UEFI_NATIVE:
        # OVMF's own PXE client fetched snponly.efi over TFTP first.
        assert re.search(r"sent \S+/snponly\.efi to", log), log
        assert "user class: iPXE" in log


def test_smbios_strings_arrive_exactly(
    lab_net: lab.LabNetwork, lab_http: lab.StubHTTPServer
) -> None:
    """Hostile SMBIOS strings reach iPXE (``:hexraw``) and Linux byte for byte."""
    serial = "A&B #1 ${manufacturer} x,y=z%41+q,,"
    smbios = lab.Smbios(
        manufacturer="Lab, Vendor & Co",
        product="LabBox 9000 (rev #2)",
        serial=serial,
        uuid="4c4c4544-0042-3610-8052-b4c04f4e3232",
        board_serial="BOARD,1",
        asset="ASSET ${serial}",
    )
    hexraw = "&".join(
        f"{key}=${{{key}:hexraw}}"
        for key in ("serial", "manufacturer", "product", "asset", "board-serial")
    )
    lab_http.route(
        "/boot.ipxe", lab.ipxe_script(f"chain {lab_http.url('/id')}?uuid=${{uuid}}&{hexraw}\n")
    )
    lab_http.route("/id", lab.ipxe_script(boot_script(lab_http, lab_net)))
    lab_http.route("/done", "ok\n")
    with start_dnsmasq(lab_net, lab_http):
        result = lab.boot(lab_net, mode=lab.Mode.BIOS, smbios=smbios)
    assert result.ok, result.describe()

    ident = lab_http.wait_for("/id", timeout=0)
    pairs = dict(item.split("=", 1) for item in ident.query.split("&"))
    assert pairs["uuid"] == smbios.uuid
    decoded = {
        k: bytes.fromhex(v.replace(":", "")).decode() for k, v in pairs.items() if k != "uuid"
    }
    assert decoded == {
        "serial": serial,
        "manufacturer": smbios.manufacturer,
        "product": smbios.product,
        "asset": smbios.asset,
        "board-serial": smbios.board_serial,
    }
    dmi = result.dmi()
    assert dmi["product_serial"] == serial
    assert dmi["sys_vendor"] == smbios.manufacturer
    assert dmi["product_uuid"] == smbios.uuid
    assert dmi["board_serial"] == smbios.board_serial
    assert dmi["chassis_asset_tag"] == smbios.asset


def test_meta_is_fetched_and_posted(lab_net: lab.LabNetwork, lab_http: lab.StubHTTPServer) -> None:
    cmdline = lab.kernel_cmdline(
        ip=lab.ip_param(GUEST_IP, gateway=lab_net.address, hostname=HOSTNAME),
        meta_url=lab_http.url("/meta?token=abc"),
        metajson_url=lab_http.url("/meta.json"),
        done_url=lab_http.url("/done"),
    )
    lab_http.route("/boot.ipxe", lab.ipxe_script(boot_script(lab_http, lab_net, cmdline)))
    lab_http.route("/meta", "role=db & tier=1 #x\nsecond line\n")
    # Nested "hostname"/"ssh_keys" members must not be taken for the top-level ones;
    # JSON escapes in the key's comment are decoded.
    key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 "q"\\b/c & d'
    document = {
        "metadata": {"hostname": "nested", "ssh_keys": ["nested"]},
        "hostname": "json-host",
        "ssh_keys": [key, "second"],
    }
    lab_http.route("/meta.json", json.dumps(document, indent=2) + "\n")
    lab_http.route("/done", "ok\n")
    with start_dnsmasq(lab_net, lab_http):
        result = lab.boot(lab_net, mode=lab.Mode.BIOS)
    assert result.ok, result.describe()
    assert lab_http.wait_for("/meta", timeout=0).query == "token=abc"
    form = lab_http.find("/done", "POST")[0].form()
    assert form["meta"] == ["role=db & tier=1 #x"]
    assert form["ip"] == [f"{GUEST_IP}/24"]
    assert form["meta_hostname"] == ["json-host"]
    assert form["ssh_key"] == [key]
    assert "BOOTBRAIN-LAB: metajson hostname=json-host" in result.text


def test_dhcp_in_the_booted_os(lab_net: lab.LabNetwork, lab_http: lab.StubHTTPServer) -> None:
    """``ip=dhcp``: the initrd runs udhcpc and reports the leased address."""
    cmdline = lab.kernel_cmdline(ip="ip=dhcp", done_url=lab_http.url("/done"))
    lab_http.route("/boot.ipxe", lab.ipxe_script(boot_script(lab_http, lab_net, cmdline)))
    lab_http.route("/done", "ok\n")
    with start_dnsmasq(lab_net, lab_http) as dnsmasq:
        result = lab.boot(lab_net, mode=lab.Mode.BIOS)
        log = dnsmasq.log_text()
    assert result.ok, result.describe()
    form = lab_http.find("/done", "POST")[0].form()
    address, prefix = form["ip"][0].split("/")
    assert prefix == "24"
    assert 100 <= int(address.rsplit(".", 1)[1]) <= 199
    assert f"DHCPACK(br0) {address}" in log
    assert "vendor class: udhcp" in log


def test_guest_is_killed_after_timeout(lab_net: lab.LabNetwork) -> None:
    """No DHCP server: the firmware never gets anywhere and the bounded wait kills QEMU."""
    guest = lab.Guest(lab_net, mode=lab.Mode.BIOS)
    result = guest.boot(timeout=8)
    assert result.timed_out and not result.ok
    assert guest.proc is not None and guest.proc.poll() is not None
    assert "iPXE" in result.text
    assert lab_net.pids() == []


# --------------------------------------------------------------------------- no guests


def test_smbios_escape_and_args() -> None:
    assert lab.smbios_escape("a,b,,c") == "a,,b,,,,c"
    args = lab.Smbios(serial="x,y", asset="z").qemu_args()
    assert args == ["-smbios", "type=1,serial=x,,y", "-smbios", "type=3,asset=z"]


def test_kernel_cmdline_conventions() -> None:
    ip = lab.ip_param("10.0.0.5", gateway="10.0.0.1", hostname="h", dns=["10.0.0.2", "10.0.0.3"])
    assert ip == "ip=10.0.0.5::10.0.0.1:255.255.255.0:h:eth0:none:10.0.0.2:10.0.0.3"
    line = lab.kernel_cmdline(ip=ip, done_url="http://x/done")
    assert line == f"console=ttyS0 initrd=initrd.gz {ip} bootbrain.done=http://x/done"
    with pytest.raises(lab.LabError):
        lab.kernel_cmdline(done_url="http://x/a b")


def test_namespace_cleanup(lab_requirements: None, tmp_path: Path) -> None:
    """Processes and namespaces go away on exit, also when the body raises."""
    with pytest.raises(KeyboardInterrupt), lab.LabNetwork(workdir=tmp_path) as net:
        peer = net.add_peer(net.host(2) + "/24")
        net.add_tap()
        proc = net.popen(["sleep", "300"])
        peer_proc = peer.popen(["sleep", "300"])
        listener = peer.bind_tcp(net.host(2))  # across the veth and the bridge
        net.connect_tcp(net.host(2), listener.getsockname()[1]).close()
        listener.close()
        names = {net.name, peer.name}
        raise KeyboardInterrupt
    assert proc.poll() is not None and peer_proc.poll() is not None
    assert not names & set(lab.list_namespaces())


def test_cleanup_stale_spares_live_runs(lab_requirements: None) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{lab.net.PREFIX}{dead.pid}-dead00"
    live = f"{lab.net.PREFIX}{os.getpid()}-live00"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = lab.cleanup_stale()
        assert stale in removed and live not in removed
        assert live in lab.list_namespaces() and stale not in lab.list_namespaces()
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
