"""sushy-tools' Redfish emulator whose one system is a lab guest (see ``bmc.py``).

Run as ``python bmc_redfish.py ARGS…`` with the emulator's own arguments, and
``BOOTBRAIN_LAB_VM`` naming the guest's :class:`~lab.bmc.VmHardware` directory. The
systems driver is the fake one (identity, boot mode, the rest in memory) with power
and the boot-override target taken over by the guest: ``On``/``ForceOn`` start it,
``ForceOff``/``GracefulShutdown`` stop it, ``ForceRestart``/``GracefulRestart``/
``PowerCycle`` restart it, and ``BootSourceOverrideTarget=Pxe`` makes the next start
(only) a network boot. The emulator looks the fake driver class up when it first needs
it, so replacing it in its module before ``main`` is enough.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bmc_hardware import VmHardware
from sushy_tools import error
from sushy_tools.emulator import main
from sushy_tools.emulator.resources.systems import fakedriver

HARDWARE = VmHardware(Path(os.environ["BOOTBRAIN_LAB_VM"]))


class VmDriver(fakedriver.FakeDriver):
    def get_power_state(self, identity: str) -> str:
        self._get(identity)
        return "On" if HARDWARE.powered() else "Off"

    def set_power_state(self, identity: str, state: str) -> None:
        self._get(identity)
        if state in ("On", "ForceOn"):
            HARDWARE.power_on()
        elif state in ("ForceOff", "GracefulShutdown"):
            HARDWARE.power_off()
        elif state in ("ForceRestart", "GracefulRestart", "PowerCycle"):
            HARDWARE.reset()
        else:
            raise error.NotSupportedError(f"power state {state} is not supported")

    def get_boot_device(self, identity: str) -> str:
        self._get(identity)
        return "Pxe" if HARDWARE.boot_device() == "pxe" else "Hdd"

    def set_boot_device(self, identity: str, boot_source: str) -> None:
        self._get(identity)
        HARDWARE.set_boot_device("pxe" if boot_source == "Pxe" else "default")


fakedriver.FakeDriver = VmDriver  # type: ignore[misc]

if __name__ == "__main__":
    sys.argv = ["sushy-emulator", "--fake", *sys.argv[1:]]
    sys.exit(main.main())
