"""Canonical forms of machine identity, and the one list of junk values.

Applied once at every edge (API writes, imports, what iPXE sends, DHCP lease events),
so everything behind the edge compares plain strings.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from ipaddress import IPv4Address, IPv4Network

from bootbrain.errors import IdentityError
from bootbrain.vocabulary import HOSTNAME_RE

__all__ = [
    "JUNK_SERIALS",
    "JUNK_UUIDS",
    "IdentityError",
    "boot_mac",
    "canonical_hostname",
    "canonical_mac",
    "canonical_uuid",
    "check_address_in",
    "is_junk_mac",
    "is_junk_serial",
    "is_junk_uuid",
    "serial_key",
    "uuid_key",
]

_HEX_MAC = re.compile(r"[0-9a-f]{12}")
_MAC_SEPARATED = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
_MAC_DOTTED = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")

#: UUIDs firmware reports when nobody set one. All-zero and all-F are caught by
#: pattern; these are the well-known placeholders seen in the field.
JUNK_UUIDS = frozenset(
    {
        "03000200-0400-0500-0006-000700080009",  # AMI/Supermicro boards
        "00020003-0004-0005-0006-000700080009",  # the same, byte-swapped
        "4c4c4544-0000-1010-8000-000000000000",  # Dell board without service tag
        "12345678-1234-5678-90ab-cddeefaabbcc",
    }
)

#: Serials (and board serials, asset tags) that say "nobody filled this in".
#: Compared case-insensitively after trimming.
JUNK_SERIALS = frozenset(
    {
        "",
        "0",
        "00000000",
        "0000000000",
        "0123456789",
        "1234567890",
        "123456789",
        "none",
        "n/a",
        "na",
        "null",
        "not specified",
        "not applicable",
        "not available",
        "to be filled by o.e.m.",
        "to be filled by oem",
        "default string",
        "system serial number",
        "chassis serial number",
        "base board serial number",
        "serial number",
        "invalid",
        "unknown",
        "o.e.m.",
        "oem",
        "xxxxxxxxxx",
        "..................",
    }
)


def canonical_mac(value: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` from ``AA-BB-…``, ``aabb…``, ``aabb.ccdd.eeff`` or ``aa:bb:…``."""
    v = value.strip().lower()
    if _MAC_SEPARATED.fullmatch(v) or _MAC_DOTTED.fullmatch(v):
        v = re.sub(r"[:.-]", "", v)
    if not _HEX_MAC.fullmatch(v):
        raise IdentityError(f"not a MAC address: {value!r}")
    return ":".join(v[i : i + 2] for i in range(0, 12, 2))


def is_junk_mac(mac: str) -> bool:
    """All-zero, broadcast, or a group (multicast) address: never one NIC's own.

    ``mac`` is canonical. The group bit is the lowest bit of the first octet; a NIC's
    burnt-in or locally administered address always has it clear.
    """
    return mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff") or int(mac[:2], 16) & 1 == 1


def boot_mac(value: str) -> str:
    """The canonical MAC, if it can identify one machine's NIC (not junk)."""
    mac = canonical_mac(value)
    if is_junk_mac(mac):
        raise IdentityError(
            f"{mac} is not one NIC's address (all-zero, broadcast or multicast)"
        )
    return mac


def canonical_uuid(value: str) -> str:
    """Lowercase hyphenated, in the byte order iPXE's ``${uuid}`` and Linux report."""
    v = value.strip()
    if not v or len(v) > 45:
        raise IdentityError(f"not a UUID: {value!r}")
    try:
        return str(uuidlib.UUID(v))
    except ValueError:
        raise IdentityError(f"not a UUID: {value!r}") from None


def is_junk_uuid(value: str | None) -> bool:
    if not value:
        return True
    hexdigits = value.replace("-", "")
    return (len(set(hexdigits)) == 1 and hexdigits[0] in "0f") or value in JUNK_UUIDS


def is_junk_serial(value: str | None) -> bool:
    if value is None:
        return True
    v = value.strip().lower()
    return v in JUNK_SERIALS or (len(set(v)) == 1 and v[0] in "0fx. -")


def uuid_key(value: str | None) -> str | None:
    return None if value is None or is_junk_uuid(value) else value


def serial_key(value: str | None) -> str | None:
    return None if value is None or is_junk_serial(value) else value.strip()


def canonical_hostname(value: str) -> str:
    """One RFC 1123 label, lowercased."""
    v = value.strip().lower()
    if not HOSTNAME_RE.fullmatch(v):
        raise IdentityError(
            "a hostname is one label of 1-63 letters, digits and hyphens, "
            "not starting or ending with a hyphen"
        )
    return v


def check_address_in(address: str, cidr: str) -> IPv4Address:
    """The address as an IPv4Address, if it is a usable host address of the network."""
    net = IPv4Network(cidr)
    try:
        ip = IPv4Address(address)
    except ValueError:
        raise IdentityError(f"not an IPv4 address: {address!r}") from None
    if ip not in net:
        raise IdentityError(f"{ip} is outside {net}")
    if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        raise IdentityError(f"{ip} is the network or broadcast address of {net}")
    return ip
