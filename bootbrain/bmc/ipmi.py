"""The IPMI driver, through pyghmi (not ``ipmitool``, whose exit status hides a rejected
boot-device command).

pyghmi bounds its own retransmissions (a BMC that does not answer fails its logon after a
few seconds); on top of that a session that fails with a timeout is retried
``target.retries`` times. pyghmi proposes cipher suite 17 and falls back to 3 by
itself. Sessions are pyghmi's: it keeps one per BMC and credentials alive and reuses
it (logging one out by hand breaks the next command that reuses it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pyghmi.exceptions import IpmiException
from pyghmi.ipmi import command
from pyghmi.ipmi.private import session as pyghmi_session

from bootbrain.errors import BmcAuthError, BmcError, BmcRejectedError, BmcUnreachableError

from .driver import BmcTarget, BootOnce, PowerState

log = logging.getLogger(__name__)
T = TypeVar("T")

#: pyghmi's session bookkeeping (``Session.initting_sessions``, shared sessions per BMC
#: and credentials, the logon fallback worked around below) is process-wide; the
#: rolling reinstall runs several drivers in threads, so their calls take turns.
_PYGHMI = threading.Lock()

_AUTH_WORDS = ("password", "unauthorized", "user", "privilege", "rakp")
_TIMEOUT_WORDS = ("timeout", "no longer connected", "unreachable", "not connected")


class IpmiDriver:
    def __init__(self, target: BmcTarget) -> None:
        self.target = target
        #: One logged-in session for this driver's operations (a logon costs a round
        #: of cipher-suite fallback); dropped after any failure.
        self._conn: command.Command | None = None

    def _classify(self, e: Exception) -> BmcError:
        # pyghmi raises IpmiException(None) when its logon got no answer at all
        text = str(e) if e.args and e.args[0] is not None else "timeout"
        low = text.lower()
        t = self.target
        if isinstance(e, OSError) or any(w in low for w in _TIMEOUT_WORDS):
            return BmcUnreachableError(t.machine, t.label, f"no answer over IPMI ({text})")
        if any(w in low for w in _AUTH_WORDS):
            return BmcAuthError(t.machine, t.label, f"the BMC refused the credentials ({text})")
        return BmcRejectedError(t.machine, t.label, f"the BMC refused the command ({text})")

    def _once(self, fn: Callable[[command.Command], T]) -> T:
        t = self.target
        if self._conn is None:
            self._conn = command.Command(
                bmc=t.address, userid=t.username, password=t.password, port=t.port
            )
            _forget_finished_logon(t)
        return fn(self._conn)

    def _bounded(self, what: str, fn: Callable[[command.Command], T]) -> T:
        """``fn`` on this driver's session, given at most :func:`wall_limit` seconds.

        pyghmi bounds its retransmissions, but a logon can still wait forever on
        process-wide session state left behind by another (seen when a BMC vanished
        mid-logon). The call runs in a thread of its own; one that overruns is left
        behind, its session forgotten, and reported as a BMC that did not answer."""
        t = self.target
        limit = wall_limit(t)
        result: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                result.append(self._once(fn))
            except BaseException as e:  # handed to the caller
                failure.append(e)

        if not _PYGHMI.acquire(timeout=limit):
            raise BmcUnreachableError(
                t.machine, t.label, f"another IPMI call did not finish within {limit:.0f} s"
            )
        try:
            worker = threading.Thread(target=run, name=f"ipmi {what}", daemon=True)
            worker.start()
            worker.join(limit)
            if worker.is_alive():
                self._conn = None
                _forget_logon(t)
                raise BmcUnreachableError(
                    t.machine, t.label, f"no answer over IPMI within {limit:.0f} s ({what})"
                )
        finally:
            _PYGHMI.release()
        if failure:
            raise failure[0]
        return result[0]

    def _call(self, what: str, fn: Callable[[command.Command], T]) -> T:
        t = self.target
        last: BmcError | None = None
        for attempt in range(t.retries + 1):
            try:
                return self._bounded(what, fn)
            except (IpmiException, OSError) as e:
                self._conn = None
                last = self._classify(e)
                log.info("ipmi %s on %s (machine %s): %s", what, t.label, t.machine, last.message)
                if not isinstance(last, BmcUnreachableError) or attempt == t.retries:
                    raise last from None
                time.sleep(min(1.0, t.timeout / 5))
        raise last or BmcUnreachableError(t.machine, t.label, "no answer over IPMI")

    def power_state(self) -> PowerState:
        answer: dict[str, Any] = self._call("get power", lambda c: c.get_power())
        return "on" if answer.get("powerstate") == "on" else "off"

    def _set(self, state: str) -> None:
        self._call(f"set power {state}", lambda c: c.set_power(state, wait=False))

    def on(self) -> PowerState:
        self._set("on")
        return self.power_state()

    def off(self) -> PowerState:
        self._set("off")
        return self.power_state()

    def reset(self) -> None:
        self._set("reset")

    def network_boot_once(self) -> BootOnce:
        def set_and_read(c: command.Command) -> tuple[dict[str, Any], dict[str, Any]]:
            done = c.set_bootdev("network", persist=False)
            return done, c.get_bootdev()

        done, back = self._call("set boot device", set_and_read)
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
    """The longest one IPMI call may take: a logon with its cipher-suite fallback and
    pyghmi's own retransmissions, then the command."""
    return 4 * t.timeout + 2


def _forget_logon(t: BmcTarget) -> None:
    """Drop whatever pyghmi holds for this BMC and credentials, so that the next
    ``Command`` logs on afresh instead of waiting for an abandoned logon."""
    key = (t.address, t.username, t.password, t.port, None)
    pyghmi_session.Session.initting_sessions.pop(key, None)


def _forget_finished_logon(t: BmcTarget) -> None:
    """Work around pyghmi 1.6: after a logon that fell back from SHA-256 to SHA-1 (as
    against OpenIPMI's simulator), the finished session stays in
    ``Session.initting_sessions``, and the next ``Command`` with the same credentials
    waits forever for that logon to finish. A logged-in session there is dropped."""
    key = (t.address, t.username, t.password, t.port, None)
    pending: dict[Any, Any] = pyghmi_session.Session.initting_sessions
    found = pending.get(key)
    if found is not None and getattr(found, "logged", False) and not found.logging:
        pending.pop(key, None)
