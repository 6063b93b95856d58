"""bootbrain end-to-end lab: real QEMU guests, real PXE/iPXE firmware, dnsmasq,
all inside throw-away network namespaces.

Typical use (see ``tests/e2e/test_lab.py``)::

    with LabNetwork() as net:
        files = boot_files()                       # vmlinuz + initrd (cached)
        ...serve /boot.ipxe from net.bind_tcp(net.address, 8080)...
        with Dnsmasq(net, conf):                   # or Kea
            result = boot(net, mode=Mode.UEFI, smbios=Smbios(serial="S1"))
        assert result.ok, result.describe()
"""

from .assets import (
    INITRD_NAME,
    KERNEL_NAME,
    BootFiles,
    Kernel,
    boot_files,
    cache_dir,
    initrd,
    ip_param,
    ipxe_file,
    kernel,
    kernel_cmdline,
    ovmf_code,
    ovmf_vars_copy,
)
from .dhcpprobe import Offer, discover
from .dnsmasq import Dnsmasq, minimal_pxe_config
from .errors import LabError
from .httpd import Request, Response, StubHTTPServer, ipxe_script
from .net import LabNetwork, Netns, cleanup_stale, list_namespaces, stop_process
from .pgsocket import PgSocket
from .qemu import BootResult, Guest, Mode, Nic, Smbios, boot, random_mac, smbios_escape, strip_ansi
from .requirements import missing, missing_kea

__all__ = [
    "INITRD_NAME",
    "KERNEL_NAME",
    "BootFiles",
    "BootResult",
    "Dnsmasq",
    "Guest",
    "Kernel",
    "LabError",
    "LabNetwork",
    "Mode",
    "Netns",
    "Nic",
    "Offer",
    "PgSocket",
    "Request",
    "Response",
    "Smbios",
    "StubHTTPServer",
    "boot",
    "boot_files",
    "cache_dir",
    "cleanup_stale",
    "discover",
    "initrd",
    "ip_param",
    "ipxe_file",
    "ipxe_script",
    "kernel",
    "kernel_cmdline",
    "list_namespaces",
    "minimal_pxe_config",
    "missing",
    "missing_kea",
    "ovmf_code",
    "ovmf_vars_copy",
    "random_mac",
    "smbios_escape",
    "stop_process",
    "strip_ansi",
]
