"""The power-driver interface every BMC protocol implements, and what the drivers share.

``cycle`` is not a BMC primitive here: BMCs disagree on power-cycling a machine that is
off (many answer completion code 0xD5), so it is ``off ? on : cycle`` on every protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

PowerState = Literal["on", "off"]

#: Bounds for every driver: a BMC that does not answer fails within about
#: ``timeout * (retries + 1)`` seconds.
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 1


@dataclass(frozen=True)
class BmcTarget:
    """One BMC, as a driver needs it. The password is clear text in memory only: it is
    not in ``repr`` and never in an error message."""

    machine: str
    kind: Literal["ipmi", "redfish"]
    address: str
    port: int
    username: str
    password: str = field(repr=False)
    system_id: str | None = None
    verify_tls: bool = True
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES

    @property
    def label(self) -> str:
        """How errors and events name the BMC: ``kind://address:port``."""
        address = self.address.partition("://")[2] or self.address
        host = f"[{address}]" if ":" in address else address
        return f"{self.kind}://{host}:{self.port}"


@dataclass(frozen=True)
class BootOnce:
    """What network-boot-once read back: ``device`` as the BMC reports it now,
    ``once`` whether it reports a one-time override (None: the protocol or BMC
    does not say), and ``confirmed`` whether the read-back shows the request."""

    device: str
    once: bool | None
    confirmed: bool


class PowerDriver(Protocol):
    target: BmcTarget

    def power_state(self) -> PowerState: ...

    def on(self) -> PowerState: ...

    def off(self) -> PowerState: ...

    def reset(self) -> None:
        """Hard reset of a machine that is on."""

    def network_boot_once(self) -> BootOnce:
        """Make the next boot (only) a network boot, and read back what the BMC holds;
        raises :class:`~bootbrain.errors.BmcRejectedError` if the BMC refuses it or reads
        back a different device."""


def cycle(driver: PowerDriver) -> PowerState:
    """Power-cycle: on if off, else a hard reset. Returns the state now (``on``)."""
    if driver.power_state() == "off":
        return driver.on()
    driver.reset()
    return "on"
