"""sushy-tools' Redfish emulator with a static systems driver: the fake driver, but power
changes apply at once (the stock one applies them after a random 1-11 s) and the
boot-override ``Enabled`` value is kept. Run as ``python static_redfish.py ARGS…`` with
the emulator's own arguments (``--config``, ``--port``, ``--ssl-certificate``…)."""

from __future__ import annotations

import sys

from sushy_tools.emulator import main
from sushy_tools.emulator.resources.systems import fakedriver


class StaticDriver(fakedriver.FakeDriver):
    def set_power_state(self, identity: str, state: str) -> None:
        system = self._get(identity)
        if "On" in state or "Restart" in state:
            new = "On"
            if "Restart" in state and system["power_state"] == "Off":
                raise fakedriver.error.BadRequest("cannot restart a system that is off")
        elif state in ("ForceOff", "GracefulShutdown"):
            new = "Off"
        else:
            raise fakedriver.error.NotSupportedError(f"power state {state}")
        log = [*system.get("actions", []), state]
        self._update(system, power_state=new, pending_power=None, actions=log)

fakedriver.FakeDriver = StaticDriver  # type: ignore[misc]

if __name__ == "__main__":
    sys.argv = ["sushy-emulator", "--fake", *sys.argv[1:]]
    sys.exit(main.main())
