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
