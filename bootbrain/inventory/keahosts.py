"""Kea's own ``hosts`` table (Kea's PostgreSQL host backend), kept equal to the
inventory's reservations for one Kea subnet.

The table belongs to Kea (``kea-admin db-init pgsql`` creates it, in a database of
its own), not to bootbrain's schema; its SQL lives here because the inventory is
where bootbrain's SQL lives, and this is the inventory's reservations as Kea stores
them. Only rows of hardware-address type in the configured subnet are bootbrain's:
anything else an operator keeps in the table is left alone.

Each sync is one transaction under an advisory lock, so Kea's readers see the old
set or the new one, and several reconcilers (one per boot host) writing the same
state one after the other find nothing left to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address
from typing import Final

from sqlalchemy import Connection, Engine, Row, create_engine, text

#: Kea's ``host_identifier_type`` for a hardware address.
HW_ADDRESS: Final = 0
#: The advisory lock's first key ("keah"); the second is the subnet id.
_LOCK: Final = 0x6B656168


@dataclass(frozen=True)
class KeaHost:
    """One reservation as a row of Kea's ``hosts``: MAC, IPv4 address, hostname."""

    mac: str
    ip: str
    hostname: str | None


@dataclass
class HostsChange:
    """What a sync did to the table, by MAC."""

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


def engine_url(url: str) -> str:
    """The SQLAlchemy form of a libpq URL (psycopg 3, the driver bootbrain ships)."""
    scheme, sep, rest = url.partition("://")
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        return f"postgresql+psycopg{sep}{rest}"
    return url


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    return create_engine(engine_url(url), pool_pre_ping=True, pool_size=1, max_overflow=1)


def dispose(url: str) -> None:
    """Close the pooled connections to this hosts database (tests drop it afterwards)."""
    _engine(url).dispose()


def _mac(identifier: bytes) -> str:
    return bytes(identifier).hex(":")


def _ours(conn: Connection, subnet_id: int) -> Sequence[Row[int, bytes, int | None, str | None]]:
    """bootbrain's rows of Kea's table for this subnet (hardware-address reservations):
    host_id, dhcp_identifier, ipv4_address, hostname."""
    return conn.execute(
        text(
            "SELECT host_id, dhcp_identifier, ipv4_address, hostname FROM hosts "
            "WHERE dhcp_identifier_type = :t AND dhcp4_subnet_id = :s"
        ),
        {"t": HW_ADDRESS, "s": subnet_id},
    ).all()


def kea_hosts(url: str, subnet_id: int) -> dict[str, KeaHost]:
    """bootbrain's rows of Kea's table for this subnet, by MAC."""
    with _engine(url).connect() as conn:
        rows = _ours(conn, subnet_id)
    return {
        _mac(r[1]): KeaHost(_mac(r[1]), str(IPv4Address(r[2])) if r[2] is not None else "", r[3])
        for r in rows
    }


def sync_kea_hosts(url: str, subnet_id: int, wanted: Sequence[KeaHost]) -> HostsChange:
    """Make bootbrain's rows for this subnet exactly ``wanted``, changing only what differs.

    A row whose address changes is deleted and inserted rather than updated: Kea's
    unique (address, subnet) key is checked per statement, so two machines swapping
    addresses could not be updated one at a time.
    """
    want = {h.mac.lower(): h for h in wanted}
    change = HostsChange()
    with _engine(url).begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :s)"), {"a": _LOCK, "s": subnet_id})
        rows = _ours(conn, subnet_id)
        current = {_mac(r[1]): r for r in rows}
        gone: list[int] = []
        for mac, row in current.items():
            host = want.get(mac)
            if host is None or row[2] != int(IPv4Address(host.ip)):
                gone.append(row[0])
                change.deleted.append(mac)
            elif row[3] != host.hostname:
                conn.execute(
                    text("UPDATE hosts SET hostname = :h WHERE host_id = :id"),
                    {"h": host.hostname, "id": row[0]},
                )
                change.updated.append(mac)
        if gone:
            conn.execute(text("DELETE FROM hosts WHERE host_id = ANY(:ids)"), {"ids": gone})
        fresh = {m: h for m, h in want.items() if m not in current or m in change.deleted}
        if fresh:
            conn.execute(
                text(
                    "INSERT INTO hosts (dhcp_identifier, dhcp_identifier_type, "
                    "dhcp4_subnet_id, ipv4_address, hostname) VALUES (:mac, :t, :s, :ip, :h)"
                ),
                [
                    {
                        "mac": bytes.fromhex(h.mac.replace(":", "")),
                        "t": HW_ADDRESS,
                        "s": subnet_id,
                        "ip": int(IPv4Address(h.ip)),
                        "h": h.hostname,
                    }
                    for h in fresh.values()
                ],
            )
        # A deleted-then-inserted row is a change of address: report it as an update.
        for mac in fresh:
            if mac in change.deleted:
                change.deleted.remove(mac)
                change.updated.append(mac)
            else:
                change.inserted.append(mac)
    return change
