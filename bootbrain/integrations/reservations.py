"""What the DHCP integrations share: re-validating the inventory's reservations, and
atomic file writes.

The inventory validates every reservation when it is written; the integrations check
again, because a rendered DHCP configuration must never contain a value that did not
pass validation, whatever path it came by.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from bootbrain.errors import IdentityError, ReservationError
from bootbrain.identity import canonical_hostname, canonical_mac
from bootbrain.inventory import Reservation

__all__ = [
    "Reservation",
    "ReservationError",
    "atomic_write",
    "check_reservation",
    "check_reservations",
    "in_subnet",
]

log = logging.getLogger(__name__)


def check_reservation(r: Reservation) -> Reservation:
    """The reservation itself if every field is already in canonical, valid form."""
    if type(r.machine_id) is not int or r.machine_id <= 0:
        raise ReservationError(f"machine id must be a positive integer, not {r.machine_id!r}")
    try:
        mac = canonical_mac(r.mac)
    except (IdentityError, AttributeError):
        raise ReservationError(f"machine {r.machine_id}: not a MAC address: {r.mac!r}") from None
    if mac != r.mac:
        raise ReservationError(f"machine {r.machine_id}: MAC {r.mac!r} is not canonical")
    if not isinstance(r.ip, str):
        raise ReservationError(f"machine {r.machine_id}: not an IPv4 address: {r.ip!r}")
    try:
        ip = IPv4Address(r.ip)
    except ValueError:
        raise ReservationError(f"machine {r.machine_id}: not an IPv4 address: {r.ip!r}") from None
    if str(ip) != r.ip or ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise ReservationError(f"machine {r.machine_id}: unusable address {r.ip!r}")
    if r.hostname is not None:
        try:
            ok = isinstance(r.hostname, str) and canonical_hostname(r.hostname) == r.hostname
        except IdentityError:
            ok = False
        if not ok:
            raise ReservationError(f"machine {r.machine_id}: invalid hostname {r.hostname!r}")
    return r


def check_reservations(reservations: Iterable[Reservation]) -> list[Reservation]:
    """Every reservation checked, sorted by machine id; duplicates of any key refused.

    Two reservations for one MAC or one address would make the DHCP server pick one
    arbitrarily (dnsmasq) or refuse the whole configuration (Kea).
    """
    checked = sorted((check_reservation(r) for r in reservations), key=lambda r: r.machine_id)
    for field in ("machine_id", "mac", "ip"):
        seen: dict[object, int] = {}
        for r in checked:
            key = getattr(r, field)
            if key in seen:
                raise ReservationError(
                    f"{field.replace('_', ' ')} {key} is reserved for machines "
                    f"{seen[key]} and {r.machine_id}"
                )
            seen[key] = r.machine_id
    return checked


def in_subnet(
    reservations: Sequence[Reservation], subnet: IPv4Network, *, exclude: Iterable[IPv4Address] = ()
) -> list[Reservation]:
    """The reservations whose address is a usable host address of ``subnet``.

    Others are logged and left out: one stray reservation must not take the DHCP
    server's whole configuration down with it.
    """
    excluded = set(exclude)
    kept = []
    for r in reservations:
        ip = IPv4Address(r.ip)
        usable = ip in subnet and (
            subnet.prefixlen >= 31 or ip not in (subnet.network_address, subnet.broadcast_address)
        )
        if not usable or ip in excluded:
            log.warning(
                "reservation for machine %s (%s -> %s) is not usable in %s; left out",
                r.machine_id,
                r.mac,
                r.ip,
                subnet,
            )
            continue
        kept.append(r)
    return kept


def atomic_write(path: Path, data: str | bytes, *, mode: int | None = None) -> bool:
    """Replace ``path`` with ``data`` by writing a dotfile beside it and renaming it.

    Readers (dnsmasq's inotify watch, Kea's config-reload) see the old file or the new
    one, never half of one; dnsmasq ignores dotfiles in a hosts directory. Without
    ``mode`` an existing file's mode and group are kept (Kea's configuration is usually
    ``root:_kea 0640``), otherwise 0644; a symlink is followed and its target replaced.
    Returns False, writing nothing, when the file already holds exactly ``data``.
    """
    raw = data.encode() if isinstance(data, str) else data
    # A symlink (/etc/kea/kea-dhcp4.conf -> a file bootbrain owns) stays a symlink.
    path = path.resolve()
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    if st is not None:
        try:
            if path.read_bytes() == raw:
                return False
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(mode if mode is not None else (st.st_mode & 0o7777 if st else 0o644))
        if st is not None and mode is None:
            with suppress(PermissionError):
                os.chown(tmp, -1, st.st_gid)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
