"""The "hardware" the lab's emulated BMCs control: one QEMU guest (see ``bmc.py``).

Standard library only, and no import of the ``lab`` package: ``ipmi_sim`` runs its
chassis-control program (``bmc_chassis.py``, which imports this) synchronously for
every power and boot-device command, and pyghmi retransmits a request that gets no
answer within about half a second -- ipmi_sim would then run the command twice. So
every operation here returns within milliseconds: power on returns once QEMU has
written its pidfile, power off is a hard one (SIGKILL, as a BMC's "power down" is).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

DEFAULT_ORDER = "order=cn"


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (nor a reused pid of something else)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X") and b"qemu" in cmdline


def boot_args(argv: list[str], network_once: bool) -> tuple[list[str], str]:
    """``argv`` with the boot order of one start, and that order as ``launches`` shows it.

    SeaBIOS (``-boot`` on the command line): ``order=cn``, plus ``once=n``. OVMF ignores
    ``-boot``; it follows the devices' ``bootindex``, so the NIC keeps its ``bootindex``
    for a network boot once (``bootindex``) and loses it otherwise (``default``: OVMF's
    own order, which still ends in the network for a guest without a disk).
    """
    argv = list(argv)
    if "-boot" in argv:
        boot = DEFAULT_ORDER + (",once=n" if network_once else "")
        argv[argv.index("-boot") + 1] = boot
        return argv, boot
    if network_once:
        return argv, "bootindex"
    return [re.sub(r",bootindex=\d+", "", a) for a in argv], "default"


class VmHardware:
    """One QEMU guest as a BMC sees it (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.spec_path = directory / "qemu.json"
        self.boot_path = directory / "boot"
        self.pid_path = directory / "qemu.pid"
        self.launches_path = directory / "launches.jsonl"

    @classmethod
    def create(cls, directory: Path, argv: list[str]) -> VmHardware:
        """A powered-off machine that runs ``argv`` (a :meth:`lab.Guest.command`)."""
        directory.mkdir(parents=True, exist_ok=True)
        hw = cls(directory)
        hw.spec_path.write_text(json.dumps({"argv": argv}))
        return hw

    # -- state -------------------------------------------------------------------------

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def powered(self) -> bool:
        return self.pid() is not None

    def boot_device(self) -> str:
        """The stored next-boot device: ``pxe`` or ``default``."""
        try:
            return self.boot_path.read_text().strip() or "default"
        except FileNotFoundError:
            return "default"

    def set_boot_device(self, device: str) -> None:
        self.boot_path.write_text(device + "\n")

    def launches(self) -> list[dict[str, Any]]:
        """Every QEMU start so far: ``boot`` (the ``-boot`` value), ``console``, ``time``."""
        try:
            lines = self.launches_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line]

    # -- power -------------------------------------------------------------------------

    def power_on(self) -> None:
        if self.powered():
            return
        argv: list[str] = json.loads(self.spec_path.read_text())["argv"]
        once = self.boot_device() == "pxe"
        if once:
            self.set_boot_device("default")  # one shot
        argv, boot = boot_args(argv, once)
        n = len(self.launches()) + 1
        console = self.dir / f"console-{n}.log"
        serial = argv.index("-serial") + 1
        argv[serial] = f"file:{console}"
        self.pid_path.unlink(missing_ok=True)
        argv += ["-pidfile", str(self.pid_path)]
        with open(self.dir / f"qemu-{n}.log", "wb") as log:
            # setsid -f: QEMU is nobody's child here, and holds none of our pipes.
            subprocess.run(
                ["setsid", "-f", *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                check=True, timeout=10,
            )  # fmt: skip
        with open(self.launches_path, "a") as f:
            f.write(json.dumps({"boot": boot, "console": str(console), "time": time.time()}))
            f.write("\n")
        deadline = time.monotonic() + 10
        while not self.powered():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"QEMU did not start: {(self.dir / f'qemu-{n}.log').read_text()}"
                )
            time.sleep(0.01)

    def power_off(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.01)
        self.pid_path.unlink(missing_ok=True)

    def reset(self) -> None:
        self.power_off()
        self.power_on()

    def console(self, launch: int = -1) -> str:
        """The serial console of one QEMU start (default: the last)."""
        launches = self.launches()
        if not launches:
            return ""
        return Path(launches[launch]["console"]).read_text(errors="replace")
