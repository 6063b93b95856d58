"""Every example an operator copies from ``dnsmasq/`` and ``kea-hooks/`` is what the
code renders, byte for byte, so the examples cannot drift from bootbrain.

``BOOTBRAIN_UPDATE_GOLDEN=1`` rewrites them from the code; review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bootbrain.config import Settings
from bootbrain.integrations import dnsmasq, kea, render_hook_conf, render_hook_wrapper
from bootbrain.inventory import Reservation

REPO = Path(__file__).resolve().parents[2]
#: What the examples assume: bootbrain (behind nginx) at 10.0.0.2 on the boot network.
BASE = "http://10.0.0.2"
LEASEHOOK = Path("/usr/local/lib/bootbrain/leasehook.py")


def _full() -> str:
    settings = Settings.model_validate(
        {
            "dnsmasq": {
                "interface": "eth0",
                "range_start": "10.0.0.100",
                "range_end": "10.0.0.199",
                "netmask": "255.255.255.0",
                "router": "10.0.0.1",
                "dns_servers": ["10.0.0.1"],
            }
        }
    )
    return dnsmasq.render_config(settings, BASE)


def _proxy() -> str:
    settings = Settings.model_validate(
        {
            "dnsmasq": {
                "mode": "proxy",
                "interface": "eth0",
                "server_ip": "10.0.0.2",
                "netmask": "255.255.255.0",
            }
        }
    )
    return dnsmasq.render_config(settings, BASE)


def _kea() -> str:
    settings = Settings.model_validate(
        {
            "kea": {
                "interface": "eth0",
                "subnet": "10.0.0.0/24",
                "pool_start": "10.0.0.100",
                "pool_end": "10.0.0.199",
                "server_ip": "10.0.0.2",
                "router": "10.0.0.1",
                "dns_servers": ["10.0.0.1"],
                "host_cmds": False,
            }
        }
    )
    reservation = Reservation(1, "52:54:00:12:34:56", "10.0.0.50", "node-1")
    return kea.render_json(kea.render_config(settings, BASE, [reservation]))


def _tftp_only() -> str:
    defaults = Settings()
    return dnsmasq.render_tftp_config(
        defaults.kea.interface, defaults.dnsmasq.tftp_root, Path("/run/bootbrain-tftp.pid")
    )


def _hook_conf() -> str:
    return render_hook_conf(
        BASE,
        Path("/etc/bootbrain/leasehook.token"),
        Path("/var/lib/bootbrain/spool"),
        timeout=2,
        budget=2,
        backoff=10,
    )


EXAMPLES: dict[str, Callable[[], str]] = {
    "dnsmasq/dnsmasq-full.conf": _full,
    "dnsmasq/dnsmasq-proxy.conf": _proxy,
    "dnsmasq/bootbrain-dnsmasq-hook": lambda: render_hook_wrapper("dnsmasq", leasehook=LEASEHOOK),
    "dnsmasq/leasehook.conf.example": _hook_conf,
    "kea-hooks/kea-dhcp4.example.json": _kea,
    "kea-hooks/bootbrain-kea-hook": lambda: render_hook_wrapper("kea", leasehook=LEASEHOOK),
    "kea-hooks/dnsmasq-tftp-only.conf": _tftp_only,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_what_bootbrain_renders(name: str) -> None:
    path = REPO / name
    rendered = EXAMPLES[name]()
    if os.environ.get("BOOTBRAIN_UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
    assert path.read_text() == rendered, f"{name} differs from what bootbrain renders"


def test_every_file_in_the_example_folders_is_rendered_or_documentation() -> None:
    for folder in ("dnsmasq", "kea-hooks"):
        for path in (REPO / folder).iterdir():
            name = f"{folder}/{path.name}"
            assert name in EXAMPLES or path.suffix == ".md", f"{name} is not checked"
