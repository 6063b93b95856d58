"""Golden scripts: the exact bytes of each kind of script, pinned in tests/golden/.

A change to a template or to rendering shows up here as a diff to review. To accept
one, regenerate the files on purpose and review ``git diff tests/golden``::

    BOOTBRAIN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden.py

(the rewritten cases are reported as skipped, so an update is never silent).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bootbrain.boot import script as ipxe
from bootbrain.boot.render import render_bootstrap, render_decision, render_error
from bootbrain.boot.types import (
    Decision,
    MachineView,
    MenuItem,
    MenuView,
    ProfileView,
    RenderContext,
    StaticNet,
)
from bootbrain.inventory.checks import view_of
from tests.unit.test_groups import group_vars_script

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
BASE = "http://10.0.0.1:8080"
CTX = RenderContext(base_url=BASE, assets_url=BASE + "/assets")
TOKEN_CTX = RenderContext(
    base_url=BASE,
    assets_url=BASE + "/assets",
    boot_id="7f3a9c",
    done_url=BASE + "/boot/tok-7f3a9c/done",
    metadata_url=BASE + "/boot/tok-7f3a9c/",
)
SANBOOT_CTX = RenderContext(base_url=BASE, assets_url=BASE + "/assets", local_method="sanboot")

STATIC = StaticNet(
    ip="10.200.0.50",
    prefix=24,
    netmask="255.255.255.0",
    gateway="10.200.0.1",
    dns=("10.200.0.1", "9.9.9.9"),
    domain="lab.example",
    hostname="node-var",
    interface="eth0",
)
PARTIAL_STATIC = StaticNet(
    ip="192.0.2.10",
    prefix=24,
    netmask="255.255.255.0",
    gateway=None,
    dns=("192.0.2.53",),
    domain=None,
    hostname=None,
    interface="enp1s0",
)


def machine(static: StaticNet | None = None, hostname: str | None = "node-var") -> MachineView:
    return MachineView(
        id=7,
        hostname=hostname,
        state="provisioning",
        tags=("gpu",),
        uuid="4c4c4544-0042-3610-8052-b4c04f4e3232",
        serial="SN-MATRIX-1",
        manufacturer="Lab Vendor Inc.",
        product="LabBox 9000",
        asset_tag="ASSET-1",
        profile=None,
        next_boot=None,
        static=static,
        macs=("52:54:00:aa:cc:01",),
    )


DEBIAN = ProfileView(
    name="debian-12",
    kind="linux",
    kernel="{{ assets }}/debian-12/vmlinuz",
    initrds=("{{ assets }}/debian-12/initrd.gz", "{{ assets }}/firmware.cpio.gz"),
    cmdline=(
        "console=ttyS0,115200n8 {{ ip_config }} net.ifnames=0 "
        "bootbrain.done={{ done_url }} bootbrain.meta={{ metadata_url }}"
    ),
)
# The i3D custom-iPXE example (seed 003), using the variables the brain sets.
FLATCAR = ProfileView(
    name="flatcar",
    kind="ipxe",
    script=(
        "#!ipxe\n"
        "set bootimage_url {{ assets }}/flatcar\n"
        "kernel ${bootimage_url}/flatcar_production_pxe.vmlinuz initrd=main "
        "${IPXE_BOOT_LINUX_IP_CONFIG} net.ifnames=0 flatcar.first_boot=1 "
        "ignition.config.url={{ base_url }}/ignition/{{ machine.id }}.json\n"
        "initrd --name main ${bootimage_url}/flatcar_production_pxe_image.cpio.gz\n"
        "boot\n"
    ),
)
def _example_profile(name: str) -> ProfileView:
    """A profile of docs/examples/flatcar.yaml, the file the README points operators to."""
    doc = yaml.safe_load((GOLDEN.parents[1] / "docs/examples/flatcar.yaml").read_text())
    fields = next(p for p in doc["profiles"] if p["name"] == name)
    return view_of(fields, lambda _: None)


NETBOOT = ProfileView(name="netboot-xyz", kind="chain", chain_url="https://boot.netboot.xyz")
DISK = ProfileView(name="disk", kind="local")
DISK_SANBOOT = ProfileView(name="disk-sanboot", kind="local", local_method="sanboot")
MENU = ProfileView(
    name="install-menu",
    kind="menu",
    menu=MenuView(
        items=(
            MenuItem("install", "Install Debian 12", DEBIAN),
            MenuItem("rescue", "Rescue tools (netboot.xyz)", NETBOOT),
            MenuItem("flatcar", "Flatcar into RAM", FLATCAR),
        ),
        default="install",
        timeout=10,
    ),
)


def decision(profile: ProfileView | None, step: str = "assigned") -> Decision:
    return Decision(step=step, profile=profile, reason="golden", machine_id=7)


CASES: dict[str, Callable[[], str]] = {
    "bootstrap": lambda: render_bootstrap(BASE, 6, 2, random.Random(2026)),
    "linux_static_token": lambda: render_decision(decision(DEBIAN), machine(STATIC), TOKEN_CTX),
    "linux_dhcp": lambda: render_decision(decision(DEBIAN, "rule"), None, CTX),
    "ipxe_static": lambda: render_decision(decision(FLATCAR, "action"), machine(STATIC), CTX),
    "chain": lambda: render_decision(decision(NETBOOT), machine(), CTX),
    "local_exit": lambda: render_decision(decision(DISK), machine(), CTX),
    "local_sanboot": lambda: render_decision(decision(DISK_SANBOOT), machine(), CTX),
    "default_local": lambda: render_decision(decision(None, "default"), None, SANBOOT_CTX),
    "static_partial": lambda: render_decision(
        decision(DISK), machine(PARTIAL_STATIC, hostname=None), CTX
    ),
    "menu": lambda: render_decision(decision(MENU), machine(STATIC), TOKEN_CTX),
    "conflict": lambda: render_decision(
        Decision("conflict", None, "uuid and mac disagree"), None, CTX
    ),
    "decision_error": lambda: render_decision(Decision("error", None, "boom"), None, CTX),
    "error_retry": lambda: render_error("boot server inventory unavailable", 15),
    "error_local": lambda: render_error("boot script failed to render on the server", None),
    # seed 003's Flatcar example as docs/examples/flatcar.yaml ships it
    "flatcar_static": lambda: render_decision(
        decision(_example_profile("flatcar")), machine(STATIC), TOKEN_CTX
    ),
    "group_vars": group_vars_script,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.ipxe"
    rendered = CASES[name]()
    ipxe.check_script(rendered)
    if os.environ.get("BOOTBRAIN_UPDATE_GOLDEN") == "1":
        if not path.exists() or path.read_text() != rendered:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered)
            pytest.skip(f"rewrote {path.name}: review `git diff tests/golden`")
        return
    assert path.exists(), f"{path} missing: run with BOOTBRAIN_UPDATE_GOLDEN=1 and review it"
    assert rendered == path.read_text()


def test_no_stray_golden_files() -> None:
    assert {p.stem for p in GOLDEN.glob("*.ipxe")} == set(CASES)
