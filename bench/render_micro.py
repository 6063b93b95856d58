"""Micro-benchmark of iPXE rendering: µs per render of the ``/ipxe`` hot path.

    python bench/render_micro.py                      # this checkout
    python bench/render_micro.py --compare /tmp/old   # also a copy of an older package

``--compare DIR`` names a directory holding another ``bootbrain`` package (for
example ``mkdir /tmp/old && cp -r bootbrain /tmp/old/`` before a change); it is run
in a subprocess, alternating with this checkout, so both sets of numbers come from
the same run on the same (noisy) machine. Each case is the best of ``--repeat``
timings of ``--number`` renders (stdlib :mod:`timeit`), in CPU time of this process
(``time.process_time``) so that other work on the machine counts less; the caches a
long-running server keeps warm are warm, as they are during a boot storm, and every
decision is for another machine (address, boot token).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cases() -> dict[str, Callable[[], str]]:
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

    base = "http://10.0.0.1:8080"
    ctx = RenderContext(base_url=base, assets_url=base + "/assets")

    def token_ctx(n: int) -> RenderContext:
        return RenderContext(
            base_url=base,
            assets_url=base + "/assets",
            boot_id=f"b{n:06x}",
            done_url=f"{base}/boot/tok-{n:06x}/done",
            metadata_url=f"{base}/boot/tok-{n:06x}/",
        )

    def machine(n: int, static: bool) -> MachineView:
        net = StaticNet(
            ip=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
            prefix=8,
            netmask="255.0.0.0",
            gateway="10.0.0.1",
            dns=("10.0.0.1", "9.9.9.9"),
            domain="lab.example",
            hostname=f"node-{n}",
            interface="eth0",
        )
        return MachineView(
            id=n,
            hostname=f"node-{n}",
            state="ready",
            tags=("gpu",),
            uuid="4c4c4544-0042-3610-8052-b4c04f4e3232",
            serial=f"SN-{n}",
            manufacturer="Lab Vendor Inc.",
            product="LabBox 9000",
            asset_tag=None,
            profile=None,
            next_boot=None,
            static=net if static else None,
            macs=(f"02:00:00:00:{n >> 8 & 255:02x}:{n & 255:02x}",),
        )

    linux = ProfileView(
        name="debian-12",
        kind="linux",
        kernel="{{ assets }}/debian-12/vmlinuz",
        initrds=("{{ assets }}/debian-12/initrd.gz", "{{ assets }}/firmware.cpio.gz"),
        cmdline=(
            "console=ttyS0,115200n8 {{ ip_config }} net.ifnames=0 "
            "bootbrain.done={{ done_url }} bootbrain.meta={{ metadata_url }}"
        ),
    )
    chain = ProfileView(name="netboot-xyz", kind="chain", chain_url="https://boot.netboot.xyz")
    script = ProfileView(
        name="flatcar",
        kind="ipxe",
        script=(
            "#!ipxe\nset bootimage_url {{ assets }}/flatcar\n"
            "kernel ${bootimage_url}/flatcar.vmlinuz initrd=main ${IPXE_BOOT_LINUX_IP_CONFIG} "
            "ignition.config.url={{ base_url }}/ignition/{{ machine.id }}.json\n"
            "initrd --name main ${bootimage_url}/flatcar_image.cpio.gz\nboot\n"
        ),
    )
    menu = ProfileView(
        name="install-menu",
        kind="menu",
        menu=MenuView(
            items=(
                MenuItem("install", "Install Debian 12", linux),
                MenuItem("rescue", "Rescue tools (netboot.xyz)", chain),
                MenuItem("flatcar", "Flatcar into RAM", script),
            ),
            default="install",
            timeout=10,
        ),
    )
    local = ProfileView(name="disk", kind="local")

    # A different machine (address, token) on every call, as in a boot storm.
    counter = iter(range(1, 1 << 62))

    def decide(profile: ProfileView, static: bool) -> Callable[[], str]:
        def run() -> str:
            n = next(counter) % 100_000 + 1
            d = Decision(step="assigned", profile=profile, reason="bench", machine_id=n)
            return render_decision(d, machine(n, static), token_ctx(n))

        return run

    rng = random.Random(1)
    return {
        "local": decide(local, False),
        "linux+static": decide(linux, True),
        "linux dhcp": decide(linux, False),
        "menu": decide(menu, True),
        "bootstrap": lambda: render_bootstrap(base, 6, 2, rng),
        "error": lambda: render_error("boot server inventory unavailable", 15),
        "decision error": lambda: render_decision(Decision("error", None, "boom"), None, ctx),
    }


def measure(number: int, repeat: int) -> dict[str, float]:
    """µs per render for each case (best of ``repeat``)."""
    out: dict[str, float] = {}
    for name, run in cases().items():
        run()  # warm the caches
        best = min(timeit.repeat(run, number=number, repeat=repeat, timer=time.process_time))
        out[name] = best / number * 1e6
    return out


def measure_in(path: Path | None, number: int, repeat: int) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(path if path is not None else ROOT)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json"]
    cmd += ["--number", str(number), "--repeat", str(repeat)]
    result = subprocess.run(cmd, env=env, cwd="/", check=True, capture_output=True, text=True)
    data: dict[str, float] = json.loads(result.stdout)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100, help="renders per timing")
    parser.add_argument("--repeat", type=int, default=15, help="timings per case")
    parser.add_argument("--rounds", type=int, default=3, help="alternations with --compare")
    parser.add_argument("--compare", type=Path, help="directory holding another bootbrain")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.number, args.repeat)))
        return
    if args.compare is None:
        sys.path.insert(0, str(ROOT))
        for name, us in measure(args.number, args.repeat).items():
            print(f"{name:16} {us:9.1f} µs/render")
        return
    if not (args.compare / "bootbrain" / "boot" / "render.py").is_file():
        parser.error(f"{args.compare} holds no bootbrain package")
    old: dict[str, float] = {}
    new: dict[str, float] = {}
    for _ in range(args.rounds):
        for best, where in ((old, args.compare), (new, None)):
            for name, us in measure_in(where, args.number, args.repeat).items():
                best[name] = min(us, best.get(name, us))
    print(f"{'case':16} {'compare':>10} {'this':>10}  speed-up   (µs/render, best)")
    for name in new:
        before = old.get(name)
        shown = f"{before:10.1f}" if before is not None else f"{'-':>10}"
        ratio = f"{before / new[name]:6.1f}x" if before is not None else ""
        print(f"{name:16} {shown} {new[name]:10.1f}  {ratio}")


if __name__ == "__main__":
    main()
