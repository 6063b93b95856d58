"""One IPMI conversation, in a process of its own: ``python -m bootbrain.bmc.ipmi_worker``.

Reads one request as JSON on standard input (the password travels there, never in the
command line), logs on with pyghmi, runs one operation, logs out, and writes one JSON
answer: ``{"ok": ...}`` or ``{"error": text, "os_error": bool}``. pyghmi keeps its
sessions, sockets and I/O thread process-wide; a process per conversation means state one
BMC left behind can never hold up a call to another, and a call that overruns is killed
instead of abandoned (see :mod:`bootbrain.bmc.ipmi`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

from pyghmi.exceptions import IpmiException
from pyghmi.ipmi import command


def _set_network_once(c: command.Command) -> list[dict[str, Any]]:
    done = c.set_bootdev("network", persist=False)
    return [done, c.get_bootdev()]


OPERATIONS: dict[str, Callable[[command.Command], Any]] = {
    "get power": lambda c: c.get_power(),
    "set power on": lambda c: c.set_power("on", wait=False),
    "set power off": lambda c: c.set_power("off", wait=False),
    "set power reset": lambda c: c.set_power("reset", wait=False),
    "set boot device": _set_network_once,
}


def run(request: dict[str, Any]) -> dict[str, Any]:
    op = OPERATIONS[request["op"]]
    try:
        conn = command.Command(
            bmc=request["address"],
            userid=request["username"],
            password=request["password"],
            port=int(request["port"]),
        )
        try:
            return {"ok": op(conn)}
        finally:
            # The BMC holds few sessions; leave none behind for it to time out.
            with contextlib.suppress(IpmiException, OSError):
                conn.ipmi_session.logout()
    except (IpmiException, OSError) as e:
        # pyghmi raises IpmiException(None) when its logon got no answer at all
        text = str(e) if e.args and e.args[0] is not None else "timeout"
        return {"error": text, "os_error": isinstance(e, OSError)}


def main() -> int:
    answer = run(json.load(sys.stdin))
    json.dump(answer, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
