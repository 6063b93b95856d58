"""ISC Kea: the ``Dhcp4`` document ``bootbrain kea config`` renders, and live reservations.

Kea has no TFTP server: PXE ROMs are sent to ``tftp_server`` (dnsmasq with
``port=0`` and ``enable-tftp``, or tftpd-hpa) for the iPXE binary, and iPXE itself is
recognised by ``substring(option[77].hex,0,4) == 'iPXE'`` and given
``<base url>/boot.ipxe``.

Reservations are kept current without restarting Kea. Kea 2.2 (Debian 12) has no
host commands in its open-source hooks, so :func:`sync_reservations` has the running
server check the new document (``config-test``), replaces the configuration file
atomically and sends ``config-reload`` over the control socket (tens of
milliseconds). Where ``list-commands`` shows ``reservation-add`` (libdhcp_host_cmds,
open source since Kea 2.7), the difference is applied with ``reservation-add`` /
``reservation-del`` against the configuration's own hosts instead, and the file is
still rewritten so that a restart gives the same answer.

In ``host-database`` mode (a fleet) the document names Kea's PostgreSQL host backend
instead of listing reservations, and :func:`sync_reservations` makes Kea's ``hosts``
table equal to the inventory in one transaction: Kea looks hosts up per packet, so
every Kea reading that table answers with the change as soon as it commits, and
nothing is reloaded. With ``kea.ha`` the document also loads ``libdhcp_ha.so`` for a
hot-standby pair whose peers talk through their ``kea-ctrl-agent``.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bootbrain.config import KeaSettings, Settings
from bootbrain.errors import KeaCommandError, KeaConfigError, KeaError, KeaUnavailableError
from bootbrain.inventory import KeaHost, Reservation, sync_kea_hosts
from bootbrain.vocabulary import INTERFACE_RE

from .dnsmasq import boot_url, http_boot_url
from .reservations import (
    atomic_write,
    check_reservations,
    in_subnet,
)

log = logging.getLogger(__name__)

#: Names of our client classes, in evaluation order (``member('ipxe')`` needs ipxe first).
CLASS_IPXE = "bootbrain-ipxe"
CLASS_BIOS = "bootbrain-pxe-bios"
CLASS_EFI64 = "bootbrain-pxe-efi64"
CLASS_ARM64 = "bootbrain-pxe-arm64"
CLASS_HTTP = "bootbrain-http-efi64"
IPXE_TEST = "substring(option[77].hex,0,4) == 'iPXE'"
_NOT_IPXE = f"not member('{CLASS_IPXE}')"


@dataclass
class SyncResult:
    """How :func:`sync_reservations` brought Kea up to date.

    ``method``: ``host-commands``, ``config-reload``, or ``file-only`` (Kea was not
    running; it reads the new file when it starts).
    """

    method: str
    changed: bool
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- configuration -------------------------------------------------------------------


def render_config(
    settings: Settings, base_url: str, reservations: Sequence[Reservation]
) -> dict[str, Any]:
    """The complete ``{"Dhcp4": {...}}`` document for these settings and reservations."""
    k = settings.kea
    if not INTERFACE_RE.fullmatch(k.interface):
        raise KeaConfigError(f"interface {k.interface!r} is not an interface name")
    if k.subnet is None:
        raise KeaConfigError("kea.subnet is not set")
    subnet = k.subnet
    for name in ("pool_start", "pool_end", "server_ip", "tftp_server", "router"):
        value = getattr(k, name)
        if value is not None and value not in subnet and name != "tftp_server":
            raise KeaConfigError(f"kea.{name} {value} is outside {subnet}")
    if (k.pool_start is None) != (k.pool_end is None):
        raise KeaConfigError("set both kea.pool_start and kea.pool_end, or neither")
    if k.pool_start is not None and k.pool_end is not None and k.pool_start > k.pool_end:
        raise KeaConfigError(f"pool {k.pool_start} - {k.pool_end} is backwards")
    tftp_server = k.tftp_server or k.server_ip
    if tftp_server is None:
        raise KeaConfigError("kea needs tftp_server (or server_ip) for PXE ROMs")

    dhcp4: dict[str, Any] = {
        "interfaces-config": {"interfaces": [k.interface]},
        "control-socket": {"socket-type": "unix", "socket-name": str(k.control_socket)},
        "lease-database": {
            "type": "memfile",
            "persist": True,
            "name": str(k.lease_file),
            "lfc-interval": 3600,
        },
        "valid-lifetime": k.valid_lifetime,
        # Reservations are by MAC only, so Kea makes one host lookup per packet.
        "host-reservation-identifiers": ["hw-address"],
        "option-def": [
            {
                "name": "ipxe-encap-opts",
                "code": 175,
                "space": "dhcp4",
                "type": "empty",
                "encapsulate": "ipxe",
            },
            {"name": "no-pxedhcp", "code": 176, "space": "ipxe", "type": "uint8"},
        ],
        "client-classes": _client_classes(k, base_url, str(tftp_server)),
        "subnet4": [_subnet(k, subnet, reservations)],
        "hooks-libraries": _hooks(k),
        "loggers": [
            {
                "name": "kea-dhcp4",
                "output_options": [{"output": k.log_output}],
                "severity": "INFO",
            }
        ],
    }
    if k.mode == "host-database":
        dhcp4["hosts-database"] = hosts_database(k.hosts_database_url)
    return {"Dhcp4": dhcp4}


def hosts_database(url: str) -> dict[str, Any]:
    """Kea's ``hosts-database`` entry for a libpq URL.

    Kea keeps serving its pool while the database is away (``serve-retry-continue``)
    and reconnects on its own; reserved machines get pool addresses meanwhile.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    entry: dict[str, Any] = {"type": "postgresql", "name": unquote(parts.path.lstrip("/"))}
    if not entry["name"]:
        raise KeaConfigError("kea.hosts_database_url names no database")
    host = query.get("host", [parts.hostname or ""])[0]
    if host:
        entry["host"] = host
    port = query.get("port", [str(parts.port or "")])[0]
    if port:
        entry["port"] = int(port)
    if parts.username:
        entry["user"] = unquote(parts.username)
    if parts.password:
        entry["password"] = unquote(parts.password)
    entry.update(
        {
            "connect-timeout": 5,
            "max-reconnect-tries": 1_000_000,
            "reconnect-wait-time": 2000,
            "on-fail": "serve-retry-continue",
        }
    )
    return entry


def _client_classes(k: KeaSettings, base_url: str, tftp_server: str) -> list[dict[str, Any]]:
    http = http_boot_url(k.http_boot_url, k.efi_binary, base_url)
    classes: list[dict[str, Any]] = [
        {
            # iPXE (any build, any first stage): the HTTP bootstrap script, and
            # "no-pxedhcp" so it does not wait 2 s for proxyDHCP offers.
            "name": CLASS_IPXE,
            "test": IPXE_TEST,
            "boot-file-name": boot_url(base_url),
            "option-data": [
                {"name": "ipxe-encap-opts", "space": "dhcp4", "always-send": True},
                {"name": "no-pxedhcp", "space": "ipxe", "data": "1"},
            ],
        },
        {
            "name": CLASS_BIOS,
            "test": f"{_NOT_IPXE} and option[93].hex == 0x0000",
            "next-server": tftp_server,
            "boot-file-name": k.bios_binary,
        },
        {
            "name": CLASS_EFI64,
            "test": f"{_NOT_IPXE} and (option[93].hex == 0x0007 or option[93].hex == 0x0009)",
            "next-server": tftp_server,
            "boot-file-name": k.efi_binary,
        },
    ]
    if k.arm64_binary:
        classes.append(
            {
                "name": CLASS_ARM64,
                "test": f"{_NOT_IPXE} and option[93].hex == 0x000b",
                "next-server": tftp_server,
                "boot-file-name": k.arm64_binary,
            }
        )
    classes.append(
        {
            # UEFI HTTP boot downloads an EFI binary and wants vendor class HTTPClient back.
            "name": CLASS_HTTP,
            "test": f"{_NOT_IPXE} and option[93].hex == 0x0010",
            "boot-file-name": http,
            "option-data": [
                {"name": "vendor-class-identifier", "data": "HTTPClient", "always-send": True}
            ],
        }
    )
    return classes


def _subnet(
    k: KeaSettings, subnet: IPv4Network, reservations: Sequence[Reservation]
) -> dict[str, Any]:
    kept = in_subnet(
        check_reservations(reservations),
        subnet,
        exclude=[a for a in (k.server_ip, k.router) if a is not None],
    )
    entry: dict[str, Any] = {"id": k.subnet_id, "subnet": str(subnet)}
    if k.pool_start is not None:
        entry["pools"] = [{"pool": f"{k.pool_start} - {k.pool_end}"}]
    options = []
    if k.router is not None:
        options.append({"name": "routers", "data": str(k.router)})
    if k.dns_servers:
        options.append(
            {"name": "domain-name-servers", "data": ", ".join(str(a) for a in k.dns_servers)}
        )
    if options:
        entry["option-data"] = options
    if k.mode == "config-reload":
        entry["reservations"] = [reservation_entry(r) for r in kept]
    return entry


def wanted_hosts(k: KeaSettings, reservations: Sequence[Reservation]) -> list[KeaHost]:
    """The reservations Kea should hold: checked and inside the subnet, as in the file."""
    assert k.subnet is not None
    kept = in_subnet(
        check_reservations(reservations),
        k.subnet,
        exclude=[a for a in (k.server_ip, k.router) if a is not None],
    )
    return [KeaHost(r.mac.lower(), r.ip, r.hostname or None) for r in kept]


def reservation_entry(r: Reservation) -> dict[str, Any]:
    entry: dict[str, Any] = {"hw-address": r.mac, "ip-address": r.ip}
    if r.hostname:
        entry["hostname"] = r.hostname
    return entry


def _hooks(k: KeaSettings) -> list[dict[str, Any]]:
    libdir = k.hook_library_dir
    hooks: list[dict[str, Any]] = [{"library": str(libdir / "libdhcp_lease_cmds.so")}]
    host_cmds = k.host_cmds
    if host_cmds is None:
        host_cmds = (libdir / "libdhcp_host_cmds.so").exists()
    if host_cmds:
        hooks.append({"library": str(libdir / "libdhcp_host_cmds.so")})
    if k.ha is not None:
        hooks.append({"library": str(libdir / "libdhcp_ha.so"), "parameters": _ha(k)})
    if k.hook_script is not None:
        hooks.append(
            {
                "library": str(libdir / "libdhcp_run_script.so"),
                # Asynchronous: Kea never waits for the script (it spools and returns).
                "parameters": {"name": str(k.hook_script), "sync": False},
            }
        )
    return hooks


def _ha(k: KeaSettings) -> dict[str, Any]:
    ha = k.ha
    assert ha is not None
    relationship = {
        "this-server-name": ha.this_server,
        "mode": "hot-standby",
        "heartbeat-delay": ha.heartbeat_delay,
        "max-response-delay": ha.max_response_delay,
        "max-ack-delay": ha.max_ack_delay,
        "max-unacked-clients": ha.max_unacked_clients,
        "peers": [
            {
                "name": p.name,
                "url": p.url if p.url.endswith("/") else p.url + "/",
                "role": p.role,
                "auto-failover": p.auto_failover,
            }
            for p in ha.peers
        ],
    }
    return {"high-availability": [relationship]}


def render_ctrl_agent(settings: Settings) -> dict[str, Any]:
    """The ``kea-ctrl-agent`` document of an HA member: it listens on this server's peer
    URL, where the partner's HA hook sends heartbeats and lease updates, and passes
    them to kea-dhcp4's control socket."""
    k = settings.kea
    if k.ha is None:
        raise KeaConfigError("kea.ha is not set: a control agent is only needed for HA")
    ha = k.ha
    me = next(p for p in ha.peers if p.name == ha.this_server)
    url = urlsplit(me.url)
    return {
        "Control-agent": {
            "http-host": url.hostname,
            "http-port": url.port or (443 if url.scheme == "https" else 80),
            "control-sockets": {
                "dhcp4": {"socket-type": "unix", "socket-name": str(k.control_socket)}
            },
            "loggers": [
                {
                    "name": "kea-ctrl-agent",
                    "output_options": [{"output": "stdout"}],
                    "severity": "INFO",
                }
            ],
        }
    }


def render_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def validate_config(
    document: Mapping[str, Any], kea_dhcp4: str = "kea-dhcp4", *, netns: str | None = None
) -> None:
    """``kea-dhcp4 -t`` on the document (it checks that the interface exists)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bootbrain-kea-") as f:
        f.write(render_json(document))
        f.flush()
        cmd = [kea_dhcp4, "-t", f.name]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise KeaConfigError((proc.stderr.strip() or proc.stdout.strip())[-2000:])


# --- the control socket --------------------------------------------------------------


def command(
    socket_path: Path | str,
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    timeout: float = 5.0,
    check: bool = True,
) -> dict[str, Any]:
    """Send one command on Kea's unix control socket and return its answer."""
    message: dict[str, Any] = {"command": name}
    if arguments is not None:
        message["arguments"] = arguments
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise KeaUnavailableError(str(exc)) from exc
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            raise KeaUnavailableError(f"kea control socket {socket_path}: {exc}") from exc
        try:
            sock.sendall(json.dumps(message).encode())
            answer = _read_answer(sock)
        except OSError as exc:
            raise KeaError(f"kea {name}: {exc}") from exc
    if isinstance(answer, list):  # the control agent's shape, one answer per server
        answer = answer[0] if answer else {}
    if not isinstance(answer, dict):
        raise KeaError(f"kea {name}: unexpected answer {answer!r:.200}")
    result = answer.get("result")
    if check and result != 0:
        raise KeaCommandError(
            name, result if isinstance(result, int) else -1, str(answer.get("text", ""))
        )
    return answer


def _read_answer(sock: socket.socket) -> Any:
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        # Kea closes the connection after answering; parse early anyway, in case a
        # proxy in between keeps it open.
        try:
            return json.loads(buf)
        except ValueError:
            continue
    try:
        return json.loads(buf)
    except ValueError as exc:
        raise KeaError(f"kea answered with something not JSON: {buf[:200]!r}") from exc


def list_commands(settings: Settings) -> list[str]:
    answer = command(
        settings.kea.control_socket, "list-commands", timeout=settings.kea.control_timeout
    )
    args = answer.get("arguments")
    return [str(c) for c in args] if isinstance(args, list) else []


def has_host_commands(settings: Settings) -> bool:
    """True if the running Kea offers ``reservation-add`` and ``reservation-del``."""
    cmds = set(list_commands(settings))
    return {"reservation-add", "reservation-del", "reservation-get-all"} <= cmds


def reload(settings: Settings) -> str:
    """Make the running Kea apply its configuration file; the method used.

    The file is first checked by the running server (``config-test``), so a bad file
    is refused while Kea keeps serving the old configuration. Returns
    ``"config-reload"``, or ``"not-running"`` when nothing answers on the socket.
    """
    k = settings.kea
    try:
        document = json.loads(k.config_path.read_text())
    except (OSError, ValueError) as exc:
        raise KeaError(f"cannot read {k.config_path}: {exc}") from exc
    try:
        command(k.control_socket, "config-test", document, timeout=k.control_timeout)
    except KeaUnavailableError:
        return "not-running"
    command(k.control_socket, "config-reload", timeout=k.control_timeout)
    return "config-reload"


def sync_reservations(
    settings: Settings, base_url: str, reservations: Sequence[Reservation]
) -> SyncResult:
    """Write the configuration with these reservations and make the running Kea use it.

    With host commands the running server is changed entry by entry; otherwise the
    new document is checked by the running server (``config-test``) before it
    replaces the file, then ``config-reload``. A refused document leaves both the file
    and the running server as they were and raises :class:`KeaCommandError`.
    """
    k = settings.kea
    started = time.monotonic()
    if k.mode == "host-database":
        return sync_host_database(settings, reservations)
    document = render_config(settings, base_url, reservations)
    text = render_json(document)
    try:
        host_cmds = has_host_commands(settings)
    except KeaUnavailableError:
        changed = atomic_write(k.config_path, text)
        return SyncResult("file-only", changed, seconds=time.monotonic() - started)
    if host_cmds:
        try:
            result = _apply_host_commands(settings, document)
        except KeaCommandError as exc:
            # e.g. a host_cmds that can only change a hosts database: fall back.
            log.warning("host commands failed (%s); falling back to config-reload", exc)
        else:
            result.changed = atomic_write(k.config_path, text) or bool(
                result.added or result.deleted
            )
            result.seconds = time.monotonic() - started
            return result
    command(k.control_socket, "config-test", document, timeout=k.control_timeout)
    changed = atomic_write(k.config_path, text)
    command(k.control_socket, "config-reload", timeout=k.control_timeout)
    return SyncResult("config-reload", changed, seconds=time.monotonic() - started)


def _apply_host_commands(settings: Settings, document: Mapping[str, Any]) -> SyncResult:
    k = settings.kea
    subnet_id = k.subnet_id
    wanted = {h["hw-address"]: h for h in document["Dhcp4"]["subnet4"][0]["reservations"]}
    # "primary" = the hosts from the JSON configuration, which is where ours live.
    answer = command(
        k.control_socket,
        "reservation-get-all",
        {"subnet-id": subnet_id, "operation-target": "primary"},
        timeout=k.control_timeout,
    )
    hosts = (answer.get("arguments") or {}).get("hosts") or []
    current = {str(h.get("hw-address", "")).lower(): h for h in hosts if isinstance(h, dict)}
    result = SyncResult("host-commands", False)
    for mac, host in current.items():
        want = wanted.get(mac)
        if want is None or _differs(host, want):
            command(
                k.control_socket,
                "reservation-del",
                {
                    "subnet-id": subnet_id,
                    "identifier-type": "hw-address",
                    "identifier": mac,
                    "operation-target": "primary",
                },
                timeout=k.control_timeout,
            )
            result.deleted.append(mac)
    for mac, want in wanted.items():
        if mac not in current or mac in result.deleted:
            command(
                k.control_socket,
                "reservation-add",
                {"reservation": {**want, "subnet-id": subnet_id}, "operation-target": "primary"},
                timeout=k.control_timeout,
            )
            result.added.append(mac)
    return result


def _differs(host: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    return host.get("ip-address") != want.get("ip-address") or (
        host.get("hostname") or None
    ) != want.get("hostname")


def sync_host_database(settings: Settings, reservations: Sequence[Reservation]) -> SyncResult:
    """Make Kea's ``hosts`` table hold these reservations; Kea reads it per packet."""
    k = settings.kea
    if k.subnet is None:
        raise KeaConfigError("kea.subnet is not set")
    started = time.monotonic()
    change = sync_kea_hosts(k.hosts_database_url, k.subnet_id, wanted_hosts(k, reservations))
    return SyncResult(
        "host-database",
        change.changed,
        added=change.inserted + change.updated,
        deleted=change.deleted,
        seconds=time.monotonic() - started,
    )
