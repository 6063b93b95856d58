"""dnsmasq: the configuration ``bootbrain dnsmasq config`` renders, and reservations.

Two modes. *Full DHCP*: this dnsmasq hands out addresses and, by client
architecture, the iPXE binary over its own TFTP server; iPXE (user class ``iPXE``,
option 175) is then given ``<base url>/boot.ipxe``. *ProxyDHCP*: another DHCP server
owns the addresses and dnsmasq adds only boot options beside it, as Pixiecore does.

Reservations are one file per machine in ``dhcp-hostsdir``. dnsmasq reads new and
rewritten files there on its own (inotify) but only *adds* what it reads: a deleted
file, or the old address of a rewritten one, stays in force until SIGHUP. So every
removal or change is followed by a SIGHUP to the pid in ``pid_file``. This is safe
because the host lines never carry ``set:<tag>``: dnsmasq 2.90 crashes after such a
SIGHUP, at the next request of a client whose deleted entry had set a tag and had a
lease (tests/integration/test_dnsmasq_daemon.py proves the tag-free way against the
real daemon).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from bootbrain.config import DnsmasqSettings, Settings
from bootbrain.errors import DnsmasqConfigError, ReservationError
from bootbrain.inventory import Reservation
from bootbrain.vocabulary import INTERFACE_RE

from .reservations import (
    atomic_write,
    check_reservation,
    check_reservations,
)

log = logging.getLogger(__name__)

HOSTS_PREFIX = "machine-"
HOSTS_SUFFIX = ".hosts"
_HOSTS_NAME = re.compile(re.escape(HOSTS_PREFIX) + r"([1-9][0-9]*)" + re.escape(HOSTS_SUFFIX))
#: Longest boot file name that fits the BOOTP ``file`` field (128 bytes with its NUL).
#: dnsmasq splits a longer one across options, which this iPXE does not reassemble.
MAX_BOOTFILE_URL = 127
_BASE_URL = re.compile(r"https?://[A-Za-z0-9._~:/\[\]@!$&()*+;=%-]+")
_LEASE_TIME = re.compile(r"[1-9][0-9]{0,8}[smhdw]?|infinite")


@dataclass
class SyncResult:
    """What :func:`sync_reservations` changed."""

    written: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    signalled: bool = False


# --- configuration -------------------------------------------------------------------


def boot_url(base_url: str) -> str:
    """``<base url>/boot.ipxe``, checked to be safe and short enough for DHCP."""
    base = base_url.rstrip("/")
    if not _BASE_URL.fullmatch(base):
        raise DnsmasqConfigError(f"base URL {base_url!r} is not a plain http(s) URL")
    url = f"{base}/boot.ipxe"
    if len(url) > MAX_BOOTFILE_URL:
        raise DnsmasqConfigError(
            f"{url} is {len(url)} characters; DHCP's boot file field holds {MAX_BOOTFILE_URL}"
        )
    return url


def http_boot_url(http_boot: str, efi_binary: str, base_url: str) -> str:
    """What UEFI HTTP boot clients download: an EFI binary (iPXE), not a script."""
    url = http_boot or f"{base_url.rstrip('/')}/tftp/{efi_binary}"
    if not _BASE_URL.fullmatch(url) or len(url) > MAX_BOOTFILE_URL:
        raise DnsmasqConfigError(f"HTTP boot URL {url!r} is not a short plain http(s) URL")
    return url


def _path(p: Path | None, what: str) -> str:
    text = str(p)
    if p is None or not p.is_absolute() or any(c in text for c in "\n\r\0,"):
        raise DnsmasqConfigError(f"{what} must be an absolute path without commas: {text!r}")
    return text


def render_config(settings: Settings, base_url: str) -> str:
    """The whole dnsmasq configuration file for ``settings.dnsmasq.mode``."""
    d = settings.dnsmasq
    if not INTERFACE_RE.fullmatch(d.interface):
        raise DnsmasqConfigError(f"interface {d.interface!r} is not an interface name")
    url = boot_url(base_url)
    lines = [
        f"# bootbrain: dnsmasq configuration, {'full DHCP' if d.mode == 'dhcp' else 'proxyDHCP'}"
        " mode.",
        "# Rendered by `bootbrain dnsmasq config`; change bootbrain's settings, not this file.",
        "",
        "# --- this instance ---",
        f"# DNS {'off: this dnsmasq does DHCP and TFTP only' if d.dns_port == 0 else 'port'}.",
        f"port={d.dns_port}",
        f"interface={d.interface}",
        "bind-interfaces",
        "# Every dnsmasq instance on a host needs its own pid file.",
        f"pid-file={_path(d.pid_file, 'pid_file')}",
        f"dhcp-leasefile={_path(d.lease_file, 'lease_file')}",
    ]
    if d.user is not None:
        lines += [
            "# bootbrain signals dnsmasq (SIGHUP) when a reservation goes away: same user.",
            f"user={d.user}",
        ]
    if d.log_dhcp:
        lines.append("log-dhcp")
    lines.append("")
    if d.mode == "dhcp":
        lines += _full_dhcp_lines(d, settings)
    else:
        lines += _proxy_lines(d)
    lines += _client_tags(d)
    lines += ["", "# --- what each client is told to boot ---"]
    if d.mode == "dhcp":
        lines += [
            "# iPXE: do not wait 2 s for proxyDHCP offers (option 175.176 'no-pxedhcp' = 1).",
            "dhcp-option=tag:ipxe,encap:175,176,1",
        ]
    lines += _pxe_boot_lines(d, base_url)
    if d.mode == "dhcp":
        lines += [
            "# iPXE itself (user class iPXE / option 175) gets the HTTP bootstrap script,",
            "# which is what ends the chain-loading loop.",
            f"dhcp-boot=tag:ipxe,{url}",
        ]
    else:
        server_ip = _require(d.server_ip, "server_ip (this host's address) for proxy mode")
        lines += [
            "# iPXE takes a proxy's boot file only when a server address is named.",
            f"dhcp-boot=tag:ipxe,{url},,{server_ip}",
        ]
    if d.tftp:
        lines += [
            "",
            "# --- TFTP: the iPXE binaries (Debian: cp /usr/lib/ipxe/*.{kpxe,efi} here) ---",
            "enable-tftp",
            f"tftp-root={_path(d.tftp_root, 'tftp_root')}",
        ]
    return "\n".join(lines) + "\n"


def render_tftp_config(
    interface: str, tftp_root: Path, pid_file: Path, *, ipv6_ra: bool = True
) -> str:
    """A dnsmasq that serves only TFTP (DNS and DHCP off): the iPXE binaries beside a
    DHCP server that has no TFTP of its own, such as Kea (``bootbrain kea tftp-config``).
    """
    if not INTERFACE_RE.fullmatch(interface):
        raise DnsmasqConfigError(f"interface {interface!r} is not an interface name")
    lines = [
        "# TFTP beside Kea: dnsmasq with DNS and DHCP off serves the iPXE binaries that",
        "# Kea's bootbrain-pxe-* client classes name. Rendered by `bootbrain kea tftp-config`;",
        "# run: dnsmasq --keep-in-foreground --conf-file=THIS_FILE",
        "# (Debian: apt-get install dnsmasq-base ipxe; cp /usr/lib/ipxe/{undionly.kpxe,"
        f"snponly.efi,ipxe.efi}} {tftp_root}/)",
        "port=0",
        f"pid-file={_path(pid_file, 'pid_file')}",
        "enable-tftp",
        f"tftp-root={_path(tftp_root, 'tftp_root')}",
        "# Serve only on the boot network's interface.",
        f"interface={interface}",
        "bind-interfaces",
        "# dnsmasq never serves outside tftp-root. (Not tftp-secure: it would serve only files",
        "# owned by the user dnsmasq drops to, which copies made by root are not.)",
    ]
    if ipv6_ra:
        lines += [
            "# An IPv6 router advertisement (no DHCPv6, no addresses): without one iPXE waits",
            "# ~13 s for IPv6 on every boot. Needs an IPv6 (e.g. ULA) address on the interface;",
            "# leave it out (ipv6_ra = false) if a router on the segment already advertises.",
            "enable-ra",
            f"dhcp-range=::,constructor:{interface},ra-only",
        ]
    return "\n".join(lines) + "\n"


def _require(value: IPv4Address | None, what: str) -> IPv4Address:
    if value is None:
        raise DnsmasqConfigError(f"dnsmasq needs {what}")
    return value


def _full_dhcp_lines(d: DnsmasqSettings, settings: Settings) -> list[str]:
    start = _require(d.range_start, "range_start")
    end = _require(d.range_end, "range_end")
    if start > end:
        raise DnsmasqConfigError(f"range_start {start} is after range_end {end}")
    if not _LEASE_TIME.fullmatch(d.lease_time):
        raise DnsmasqConfigError(f"lease_time {d.lease_time!r} is not a dnsmasq lease time")
    if d.netmask is not None:
        net = IPv4Network(f"{start}/{d.netmask}", strict=False)
        if end not in net:
            raise DnsmasqConfigError(f"range {start}-{end} is not inside one {net}")
    lines = [
        "# --- addresses ---",
        "# The only DHCP server on this segment: answer at once, also for unknown leases.",
        "dhcp-authoritative",
        "# dnsmasq would ping each new address before offering it: 3 s on every first boot.",
        "no-ping",
        "dhcp-range="
        + ",".join([str(start), str(end), *([str(d.netmask)] if d.netmask else []), d.lease_time]),
    ]
    if d.router is not None:
        lines.append(f"dhcp-option=option:router,{d.router}")
    if d.dns_servers:
        lines.append("dhcp-option=option:dns-server," + ",".join(str(a) for a in d.dns_servers))
    if d.ipv6_ra:
        lines += [
            "# A router advertisement, or iPXE waits ~13 s for IPv6 on every boot. dnsmasq",
            f"# sends one only if {d.interface} has a global or ULA IPv6 address (fd00::/8 is",
            "# enough); the address itself is never handed out.",
            "enable-ra",
            f"dhcp-range=::,constructor:{d.interface},ra-only",
        ]
    lines += [
        "# Reservations: one file per machine, written by bootbrain (dotfile, then rename).",
        f"dhcp-hostsdir={_path(d.hostsdir, 'hostsdir')}",
    ]
    if d.hook_script is not None:
        lines += [
            "# Lease events to bootbrain (add/old/del); spooled while bootbrain is down.",
            f"dhcp-script={_path(d.hook_script, 'hook_script')}",
        ]
    return lines


def _proxy_lines(d: DnsmasqSettings) -> list[str]:
    server_ip = _require(d.server_ip, "server_ip (this host's address) for proxy mode")
    if d.netmask is not None:
        network = IPv4Network(f"{server_ip}/{d.netmask}", strict=False)
        proxy_range = f"{network.network_address},proxy,{d.netmask}"
    else:
        proxy_range = f"{server_ip},proxy"
    return [
        "# --- proxyDHCP: another server hands out addresses; we add boot options only ---",
        f"dhcp-range={proxy_range}",
        "# PXE ROMs boot the first menu entry at once (a zero-timeout one-entry menu).",
        'pxe-prompt="bootbrain",0',
    ]


def _client_tags(d: DnsmasqSettings) -> list[str]:
    return [
        "",
        "# --- who is asking ---",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        "# Client architecture, DHCP option 93.",
        "dhcp-match=set:bios,option:client-arch,0",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-match=set:arm64,option:client-arch,11",
        "dhcp-match=set:efihttp,option:client-arch,16",
    ]


def _pxe_boot_lines(d: DnsmasqSettings, base_url: str) -> list[str]:
    http = http_boot_url(d.http_boot_url, d.efi_binary, base_url)
    if d.mode == "dhcp":
        lines = [
            "# PXE ROMs get the iPXE build for their architecture, by TFTP.",
            f"dhcp-boot=tag:!ipxe,tag:bios,{d.bios_binary}",
            f"dhcp-boot=tag:!ipxe,tag:efi64,{d.efi_binary}",
        ]
        if d.arm64_binary:
            lines.append(f"dhcp-boot=tag:!ipxe,tag:arm64,{d.arm64_binary}")
        else:
            lines.append(
                "# arm64 UEFI: Debian's ipxe package ships no arm64 EFI build; set "
                "dnsmasq.arm64_binary to one you built."
            )
        lines += [
            "# UEFI HTTP boot: the firmware downloads an EFI binary by HTTP and wants to be",
            "# told so with vendor class HTTPClient.",
            f"dhcp-boot=tag:!ipxe,tag:efihttp,{http}",
            "dhcp-option-force=tag:!ipxe,tag:efihttp,option:vendor-class,HTTPClient",
        ]
        return lines
    # proxyDHCP: PXE ROMs are answered with a one-entry boot menu (dnsmasq adds no
    # suffix to a basename that has one).
    lines = [
        f'pxe-service=tag:!ipxe,x86PC,"bootbrain (BIOS)",{d.bios_binary}',
        f'pxe-service=tag:!ipxe,BC_EFI,"bootbrain (UEFI)",{d.efi_binary}',
        f'pxe-service=tag:!ipxe,x86-64_EFI,"bootbrain (UEFI)",{d.efi_binary}',
    ]
    if d.arm64_binary:
        lines.append(f'pxe-service=tag:!ipxe,ARM64_EFI,"bootbrain (arm64)",{d.arm64_binary}')
    else:
        lines.append("# arm64 UEFI: Debian's ipxe package ships no arm64 EFI build.")
    return lines


def validate_config(text: str, dnsmasq: str = "dnsmasq") -> None:
    """Run ``dnsmasq --test`` on ``text``; DnsmasqConfigError with its message if bad."""
    proc = subprocess.run(
        [dnsmasq, "--test", "--conf-file=-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise DnsmasqConfigError((proc.stderr or proc.stdout).strip())


# --- reservations --------------------------------------------------------------------


def host_line(r: Reservation) -> str:
    """The ``dhcp-host`` line for one reservation: ``mac,ip[,hostname]`` — never a tag."""
    check_reservation(r)
    return ",".join([r.mac, r.ip, *([r.hostname] if r.hostname else [])]) + "\n"


def reservation_path(hostsdir: Path, machine_id: int) -> Path:
    if type(machine_id) is not int or machine_id <= 0:
        raise ReservationError(f"machine id must be a positive integer, not {machine_id!r}")
    return hostsdir / f"{HOSTS_PREFIX}{machine_id}{HOSTS_SUFFIX}"


def write_reservation(hostsdir: Path, r: Reservation, pid_file: Path | None = None) -> bool:
    """Write (atomically) the machine's host file; True if it changed.

    A new file takes effect by itself. A *changed* one would leave the old entry in
    force beside the new one, so with ``pid_file`` dnsmasq is sent SIGHUP.
    """
    path = reservation_path(hostsdir, r.machine_id)
    line = host_line(r)
    hostsdir.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    changed = atomic_write(path, line, mode=0o644)
    if changed and existed and pid_file is not None:
        signal_reload(pid_file)
    return changed


def remove_reservation(hostsdir: Path, machine_id: int, pid_file: Path | None) -> bool:
    """Delete the machine's host file and SIGHUP dnsmasq; True if there was a file."""
    path = reservation_path(hostsdir, machine_id)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if pid_file is not None:
        signal_reload(pid_file)
    return True


def sync_reservations(
    hostsdir: Path, reservations: Iterable[Reservation], pid_file: Path | None
) -> SyncResult:
    """Make ``hostsdir`` hold exactly these reservations, with at most one SIGHUP.

    Files in ``hostsdir`` that bootbrain did not name (``machine-<id>.hosts``) are
    left alone, so an operator's own host files can live beside ours.
    """
    wanted = {r.machine_id: r for r in check_reservations(reservations)}
    hostsdir.mkdir(parents=True, exist_ok=True)
    existing = {
        int(m.group(1)): path
        for path in hostsdir.iterdir()
        if (m := _HOSTS_NAME.fullmatch(path.name))
    }
    result = SyncResult()
    needs_hup = False
    # Removals first: a MAC or address moving from one machine to another must not
    # be claimed by two files at once.
    for machine_id, path in sorted(existing.items()):
        if machine_id not in wanted:
            path.unlink(missing_ok=True)
            result.removed.append(machine_id)
            needs_hup = True
    for machine_id, r in sorted(wanted.items()):
        if atomic_write(reservation_path(hostsdir, machine_id), host_line(r), mode=0o644):
            result.written.append(machine_id)
            needs_hup = needs_hup or machine_id in existing
    if needs_hup and pid_file is not None:
        result.signalled = signal_reload(pid_file)
    return result


def signal_reload(pid_file: Path) -> bool:
    """SIGHUP the dnsmasq named by ``pid_file``; False if it is not running.

    The pid is checked to belong to a process called dnsmasq, so a stale pid file
    never signals an unrelated process.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        log.info("dnsmasq pid file %s missing or unreadable; not signalled", pid_file)
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        log.info("dnsmasq (pid %s from %s) is not running", pid, pid_file)
        return False
    if comm != "dnsmasq":
        log.warning("pid %s from %s is %r, not dnsmasq; not signalled", pid, pid_file, comm)
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning(
            "not allowed to signal dnsmasq (pid %s): run it as bootbrain's user "
            "(dnsmasq.user); a removed reservation stays in force until dnsmasq restarts",
            pid,
        )
        return False
    return True
