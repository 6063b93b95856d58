"""The Redfish driver, through sushy (Ironic's client).

Network-boot-once is ``BootSourceOverrideTarget=Pxe`` with ``Enabled=Once``, read back
from the system resource. TLS is verified unless the record says ``verify_tls=false``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import sushy
from sushy import exceptions as sx

from bootbrain.errors import (
    BmcAuthError,
    BmcError,
    BmcRejectedError,
    BmcTlsError,
    BmcUnreachableError,
)

from .driver import BmcTarget, BootOnce, PowerState

log = logging.getLogger(__name__)
T = TypeVar("T")


class RedfishDriver:
    def __init__(self, target: BmcTarget) -> None:
        self.target = target

    @property
    def base_url(self) -> str:
        """``https://address:port``; an address written ``http://host`` opts out of TLS."""
        t = self.target
        scheme, sep, host = t.address.partition("://")
        if not sep:
            scheme, host = "https", t.address
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{t.port}"

    def _classify(self, e: Exception) -> BmcError:
        t = self.target
        text = str(e) or type(e).__name__
        if isinstance(e, sx.AccessError):
            return BmcAuthError(t.machine, t.label, "the BMC refused the credentials")
        if isinstance(e, sx.ConnectionError):
            if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
                return BmcTlsError(
                    t.machine, t.label, "the BMC's TLS certificate did not verify"
                )
            return BmcUnreachableError(t.machine, t.label, "no answer over Redfish")
        return BmcRejectedError(t.machine, t.label, f"the BMC refused the command ({text})")

    def _system(self) -> Any:
        t = self.target
        root = sushy.Sushy(
            self.base_url,
            verify=t.verify_tls,
            auth=sushy.auth.SessionOrBasicAuth(username=t.username, password=t.password),
            server_side_retries=t.retries,
            server_side_retries_delay=1,
            read_timeout=t.timeout,
            connect_timeout=t.timeout,
        )
        if t.system_id:
            return root.get_system(f"{root.get_system_collection().path}/{t.system_id}")
        return root.get_system()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        t = self.target
        try:
            return fn(self._system())
        except sx.SushyError as e:
            err = self._classify(e)
            log.info("redfish %s on %s (machine %s): %s", what, t.label, t.machine, err.message)
            raise err from None

    def power_state(self) -> PowerState:
        state = self._call("get power", lambda s: s.power_state)
        return "on" if state in (sushy.PowerState.ON, sushy.PowerState.POWERING_OFF) else "off"

    def _reset(self, kind: Any) -> None:
        self._call(f"reset {kind}", lambda s: s.reset_system(kind))

    def on(self) -> PowerState:
        self._reset(sushy.ResetType.ON)
        return self.power_state()

    def off(self) -> PowerState:
        self._reset(sushy.ResetType.FORCE_OFF)
        return self.power_state()

    def reset(self) -> None:
        self._reset(sushy.ResetType.FORCE_RESTART)

    def network_boot_once(self) -> BootOnce:
        def set_and_read(s: Any) -> tuple[Any, Any]:
            s.set_system_boot_options(
                target=sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE
            )
            s.refresh()
            return s.boot.target, s.boot.enabled

        device, enabled = self._call("set boot options", set_and_read)
        t = self.target
        if device != sushy.BootSource.PXE:
            raise BmcRejectedError(
                t.machine, t.label, f"asked for a network boot, the BMC reads back {device!r}"
            )
        once = enabled == sushy.BootSourceOverrideEnabled.ONCE
        return BootOnce(device="network", once=once, confirmed=True)
