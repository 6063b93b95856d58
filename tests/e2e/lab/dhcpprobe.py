"""Ask the DHCP servers on a segment what they would give a MAC: one DHCPDISCOVER,
every DHCPOFFER that comes back.

Nothing more than a DISCOVER is sent, so no server commits a lease and no lease hook
runs: probing a reserved MAC leaves bootbrain's records alone. The broadcast flag is
set, so servers broadcast their offers and the probe needs no address of its own and
no MAC of the one it asks for. Run it inside a namespace (``Netns.call``) that has
``iface`` on the segment, e.g. a peer of the lab bridge.
"""

from __future__ import annotations

import secrets
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

_MAGIC = b"\x63\x82\x53\x63"
_DISCOVER, _OFFER = 1, 2


@dataclass(frozen=True)
class Offer:
    """One DHCPOFFER: the address offered, the server's identifier (option 54) and the
    host name (option 12), if any."""

    address: str
    server: str
    hostname: str | None


def _discover(mac: bytes, xid: int) -> bytes:
    fixed = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 0, xid, 0, 0x8000,  # BOOTREQUEST, Ethernet, broadcast flag
        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"), b"", b"",
    )  # fmt: skip
    # 53: DISCOVER; 55: the options asked for (netmask, router, host name, server id).
    options = bytes([53, 1, _DISCOVER, 55, 4, 1, 3, 12, 54, 255])
    return fixed + _MAGIC + options


def _options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        length = data[i + 1]
        out[code] = data[i + 2 : i + 2 + length]
        i += 2 + length
    return out


def discover(
    mac: str, *, iface: str = "eth0", wait: float = 0.5, stop_after: int | None = None
) -> list[Offer]:
    """Broadcast one DHCPDISCOVER for ``mac`` on ``iface``; the offers received
    within ``wait`` seconds (from every server that answered), or the first
    ``stop_after`` of them as soon as they are in."""
    hw = bytes.fromhex(mac.replace(":", ""))
    xid = secrets.randbits(32)
    offers: list[Offer] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.bind(("", 68))
        sock.sendto(_discover(hw, xid), ("255.255.255.255", 67))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0 and len(offers) != stop_after:
            sock.settimeout(left)
            try:
                data = sock.recv(4096)
            except TimeoutError:
                break
            if len(data) < 240 or data[0] != 2 or data[236:240] != _MAGIC:
                continue
            (got_xid,) = struct.unpack("!I", data[4:8])
            if got_xid != xid or data[28:34] != hw:
                continue
            opts = _options(data[240:])
            if opts.get(53) != bytes([_OFFER]) or 54 not in opts:
                continue
            name = opts.get(12)
            offers.append(
                Offer(
                    address=str(IPv4Address(data[16:20])),
                    server=str(IPv4Address(opts[54])),
                    hostname=name.decode(errors="replace") if name is not None else None,
                )
            )
    return offers
