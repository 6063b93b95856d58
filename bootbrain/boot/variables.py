"""What operator templates see: the template variables, and the static network values
behind the ``IPXE_BOOT_*`` settings (README "Templates" lists both for operators).

:func:`static_values` is the one source of ``IPXE_BOOT_LINUX_IP_CONFIG``, the
``ip_config`` template variables and the booted OS's network-config
(:mod:`bootbrain.boot.documents`), so they cannot disagree; it re-validates the stored
assignment, so a value that slipped past the API is a
:class:`~bootbrain.errors.RenderError`, never a shifted ``ip=`` field. The render
context (base URL, token URLs) is re-checked too: it reaches script text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from bootbrain.errors import RenderError
from bootbrain.vocabulary import (
    DOMAIN_RE,
    HOSTNAME_RE,
    INTERFACE_RE,
    LOCAL_METHODS,
    VARIABLE_NAME_RE,
    VARIABLE_VALUE_RE,
)

from .sandbox import MachineText
from .types import MachineView, RenderContext, StaticNet

__all__ = [
    "BASE_URL_RE",
    "BOOT_ID_RE",
    "STATIC_SETTINGS",
    "TOKEN_URL_RE",
    "static_values",
    "template_variables",
]


#: Base URLs this brain is reached at (settings, or a request's Host header).
BASE_URL_RE: Final = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%+-]+)*"
)

BOOT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")

#: Words of a token URL (done/metadata): a base URL plus a path of safe characters.
TOKEN_URL_RE: Final = re.compile(BASE_URL_RE.pattern + r"(?:/[A-Za-z0-9._~%+-]*)*")


@dataclass(frozen=True)
class _MachineVars:
    id: int
    hostname: str | None
    state: str
    tags: tuple[str, ...]
    uuid: str | None
    macs: tuple[str, ...]
    serial: MachineText | None
    manufacturer: MachineText | None
    product: MachineText | None
    asset_tag: MachineText | None


def _text(value: str | None) -> MachineText | None:
    return None if value is None else MachineText(value)


@lru_cache(maxsize=64)
def _prefix_netmask(prefix: int) -> tuple[ipaddress.IPv4Address, int]:
    """Netmask and prefix length of ``IPv4Network(f"{ip}/{prefix}", strict=False)``.

    They (and the error for a bad prefix) do not depend on the address when it is a
    valid one, as ``static_values``' is, so the network of 0.0.0.0 gives them.
    """
    network = ipaddress.IPv4Network(f"0.0.0.0/{prefix}", strict=False)
    return network.netmask, network.prefixlen


@lru_cache(maxsize=256)
def _ipv4_cached(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


@lru_cache(maxsize=256)
def _ip_cached(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _ipv4(value: str) -> ipaddress.IPv4Address:
    """``IPv4Address(value)``, remembered for strings (gateways, netmasks and DNS
    servers recur across a network's machines; errors are not remembered)."""
    return _ipv4_cached(value) if type(value) is str else ipaddress.IPv4Address(value)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip_address(value)``, remembered for strings like :func:`_ipv4`."""
    return _ip_cached(value) if type(value) is str else ipaddress.ip_address(value)


def static_values(static: StaticNet, machine: MachineView | None) -> dict[str, str]:
    """The static assignment as strings, re-validated: an invalid one is a RenderError.

    The one source of ``IPXE_BOOT_*``, the ``ip_config`` template variables and the
    booted OS's network-config (:mod:`bootbrain.boot.documents`), so they cannot disagree.
    """
    try:
        ip = ipaddress.IPv4Address(static.ip)
        network_mask, network_prefix = _prefix_netmask(int(static.prefix))
        netmask = _ipv4(static.netmask)
        if netmask != network_mask:
            raise ValueError("netmask does not match prefix")
        gateway = str(_ipv4(static.gateway)) if static.gateway else ""
        # ip= is colon-separated, so only IPv4 servers can go in it; IPv6 ones are
        # left out of every variable rather than shifting the fields.
        servers = [_ip(d) for d in static.dns]
        dns = [str(d) for d in servers if d.version == 4]
    except (ValueError, TypeError) as e:
        raise RenderError(f"invalid static assignment: {e}") from None
    hostname = static.hostname or (machine.hostname if machine else None) or ""
    if hostname and not HOSTNAME_RE.fullmatch(hostname):
        raise RenderError("invalid static assignment: hostname")
    if not INTERFACE_RE.fullmatch(static.interface):
        raise RenderError("invalid static assignment: interface")
    domain = static.domain or ""
    if domain and not DOMAIN_RE.fullmatch(domain):
        raise RenderError("invalid static assignment: domain")
    dns0 = dns[0] if dns else ""
    dns1 = dns[1] if len(dns) > 1 else ""
    fields = [str(ip), "", gateway, str(netmask), hostname, static.interface, "none", dns0, dns1]
    while fields[-1] == "" and len(fields) > 7:
        fields.pop()
    return {
        "ip_config": "ip=" + ":".join(fields),
        "ip": str(ip),
        "netmask": str(netmask),
        "prefix": str(network_prefix),
        "gateway": gateway,
        "hostname": hostname,
        "interface": static.interface,
        "dns": dns0,
        "dns2": dns1,
        "domain": domain,
    }


STATIC_SETTINGS: Final = (
    ("IPXE_BOOT_LINUX_IP_CONFIG", "ip_config"),
    ("IPXE_BOOT_IP", "ip"),
    ("IPXE_BOOT_NETMASK", "netmask"),
    ("IPXE_BOOT_PREFIX", "prefix"),
    ("IPXE_BOOT_GATEWAY", "gateway"),
    ("IPXE_BOOT_HOSTNAME", "hostname"),
    ("IPXE_BOOT_INTERFACE", "interface"),
    ("IPXE_BOOT_DNS", "dns"),
    ("IPXE_BOOT_DNS2", "dns2"),
    ("IPXE_BOOT_DOMAIN", "domain"),
)


def _check_context(ctx: RenderContext) -> None:
    for name, value, pattern in (
        ("base_url", ctx.base_url, BASE_URL_RE),
        ("assets_url", ctx.assets_url, BASE_URL_RE),
        ("boot_id", ctx.boot_id, BOOT_ID_RE),
        ("done_url", ctx.done_url, TOKEN_URL_RE),
        ("metadata_url", ctx.metadata_url, TOKEN_URL_RE),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise RenderError(f"unsafe {name} in the render context")
    if ctx.local_method not in LOCAL_METHODS:
        raise RenderError("unknown local boot method in the render context")


def template_variables(
    machine: MachineView | None,
    ctx: RenderContext,
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The variables operator templates see (README "Templates" lists them);
    ``variables``: the merged template variables (:mod:`bootbrain.boot.groups`), as
    ``vars``. They are re-checked here, since they reach script text unquoted."""
    _check_context(ctx)
    named = dict(variables or {})
    for name, value in named.items():
        if not VARIABLE_NAME_RE.fullmatch(name) or not VARIABLE_VALUE_RE.fullmatch(value):
            raise RenderError(f"unsafe template variable {name!r}")
    static = dict.fromkeys(
        ("ip_config", "ip", "netmask", "prefix", "gateway", "interface", "dns", "dns2", "domain"),
        "",
    )
    static["hostname"] = (machine.hostname if machine else None) or ""
    if machine is not None and machine.static is not None:
        static.update(static_values(machine.static, machine))
    machine_vars = None
    if machine is not None:
        machine_vars = _MachineVars(
            id=machine.id,
            hostname=machine.hostname,
            state=machine.state,
            tags=tuple(machine.tags),
            uuid=machine.uuid,
            macs=tuple(machine.macs),
            serial=_text(machine.serial),
            manufacturer=_text(machine.manufacturer),
            product=_text(machine.product),
            asset_tag=_text(machine.asset_tag),
        )
    return {
        **static,
        "machine": machine_vars,
        "base_url": ctx.base_url,
        "assets": ctx.assets_url,
        "boot_id": ctx.boot_id or "",
        "done_url": ctx.done_url or "",
        "metadata_url": ctx.metadata_url or "",
        "vars": named,
    }
