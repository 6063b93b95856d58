"""BMC power control: a small driver interface (:mod:`~bootbrain.bmc.driver`) with an IPMI
driver through pyghmi (:mod:`~bootbrain.bmc.ipmi`) and a Redfish driver through sushy
(:mod:`~bootbrain.bmc.redfish`), and :mod:`~bootbrain.bmc.power`, which reads a machine's
BMC record from the inventory and runs one operation on it.

Drivers know nothing of the inventory: they get a :class:`~bootbrain.bmc.driver.BmcTarget`
(address and clear-text credentials, in memory only) and raise the
:class:`~bootbrain.errors.BmcError` family, naming the machine and the BMC.
"""

from __future__ import annotations

from .driver import BmcTarget, BootOnce, PowerDriver, PowerState, cycle
from .ipmi import IpmiDriver
from .redfish import RedfishDriver


def driver_for(target: BmcTarget) -> PowerDriver:
    """The driver for ``target``'s kind (``ipmi`` or ``redfish``)."""
    if target.kind == "redfish":
        return RedfishDriver(target)
    return IpmiDriver(target)


__all__ = [
    "BmcTarget",
    "BootOnce",
    "IpmiDriver",
    "PowerDriver",
    "PowerState",
    "RedfishDriver",
    "cycle",
    "driver_for",
]
