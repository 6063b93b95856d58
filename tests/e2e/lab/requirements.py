"""What the lab needs from the machine, for skip decisions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import assets

BINARIES = ("ip", "qemu-system-x86_64", "dnsmasq", "apt-get", "apt-cache", "dpkg-deb", "tar")
FILES = (
    assets.BUSYBOX,
    assets.OVMF_CODE,
    assets.OVMF_VARS,
    *(assets.IPXE_DIR / name for name in assets.IPXE_BOOT_FILES),
)
#: ISC Kea as the DHCP server (Debian's kea-dhcp4-server): the daemon and the hooks
#: bootbrain's rendered configuration loads.
KEA_BINARIES = ("kea-dhcp4",)
KEA_HOOKS_DIR = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")
KEA_FILES = tuple(
    KEA_HOOKS_DIR / name for name in ("libdhcp_lease_cmds.so", "libdhcp_run_script.so")
)


def missing(binaries: tuple[str, ...] = BINARIES) -> list[str]:
    """Human-readable reasons the lab cannot run here (empty list = it can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not running as root")
    if not Path("/dev/net/tun").exists():
        reasons.append("no /dev/net/tun")
    reasons += [f"binary {b} not found" for b in binaries if shutil.which(b) is None]
    reasons += [f"file {f} missing" for f in FILES if not f.exists()]
    return reasons


def missing_kea() -> list[str]:
    """Why Kea cannot be the lab's DHCP server here (empty list = it can)."""
    reasons = [f"binary {b} not found" for b in KEA_BINARIES if shutil.which(b) is None]
    return reasons + [f"file {f} missing" for f in KEA_FILES if not f.exists()]
