"""dnsmasq: the rendered configuration (both modes) and the reservation files."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bootbrain.config import Settings
from bootbrain.integrations import dnsmasq
from bootbrain.integrations.dnsmasq import DnsmasqConfigError, render_config
from bootbrain.integrations.reservations import Reservation, ReservationError

BASE = "http://10.0.0.1:8080"


def make(**dnsmasq_values: Any) -> Settings:
    values: dict[str, Any] = {
        "interface": "br0",
        "range_start": "10.0.0.100",
        "range_end": "10.0.0.199",
        "netmask": "255.255.255.0",
        "pid_file": "/run/bb-dnsmasq.pid",
        "lease_file": "/var/lib/bootbrain/dnsmasq.leases",
        "hostsdir": "/var/lib/bootbrain/hosts",
        "tftp_root": "/srv/tftp",
        "hook_script": "/usr/local/lib/bootbrain/dnsmasq-hook",
    }
    values.update(dnsmasq_values)
    return Settings.model_validate({"dnsmasq": values})


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


FULL = [
    "port=0",
    "interface=br0",
    "bind-interfaces",
    "pid-file=/run/bb-dnsmasq.pid",
    "dhcp-leasefile=/var/lib/bootbrain/dnsmasq.leases",
    "log-dhcp",
    "dhcp-authoritative",
    "no-ping",
    "dhcp-range=10.0.0.100,10.0.0.199,255.255.255.0,12h",
    "enable-ra",
    "dhcp-range=::,constructor:br0,ra-only",
    "dhcp-hostsdir=/var/lib/bootbrain/hosts",
    "dhcp-script=/usr/local/lib/bootbrain/dnsmasq-hook",
    "dhcp-userclass=set:ipxe,iPXE",
    "dhcp-match=set:ipxe,175",
    "dhcp-match=set:bios,option:client-arch,0",
    "dhcp-match=set:efi64,option:client-arch,7",
    "dhcp-match=set:efi64,option:client-arch,9",
    "dhcp-match=set:arm64,option:client-arch,11",
    "dhcp-match=set:efihttp,option:client-arch,16",
    "dhcp-option=tag:ipxe,encap:175,176,1",
    "dhcp-boot=tag:!ipxe,tag:bios,undionly.kpxe",
    "dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi",
    "dhcp-boot=tag:!ipxe,tag:efihttp,http://10.0.0.1:8080/tftp/snponly.efi",
    "dhcp-option-force=tag:!ipxe,tag:efihttp,option:vendor-class,HTTPClient",
    "dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot.ipxe",
    "enable-tftp",
    "tftp-root=/srv/tftp",
]

PROXY = [
    "port=0",
    "interface=br0",
    "bind-interfaces",
    "pid-file=/run/bb-dnsmasq.pid",
    "dhcp-leasefile=/var/lib/bootbrain/dnsmasq.leases",
    "log-dhcp",
    "dhcp-range=10.0.0.0,proxy,255.255.255.0",
    'pxe-prompt="bootbrain",0',
    "dhcp-userclass=set:ipxe,iPXE",
    "dhcp-match=set:ipxe,175",
    "dhcp-match=set:bios,option:client-arch,0",
    "dhcp-match=set:efi64,option:client-arch,7",
    "dhcp-match=set:efi64,option:client-arch,9",
    "dhcp-match=set:arm64,option:client-arch,11",
    "dhcp-match=set:efihttp,option:client-arch,16",
    'pxe-service=tag:!ipxe,x86PC,"bootbrain (BIOS)",undionly.kpxe',
    'pxe-service=tag:!ipxe,BC_EFI,"bootbrain (UEFI)",snponly.efi',
    'pxe-service=tag:!ipxe,x86-64_EFI,"bootbrain (UEFI)",snponly.efi',
    "dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot.ipxe,,10.0.0.5",
    "enable-tftp",
    "tftp-root=/srv/tftp",
]


def test_full_dhcp_mode() -> None:
    text = render_config(make(), BASE + "/")
    assert directives(text) == FULL
    assert "Debian's ipxe package ships no arm64 EFI build" in text
    assert text.endswith("\n")


def test_proxy_mode() -> None:
    text = render_config(make(mode="proxy", server_ip="10.0.0.5"), BASE)
    assert directives(text) == PROXY
    # Nothing that hands out addresses or would make iPXE skip the proxy's answer.
    assert "encap:175" not in text and "dhcp-authoritative" not in text
    assert "dhcp-hostsdir" not in text and "dhcp-script" not in text


def test_proxy_without_netmask_uses_the_interface_subnet() -> None:
    text = render_config(make(mode="proxy", server_ip="10.0.0.5", netmask=None), BASE)
    assert "dhcp-range=10.0.0.5,proxy" in directives(text)


def test_options_and_switches() -> None:
    text = render_config(
        make(router="10.0.0.254", dns_servers=["10.0.0.53", "10.0.0.54"], ipv6_ra=False,
             tftp=False, hook_script=None, log_dhcp=False, dns_port=5353,
             arm64_binary="snp-arm64.efi", efi_binary="ipxe.efi", lease_time="1h",
             http_boot_url="http://files.example/ipxe.efi", user="bootbrain"),
        BASE,
    )
    lines = directives(text)
    assert "dhcp-option=option:router,10.0.0.254" in lines
    assert "dhcp-option=option:dns-server,10.0.0.53,10.0.0.54" in lines
    assert "dhcp-boot=tag:!ipxe,tag:arm64,snp-arm64.efi" in lines
    assert "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi" in lines
    assert "dhcp-boot=tag:!ipxe,tag:efihttp,http://files.example/ipxe.efi" in lines
    assert "dhcp-range=10.0.0.100,10.0.0.199,255.255.255.0,1h" in lines
    assert "port=5353" in lines
    assert "user=bootbrain" in lines
    for absent in ("enable-ra", "enable-tftp", "dhcp-script", "log-dhcp"):
        assert not any(line.startswith(absent) for line in lines), absent


@pytest.mark.parametrize(
    ("settings", "base"),
    [
        ({"range_start": None}, BASE),
        ({"range_start": "10.0.0.200", "range_end": "10.0.0.100"}, BASE),
        ({"range_end": "10.0.1.5"}, BASE),
        ({"lease_time": "12h\nport=53"}, BASE),
        ({"interface": "br0\nport=53"}, BASE),
        ({"hostsdir": "/tmp/x\ndhcp-script=/bin/sh"}, BASE),
        ({"tftp_root": "relative/dir"}, BASE),
        ({"mode": "proxy"}, BASE),  # proxy needs the server's address
        ({}, "http://10.0.0.1:8080/a,b"),
        ({}, "http://10.0.0.1 /x"),
        ({}, "http://10.0.0.1\ndhcp-script=/bin/sh"),
        ({}, "ftp://10.0.0.1"),
        ({}, "http://" + "a" * 120),
    ],
)
def test_refuses_what_would_break_or_inject(settings: dict[str, Any], base: str) -> None:
    with pytest.raises(DnsmasqConfigError):
        render_config(make(**settings), base)


def test_settings_refuse_unsafe_file_names_and_urls() -> None:
    from pydantic import ValidationError

    for bad in ({"efi_binary": "x.efi,set:evil"}, {"bios_binary": "../undionly.kpxe"},
                {"user": "root\nport=53"},
                {"http_boot_url": "http://x/a b"}, {"http_boot_url": "http://x/a,b"}):
        with pytest.raises(ValidationError):
            make(**bad)


def test_validates_with_the_real_dnsmasq() -> None:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed")
    dnsmasq.validate_config(render_config(make(), BASE))
    dnsmasq.validate_config(render_config(make(mode="proxy", server_ip="10.0.0.5"), BASE))
    with pytest.raises(DnsmasqConfigError, match="bad"):
        dnsmasq.validate_config("dhcp-range=bad\n")


# --- reservations ----------------------------------------------------------------------


def res(machine_id: int = 1, mac: str = "52:54:00:00:00:01", ip: str = "10.0.0.50",
        hostname: str | None = "node-1") -> Reservation:
    return Reservation(machine_id, mac, ip, hostname)


def test_host_line_never_carries_a_tag() -> None:
    assert dnsmasq.host_line(res()) == "52:54:00:00:00:01,10.0.0.50,node-1\n"
    assert dnsmasq.host_line(res(hostname=None)) == "52:54:00:00:00:01,10.0.0.50\n"


@pytest.mark.parametrize(
    "bad",
    [
        res(mac="52:54:00:00:00:0G"),
        res(mac="52-54-00-00-00-01"),  # valid, but not canonical: the inventory's job
        res(mac="52:54:00:00:00:01,set:x"),
        res(ip="10.0.0.050"),
        res(ip="10.0.0.50,set:x"),
        res(ip="0.0.0.0"),
        res(hostname="node-1,set:evil"),
        res(hostname="Node-1"),
        res(hostname="a\nb"),
        res(machine_id=0),
        Reservation(True, "52:54:00:00:00:01", "10.0.0.50", None),  # type: ignore[arg-type]
    ],
)
def test_invalid_reservations_never_reach_a_file(tmp_path: Path, bad: Reservation) -> None:
    with pytest.raises(ReservationError):
        dnsmasq.write_reservation(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_and_idempotent(tmp_path: Path) -> None:
    assert dnsmasq.write_reservation(tmp_path, res(7))
    path = tmp_path / "machine-7.hosts"
    assert path.read_text() == "52:54:00:00:00:01,10.0.0.50,node-1\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not dnsmasq.write_reservation(tmp_path, res(7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["machine-7.hosts"]  # no dotfiles


@pytest.fixture
def fake_dnsmasq(tmp_path: Path) -> Any:
    """A process whose name is dnsmasq (a copy of sleep): SIGHUP ends it, visibly."""
    exe = tmp_path / "dnsmasq"
    shutil.copy("/bin/sleep", exe)
    # SIGHUP's default action, whatever the test run inherited (nohup ignores it).
    proc = subprocess.Popen(
        [str(exe), "60"], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL)
    )
    pid_file = tmp_path / "dnsmasq.pid"
    pid_file.write_text(f"{proc.pid}\n")
    yield proc, pid_file
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_removal_deletes_and_signals(tmp_path: Path, fake_dnsmasq: Any) -> None:
    proc, pid_file = fake_dnsmasq
    hosts = tmp_path / "hosts"
    dnsmasq.write_reservation(hosts, res(3))
    assert dnsmasq.remove_reservation(hosts, 3, pid_file)
    assert not (hosts / "machine-3.hosts").exists()
    assert proc.wait(5) == -signal.SIGHUP
    assert not dnsmasq.remove_reservation(hosts, 3, pid_file)  # nothing left to remove


def test_new_file_needs_no_signal_but_a_changed_one_does(tmp_path: Path,
                                                         fake_dnsmasq: Any) -> None:
    proc, pid_file = fake_dnsmasq
    hosts = tmp_path / "hosts"
    dnsmasq.write_reservation(hosts, res(4), pid_file=pid_file)
    dnsmasq.write_reservation(hosts, res(4), pid_file=pid_file)  # unchanged
    assert proc.poll() is None
    dnsmasq.write_reservation(hosts, res(4, ip="10.0.0.51"), pid_file=pid_file)
    assert proc.wait(5) == -signal.SIGHUP


def test_signal_only_reaches_dnsmasq(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = tmp_path / "pid"
        pid_file.write_text(str(sleeper.pid))
        assert not dnsmasq.signal_reload(pid_file)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not dnsmasq.signal_reload(tmp_path / "missing.pid")
    (tmp_path / "garbage.pid").write_text("not a pid")
    assert not dnsmasq.signal_reload(tmp_path / "garbage.pid")
    (tmp_path / "stale.pid").write_text(str(sleeper.pid))  # the process is gone
    assert not dnsmasq.signal_reload(tmp_path / "stale.pid")


def test_sync_makes_the_directory_match(tmp_path: Path, fake_dnsmasq: Any) -> None:
    proc, pid_file = fake_dnsmasq
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    (hosts / "operator-own.hosts").write_text("52:54:00:ff:ff:ff,10.0.0.9\n")
    first = dnsmasq.sync_reservations(hosts, [res(1), res(2, "52:54:00:00:00:02", "10.0.0.52")],
                                      pid_file)
    assert (first.written, first.removed, first.signalled) == ([1, 2], [], False)
    assert proc.poll() is None  # only additions: dnsmasq reads them by itself

    second = dnsmasq.sync_reservations(hosts, [res(2, "52:54:00:00:00:02", "10.0.0.52")],
                                       pid_file)
    assert (second.written, second.removed, second.signalled) == ([], [1], True)
    assert proc.wait(5) == -signal.SIGHUP
    assert sorted(p.name for p in hosts.iterdir()) == ["machine-2.hosts", "operator-own.hosts"]


def test_sync_refuses_duplicates_before_touching_anything(tmp_path: Path) -> None:
    dnsmasq.sync_reservations(tmp_path, [res(1)], None)
    for dup in ([res(2), res(3, ip="10.0.0.53")],                 # one MAC twice
                [res(2), res(3, mac="52:54:00:00:00:03")],        # one address twice
                [res(2), res(2, "52:54:00:00:00:03", "10.0.0.53")]):  # one machine twice
        with pytest.raises(ReservationError):
            dnsmasq.sync_reservations(tmp_path, dup, None)
    assert [p.name for p in tmp_path.iterdir()] == ["machine-1.hosts"]


# --- the CLI (the shipped examples: tests/unit/test_examples.py) ------------------------


def test_cli_config_and_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bootbrain.cli import main

    monkeypatch.setenv("BOOTBRAIN_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv("BOOTBRAIN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOOTBRAIN_DNSMASQ__RANGE_START", "10.0.0.100")
    monkeypatch.setenv("BOOTBRAIN_DNSMASQ__RANGE_END", "10.0.0.150")
    runner = CliRunner()
    out = runner.invoke(main, ["dnsmasq", "config", "--base-url", BASE])
    assert out.exit_code == 0, out.output
    assert f"dhcp-boot=tag:ipxe,{BASE}/boot.ipxe" in out.output
    missing = runner.invoke(main, ["dnsmasq", "config"])  # no public_url, no --base-url
    assert missing.exit_code == 1

    hook, conf = tmp_path / "hook", tmp_path / "leasehook.conf"
    out = runner.invoke(main, ["dnsmasq", "hook", str(hook), "--hook-config", str(conf),
                               "--base-url", BASE])
    assert out.exit_code == 0, out.output
    assert hook.stat().st_mode & 0o111
    assert f"BOOTBRAIN_HOOK_CONFIG={conf}" in hook.read_text()
    assert f"url={BASE}\n" in conf.read_text()
