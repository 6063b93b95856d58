"""OpenIPMI ``ipmi_sim``'s chassis-control program for a lab guest (see ``bmc.py``).

``lan.conf`` says ``chassis_control "python bmc_chassis.py VMDIR 0x20"``; ipmi_sim runs
it synchronously, appending ``get power boot`` (answered ``power:1``, ``boot:pxe``) or
``set <item> <value> ...`` pairs: ``power 0|1``, ``reset 1``, ``shutdown 1``,
``boot pxe|default|none|cdrom|bios``. The BMC waits meanwhile, so every operation
returns as soon as QEMU has started or stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bmc_hardware import VmHardware


def main(argv: list[str]) -> int:
    hw = VmHardware(Path(argv[0]))
    words = argv[1:]
    ops = [i for i, w in enumerate(words) if w in ("get", "set")]
    if not ops:
        print(f"usage: bmc_chassis.py VMDIR MC get|set ...: {words}", file=sys.stderr)
        return 2
    op, args = words[ops[0]], words[ops[0] + 1 :]
    if op == "get":
        for item in args:
            if item == "power":
                print(f"power:{int(hw.powered())}")
            elif item == "boot":
                print(f"boot:{hw.boot_device()}")
        return 0
    for item, value in zip(args[::2], args[1::2], strict=False):
        if item == "power":
            hw.power_on() if value == "1" else hw.power_off()
        elif item == "reset" and value == "1":
            hw.reset()
        elif item == "shutdown" and value == "1":
            hw.power_off()
        elif item == "boot":
            hw.set_boot_device("pxe" if value == "pxe" else "default")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
