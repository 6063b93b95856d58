"""Emulated BMCs whose "hardware" is a lab QEMU guest: OpenIPMI's ``ipmi_sim`` and
sushy-tools' Redfish emulator, each inside the lab namespace, driving one guest.

:class:`~bmc_hardware.VmHardware` is the machine both BMCs control. It lives in a directory (so the
short-lived chassis-control program ``ipmi_sim`` runs and the long-running Redfish
emulator share it): the guest's QEMU command line (built by :class:`lab.Guest`, so the
tap, firmware and SMBIOS are the lab's), the stored next-boot device, QEMU's pidfile,
and ``launches.jsonl`` -- one line per QEMU start with the boot order it got, which is
what a test reads to see what the BMC did.

* Power on starts QEMU detached (``setsid -f``, output to a file: the BMC is not
  held up and ``ipmi_sim`` does not wait for QEMU's stdout to close). When the stored
  next-boot device is ``pxe`` that start gets ``-boot once=n`` (UEFI: the NIC keeps its
  ``bootindex``) and the device is forgotten -- a one-shot, as on a real BMC.
* Power off kills QEMU: a hard power-off, and instant (see ``bmc_hardware.py``).
* Reset is off + on, not QMP ``system_reset``: under ``-no-reboot`` a reset is an exit,
  and ``once=n`` only exists on QEMU's command line.
* "On" means the pidfile's process exists and is not a zombie: a QEMU whose guest
  powered itself off may linger as one until its new parent reaps it.

The guest has no disk: its boot order is "disk, then network" (``order=cn``), so every
boot reaches the network, and bootbrain's ``exit`` answer is its "local boot".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bmc_hardware import VmHardware
from .errors import LabError
from .net import LabNetwork, stop_process

HERE = Path(__file__).resolve().parent
CHASSIS_PROGRAM = HERE / "bmc_chassis.py"
REDFISH_EMULATOR = HERE / "bmc_redfish.py"
#: The environment variable naming the :class:`VmHardware` directory of the Redfish
#: emulator's systems driver.
VM_DIR_ENV = "BOOTBRAIN_LAB_VM"
IPMI_PORT = 623
REDFISH_PORT = 8000
REDFISH_SYSTEM = "27946b59-9e44-4fa7-8e91-f3527a1ef094"
USER, PASSWORD = "admin", "Lab-bmc-pw-1"


def missing_bmc() -> list[str]:
    """Why the emulated BMCs cannot run here (empty list = they can)."""
    reasons = [f"binary {b} not found" for b in ("ipmi_sim", "setsid") if not shutil.which(b)]
    try:
        import sushy_tools  # noqa: F401
    except ImportError:
        reasons.append("Python package sushy-tools not installed")
    return reasons


# --------------------------------------------------------------------------- the BMCs


@dataclass
class EmulatedBmc:
    """A BMC process in the lab namespace, listening on ``address:port``."""

    kind: str  # "ipmi" or "redfish": bootbrain's BMC kind
    address: str  # as bootbrain's BMC record takes it
    port: int
    hardware: VmHardware
    proc: subprocess.Popen[bytes]
    log_path: Path
    system_id: str | None = None

    def record(self) -> dict[str, Any]:
        """The body of ``PUT /machines/{id}/bmc`` for this BMC."""
        body: dict[str, Any] = {
            "kind": self.kind, "address": self.address, "port": self.port,
            "username": USER, "password": PASSWORD,
        }  # fmt: skip
        if self.system_id:
            body["system_id"] = self.system_id
        return body

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, net: LabNetwork) -> None:
        stop_process(self.proc, timeout=10)
        net.forget(self.proc)
        self.hardware.power_off()


def start_ipmi_sim(net: LabNetwork, hardware: VmHardware, port: int = IPMI_PORT) -> EmulatedBmc:
    """``ipmi_sim`` on ``net.address:port`` (UDP), its chassis control ``hardware``."""
    d = hardware.dir / "ipmi"
    (d / "state").mkdir(parents=True, exist_ok=True)
    program = f"{sys.executable} -S {CHASSIS_PROGRAM} {hardware.dir}"
    (d / "lan.conf").write_text(
        f"""name "bootbrain-lab"
set_working_mc 0x20
  startlan 1
    addr {net.address} {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{program} 0x20"
  user 2 true "{USER}" "{PASSWORD}" admin 10 none md2 md5 straight
"""
    )
    (d / "bmc.emu").write_text(
        "mc_setbmc 0x20\n"
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "mc_enable 0x20\n"
    )
    log_path = d / "ipmi_sim.log"
    with open(log_path, "wb") as log:
        proc = net.popen(
            ["ipmi_sim", "-c", "lan.conf", "-f", "bmc.emu", "-s", "state", "-n"],
            cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    bmc = EmulatedBmc("ipmi", net.address, port, hardware, proc, log_path)
    _wait_listening(net, bmc, "udp")
    return bmc


def start_redfish(net: LabNetwork, hardware: VmHardware, port: int = REDFISH_PORT) -> EmulatedBmc:
    """sushy-tools' emulator on ``http://net.address:port``, one system: ``hardware``."""
    import bcrypt

    d = hardware.dir / "redfish"
    d.mkdir(parents=True, exist_ok=True)
    auth = d / "htpasswd"
    auth.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    systems = [{"uuid": REDFISH_SYSTEM, "name": "lab-vm", "power_state": "Off", "nics": []}]
    (d / "emulator.conf").write_text(
        f"SUSHY_EMULATOR_AUTH_FILE = {str(auth)!r}\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {json.dumps(systems)}\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(d / 'state')!r}\n"
    )
    env = {**os.environ, VM_DIR_ENV: str(hardware.dir)}
    log_path = d / "emulator.log"
    with open(log_path, "wb") as log:
        proc = net.popen(
            [sys.executable, str(REDFISH_EMULATOR), "--config", str(d / "emulator.conf"),
             "-i", net.address, "-p", str(port)],
            cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    bmc = EmulatedBmc(
        "redfish", f"http://{net.address}", port, hardware, proc, log_path, REDFISH_SYSTEM
    )
    _wait_listening(net, bmc, "tcp")
    return bmc


def _wait_listening(net: LabNetwork, bmc: EmulatedBmc, proto: str) -> None:
    flag = "-lnu" if proto == "udp" else "-lnt"
    want = f"{net.address}:{bmc.port}"
    deadline = time.monotonic() + 30
    while True:
        if bmc.proc.poll() is not None:
            raise LabError(f"{bmc.kind} BMC exited ({bmc.proc.returncode}):\n{bmc.log()}")
        listening = net.run(["ss", flag], check=False).stdout
        if want in listening.split():
            return
        if time.monotonic() > deadline:
            raise LabError(f"{bmc.kind} BMC not listening on {want}:\n{bmc.log()}")
        time.sleep(0.2)
