"""The IPMI driver, through pyghmi (not ``ipmitool``, whose exit status hides a rejected
boot-device command).

Each call runs in a process of its own (:mod:`bootbrain.bmc.ipmi_worker`). pyghmi keeps
its sessions, sockets and I/O thread process-wide, and a logon can wait for ever on state
another BMC's conversation left there; in a long-lived boot host that wedged every later
IPMI call. A worker process starts clean, logs on, runs one operation, logs out, and one
that overruns :func:`wall_limit` is killed, not abandoned. The cost, a Python start and a
logon per call, is small beside a BMC's own latency.

pyghmi bounds its own retransmissions (a BMC that does not answer fails its logon after a
few seconds) and proposes cipher suite 17, falling back to 3 by itself; on top of that a
call that fails with a timeout is retried ``target.retries`` times.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bootbrain.errors import BmcAuthError, BmcError, BmcRejectedError, BmcUnreachableError

from .driver import BmcTarget, BootOnce, PowerState

log = logging.getLogger(__name__)

#: How a call's worker process is started.
WORKER: tuple[str, ...] = (sys.executable, "-m", "bootbrain.bmc.ipmi_worker")

_AUTH_WORDS = ("password", "unauthorized", "user", "privilege", "rakp")
_TIMEOUT_WORDS = ("timeout", "no longer connected", "unreachable", "not connected")


class IpmiDriver:
    def __init__(self, target: BmcTarget, worker: Sequence[str] = WORKER) -> None:
        self.target = target
        self.worker = tuple(worker)

    def _classify(self, text: str, os_error: bool) -> BmcError:
        low = text.lower()
        t = self.target
        if os_error or any(w in low for w in _TIMEOUT_WORDS):
            return BmcUnreachableError(t.machine, t.label, f"no answer over IPMI ({text})")
        if any(w in low for w in _AUTH_WORDS):
            return BmcAuthError(t.machine, t.label, f"the BMC refused the credentials ({text})")
        return BmcRejectedError(t.machine, t.label, f"the BMC refused the command ({text})")

    def _bounded(self, op: str) -> Any:
        """Operation ``op`` in a worker process given at most :func:`wall_limit` seconds."""
        t = self.target
        limit = wall_limit(t)
        request = {"op": op, "address": t.address, "port": t.port}
        request |= {"username": t.username, "password": t.password}
        try:
            done = subprocess.run(
                self.worker,
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BmcUnreachableError(
                t.machine, t.label, f"no answer over IPMI within {limit:.0f} s ({op})"
            ) from None
        try:
            answer: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BmcError(
                t.machine, t.label, f"the IPMI worker failed ({op}, exit {done.returncode}: {tail})"
            ) from None
        if "error" in answer:
            raise self._classify(str(answer["error"]), bool(answer.get("os_error")))
        return answer["ok"]

    def _call(self, op: str) -> Any:
        t = self.target
        for attempt in range(t.retries + 1):
            try:
                return self._bounded(op)
            except BmcError as e:
                log.info("ipmi %s on %s (machine %s): %s", op, t.label, t.machine, e.message)
                if not isinstance(e, BmcUnreachableError) or attempt == t.retries:
                    raise
                time.sleep(min(1.0, t.timeout / 5))
        raise AssertionError("unreachable: the last attempt raises")

    def power_state(self) -> PowerState:
        answer: dict[str, Any] = self._call("get power")
        return "on" if answer.get("powerstate") == "on" else "off"

    def on(self) -> PowerState:
        self._call("set power on")
        return self.power_state()

    def off(self) -> PowerState:
        self._call("set power off")
        return self.power_state()

    def reset(self) -> None:
        self._call("set power reset")

    def network_boot_once(self) -> BootOnce:
        done, back = self._call("set boot device")
        t = self.target
        if done.get("bootdev") != "network":
            raise BmcRejectedError(t.machine, t.label, f"boot device not set: {done}")
        device = str(back.get("bootdev", "default"))
        # A BMC that does not set the boot flags' valid bit (OpenIPMI's simulator) reads
        # back "default": unconfirmed, not refused. Another device is a refusal.
        if device not in ("network", "default"):
            raise BmcRejectedError(
                t.machine, t.label, f"asked for a network boot, the BMC reads back {device!r}"
            )
        once = None if device == "default" else not back.get("persistent", False)
        return BootOnce(device=device, once=once, confirmed=device == "network")


def wall_limit(t: BmcTarget) -> float:
    """The longest one IPMI call may take: a process start, a logon with its cipher-suite
    fallback and pyghmi's own retransmissions, then the command."""
    return 4 * t.timeout + 2
