#!/usr/bin/python3
"""bootbrain's DHCP lease hook, for dnsmasq's ``dhcp-script`` and Kea's run_script.

dnsmasq and Kea start this once per lease event, so it is one standard-library file
that imports nothing from bootbrain. It turns the event into JSON and POSTs it to
``{url}/api/v1/lease-events``; bootbrain answers 202 for an accepted or already-seen
event id.

Usage::

    leasehook.py dnsmasq add|old|del MAC IP [HOSTNAME]   (dnsmasq's dhcp-script)
    leasehook.py kea leases4_committed|lease4_renew|...  (Kea run_script: argv[1] is
                                                          the hook point)
    leasehook.py replay [SECONDS]                        (send what is spooled)

Without the leading ``dnsmasq``/``kea`` word the source is guessed from the
arguments, so the file can also be the script itself.

Nothing is lost and the DHCP server never waits long: every event is first written
to the spool directory (a dotfile renamed into place), then the spool is sent oldest
first within a time budget (2 s). What is not delivered stays for the next event, for
``leasehook.py replay``, or for bootbrain's start-up (:func:`replay_spool` over HTTP,
or :func:`drain_spool` straight into the database).
After a failed delivery the hook only spools for ``backoff`` seconds, so a dead or
hanging bootbrain costs each event a file write, not a timeout. Bad input (malformed
MAC or address, unknown hook point, truncated environment) is logged to stderr and
ignored; the exit status is 0 whatever happens.

Configuration: ``key=value`` lines in ``/etc/bootbrain/leasehook.conf`` (or the file
named by ``BOOTBRAIN_HOOK_CONFIG``), each overridable by the environment variable
``BOOTBRAIN_HOOK_<KEY>``: ``url``, ``token_file`` (or ``token``), ``spool_dir``,
``timeout``, ``budget``, ``backoff``. Kea runs the script with an environment of its
own variables only, so for Kea the file (or a wrapper that exports variables) is the
way.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every run 3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

DEFAULT_CONFIG = "/etc/bootbrain/leasehook.conf"
DEFAULT_SPOOL_DIR = "/var/lib/bootbrain/spool"
API_PATH = "/api/v1/lease-events"
#: Spool files beyond this many are not written (and the event is logged instead):
#: a bootbrain that is gone for weeks must not fill the disk.
SPOOL_MAX = 100_000
#: A spooled event is a few hundred bytes; a file larger than this is not one of ours.
SPOOL_FILE_MAX = 64 * 1024
#: How much of an event a log line quotes: enough to recognise it, never megabytes.
LOG_EXCERPT = 300

DNSMASQ_ACTIONS = frozenset({"add", "old", "del"})
#: dnsmasq calls the script for these too; lease events only matter here. TFTP
#: transfers are left out on purpose: the /boot.ipxe request already records that
#: the chain got past TFTP, and a boot storm would double the hook's work.
DNSMASQ_IGNORED = frozenset({"tftp", "init", "arp", "arp-add", "arp-old", "arp-del", "relay-snoop"})
KEA_HOOKS = {
    "leases4_committed": "commit",
    "lease4_renew": "renew",
    "lease4_release": "release",
    "lease4_expire": "expire",
}
_KEA_HOOK_NAME = re.compile(r"leases?[46]_[a-z]+")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_ARCH = re.compile(r"(?:PXEClient|HTTPClient):Arch:(\d{5})(?::|$)")
_PERMANENT = frozenset({400, 409, 410, 413, 415, 422})
_AUTH = frozenset({401, 403})
_LIST_LIMIT = 64  # Kea reports at most a handful of leases per packet


class HookConfig:
    """What :func:`load_config` found. (Plain classes: dataclasses cost 10 ms to import.)"""

    __slots__ = ("backoff", "budget", "problems", "spool_dir", "timeout", "token", "url")

    def __init__(
        self,
        url: str | None,
        token: str | None,
        spool_dir: Path,
        timeout: float = 2.0,
        budget: float = 2.0,
        backoff: float = 10.0,
        problems: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.token = token
        self.spool_dir = spool_dir
        self.timeout = timeout
        self.budget = budget
        self.backoff = backoff
        self.problems = problems


class ReplayResult:
    """What one replay did; ``error`` says why it stopped early."""

    __slots__ = ("busy", "delivered", "delivered_ids", "error", "rejected", "remaining")

    def __init__(self) -> None:
        self.delivered = 0
        self.rejected = 0
        self.remaining = 0
        self.busy = False
        self.error: str | None = None
        self.delivered_ids: list[str] = []

    def __repr__(self) -> str:
        return (
            f"ReplayResult(delivered={self.delivered}, rejected={self.rejected}, "
            f"remaining={self.remaining}, busy={self.busy}, error={self.error!r})"
        )


class _DeadlineError(Exception):
    pass


class _RefusedError(Exception):
    """bootbrain answered, but did not take the event (5xx, 401, ...): try later."""


def excerpt(data: str | bytes, limit: int = LOG_EXCERPT) -> str:
    """``data`` for a log line: at most ``limit`` characters, saying how much was cut."""
    text = data[: limit * 4].decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if len(text) <= limit and len(data) <= limit * 4:
        return text
    unit = "bytes" if isinstance(data, bytes) else "characters"
    return f"{text[:limit]}... ({len(data)} {unit} in all)"


def log(message: str) -> None:
    try:
        sys.stderr.write(f"bootbrain-leasehook: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# --- configuration -------------------------------------------------------------------


def load_config(environ: Mapping[str, str] | None = None) -> HookConfig:
    """The hook's settings: the config file, overridden by ``BOOTBRAIN_HOOK_*``."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    path = env.get("BOOTBRAIN_HOOK_CONFIG", DEFAULT_CONFIG)
    problems: list[str] = []
    try:
        with Path(path).open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, _, value = line.partition("=")
                values[key.strip().lower()] = value.strip()
    except FileNotFoundError:
        if "BOOTBRAIN_HOOK_CONFIG" in env:
            problems.append(f"config file {path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"cannot read {path}: {exc}")
    for key in ("url", "token", "token_file", "spool_dir", "timeout", "budget", "backoff"):
        override = env.get(f"BOOTBRAIN_HOOK_{key.upper()}")
        if override is not None:
            values[key] = override.strip()

    token = values.get("token") or None
    token_file = values.get("token_file")
    if not token and token_file:
        try:
            with Path(token_file).open(encoding="utf-8") as f:
                token = f.read().strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"cannot read token file {token_file}: {exc}")
    url = values.get("url") or None
    if url is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        problems.append(f"url {url!r} is not an http(s) URL")
        url = None
    return HookConfig(
        url=url.rstrip("/") if url else None,
        token=token,
        spool_dir=Path(values.get("spool_dir") or DEFAULT_SPOOL_DIR),
        timeout=_seconds(values.get("timeout"), 2.0, problems),
        budget=_seconds(values.get("budget"), 2.0, problems),
        backoff=_seconds(values.get("backoff"), 10.0, problems),
        problems=tuple(problems),
    )


def _seconds(value: str | None, default: float, problems: list[str]) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        problems.append(f"not a number of seconds: {value!r}")
        return default
    return seconds


# --- turning arguments and environment into events -----------------------------------


def _mac(value: str | None) -> str | None:
    v = (value or "").strip()
    return v.lower() if _MAC.fullmatch(v) else None


def _ipv4(value: str | None) -> str | None:
    v = (value or "").strip()
    try:
        ip = ipaddress.IPv4Address(v)
    except ValueError:
        return None
    if str(ip) != v or ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        return None
    return v


def _hostname(value: str | None) -> str | None:
    v = (value or "").strip().rstrip(".")
    return v if v and len(v) <= 253 and _HOSTNAME.fullmatch(v) else None


def _user_class(value: str | None) -> str | None:
    v = (value or "").strip()
    return v if v and len(v) <= 64 and v.isascii() and v.isprintable() else None


def _arch(vendor_class: str | None) -> int | None:
    m = _ARCH.match(vendor_class or "")
    if m is None:
        return None
    arch = int(m.group(1))
    return arch if arch <= 0xFFFF else None


def _uuid4() -> str:
    """A random (version 4) UUID, without the uuid module's import cost."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _event(
    source: str,
    action: str,
    mac: str,
    ip: str,
    hostname: str | None = None,
    user_class: str | None = None,
    arch: int | None = None,
) -> dict[str, Any]:
    return {
        "id": _uuid4(),
        "source": source,
        "action": action,
        "mac": mac,
        "ip": ip,
        "hostname": hostname,
        "user_class": user_class,
        "arch": arch,
        "at": _now(),
    }


def events_from_dnsmasq(args: Sequence[str], environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """``add|old|del MAC IP [HOSTNAME]`` plus ``DNSMASQ_*`` variables -> one event."""
    if not args:
        log("dnsmasq: no action given; ignored")
        return []
    action = args[0]
    if action in DNSMASQ_IGNORED:
        return []
    if action not in DNSMASQ_ACTIONS:
        log(f"dnsmasq: unknown action {action[:32]!r}; ignored")
        return []
    if len(args) < 3:
        log(f"dnsmasq {action}: expected MAC and IP, got {len(args) - 1} argument(s); ignored")
        return []
    mac, ip = _mac(args[1]), _ipv4(args[2])
    if mac is None or ip is None:
        log(f"dnsmasq {action}: malformed MAC {args[1][:40]!r} or IP {args[2][:40]!r}; ignored")
        return []
    return [
        _event(
            "dnsmasq",
            action,
            mac,
            ip,
            hostname=_hostname(args[3]) if len(args) > 3 else None,
            user_class=_user_class(environ.get("DNSMASQ_USER_CLASS0")),
            arch=_arch(environ.get("DNSMASQ_VENDOR_CLASS")),
        )
    ]


def events_from_kea(hook: str, environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """Kea run_script's hook point plus ``LEASE4_*`` / ``LEASES4_AT<n>_*`` -> events.

    Kea's variables carry no DHCP options: architecture and user class stay null (the
    brain learns them from iPXE's own HTTP request).
    """
    action = KEA_HOOKS.get(hook)
    if action is None:
        if not hook.startswith("lease6") and not hook.startswith("leases6"):
            log(f"kea: hook point {hook[:40]!r} not handled; ignored")
        return []
    if hook == "leases4_committed":
        groups = [
            (action, "LEASES4_AT{}_", "LEASES4_SIZE"),
            ("del", "DELETED_LEASES4_AT{}_", "DELETED_LEASES4_SIZE"),
        ]
        prefixes: list[tuple[str, str]] = []
        for act, pattern, size_var in groups:
            try:
                size = int(environ.get(size_var, "0"))
            except ValueError:
                log(f"kea {hook}: {size_var} is not a number; ignored")
                size = 0
            prefixes += [(act, pattern.format(i)) for i in range(max(0, min(size, _LIST_LIMIT)))]
    else:
        prefixes = [(action, "LEASE4_")]
    events = []
    for act, prefix in prefixes:
        mac, ip = _mac(environ.get(prefix + "HWADDR")), _ipv4(environ.get(prefix + "ADDRESS"))
        if mac is None or ip is None:
            log(
                f"kea {hook}: {prefix}HWADDR={environ.get(prefix + 'HWADDR', '')[:40]!r} "
                f"{prefix}ADDRESS={environ.get(prefix + 'ADDRESS', '')[:40]!r} malformed; ignored"
            )
            continue
        hostname = _hostname(environ.get(prefix + "HOSTNAME"))
        events.append(_event("kea", act, mac, ip, hostname=hostname))
    return events


# --- the spool ------------------------------------------------------------------------


def spool_event(spool_dir: str | os.PathLike[str], event: Mapping[str, Any]) -> Path | None:
    """Write the event as ``<ns-time>-<id>.json`` (dotfile, fsync, rename); None if full."""
    directory = Path(spool_dir)
    # Group-shared, never world: the DHCP server's user writes, bootbrain's reads.
    directory.mkdir(mode=0o770, parents=True, exist_ok=True)
    if _count_spooled(directory, SPOOL_MAX) >= SPOOL_MAX:
        log(f"spool {directory} holds {SPOOL_MAX} events; dropped {excerpt(json.dumps(event))}")
        return None
    name = f"{time.time_ns():020d}-{event['id']}.json"
    tmp = directory / f".{name}.tmp"
    data = json.dumps(event, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    final = directory / name
    tmp.rename(final)
    return final


def spooled(spool_dir: str | os.PathLike[str]) -> list[Path]:
    """The spooled event files, oldest first."""
    try:
        names = [
            e.name
            for e in os.scandir(spool_dir)
            if e.name.endswith(".json") and not e.name.startswith(".")
        ]
    except FileNotFoundError:
        return []
    return [Path(spool_dir) / n for n in sorted(names)]


def _count_spooled(directory: Path, limit: int) -> int:
    n = 0
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.name.endswith(".json") and not e.name.startswith("."):
                    n += 1
                    if n >= limit:
                        break
    except FileNotFoundError:
        pass
    return n


@contextmanager
def _replay_lock(directory: Path, wait: float) -> Iterator[bool]:
    """Hold the spool's lock (one sender at a time), waiting up to ``wait`` seconds."""
    try:
        # Not through a symlink: the hook may run as root (dnsmasq), and the spool
        # directory is writable by another user.
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o660)
    except OSError as exc:
        log(f"cannot open lock in {directory}: {exc}")
        yield False
        return
    try:
        end = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= end:
                    yield False
                    return
                time.sleep(0.02)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- delivery -------------------------------------------------------------------------


def post_event(url: str, token: str, body: bytes, timeout: float) -> int:
    """POST one event and return the HTTP status; OSError when bootbrain is unreachable.

    A few lines of HTTP/1.1 over a socket instead of http.client, whose imports (email,
    ssl) would double the cost of every hook run; ssl is imported only for https URLs.
    """
    parts = urlsplit(url.rstrip("/") + API_PATH)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + max(timeout, 0.01)
    sock = socket.create_connection((host, port), timeout=max(timeout, 0.01))
    try:
        if parts.scheme == "https":
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        host_header = parts.netloc.rpartition("@")[2]
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {host_header}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nUser-Agent: bootbrain-leasehook\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(head.encode("latin-1") + body)
        reply = b""
        while b"\r\n" not in reply:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
            if len(reply) > 8192:
                break
        status_line = reply.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP answer: {reply[:60]!r}")
        return int(status_line[1])
    finally:
        sock.close()


def replay_spool(
    spool_dir: str | os.PathLike[str],
    url: str,
    token: str,
    budget: float = 30.0,
    *,
    timeout: float = 2.0,
    lock_wait: float | None = None,
) -> ReplayResult:
    """Send spooled events oldest first until the spool is empty or ``budget`` is spent.

    Stops at the first event bootbrain does not take (unreachable, 5xx, 401/403): the
    rest keep their order for the next try. An event bootbrain refuses as malformed
    (400, 422, ...) is logged and dropped, since it will never be accepted. Safe to run
    from several processes at once: one sends, the others wait for it up to
    ``lock_wait`` (default: the budget).
    """
    deadline = time.monotonic() + budget

    def deliver(event: dict[str, Any], body: bytes) -> str:
        left = deadline - time.monotonic()
        status = post_event(url, token, body, min(timeout, max(left, 0.01)))
        if 200 <= status < 300:
            return "ok"
        if status in _PERMANENT:
            return "reject"
        raise _RefusedError(
            f"bootbrain answered {status}"
            + (" (check the hook's token)" if status in _AUTH else "")
        )

    return drain_spool(spool_dir, deliver, budget, lock_wait=lock_wait)


def drain_spool(
    spool_dir: str | os.PathLike[str],
    deliver: Callable[[dict[str, Any], bytes], str],
    budget: float = 30.0,
    *,
    lock_wait: float | None = None,
) -> ReplayResult:
    """Hand spooled events, oldest first, to ``deliver(event, raw_json)``.

    ``deliver`` returns ``"ok"`` (recorded: the file is removed) or ``"reject"``
    (never acceptable: logged and removed), or raises to stop with this event and the
    rest kept in order. bootbrain itself can drain the spool straight into its
    database at start-up with this, without going through HTTP.
    """
    directory = Path(spool_dir)
    result = ReplayResult()
    deadline = time.monotonic() + budget
    if not directory.is_dir():
        return result
    with _replay_lock(directory, budget if lock_wait is None else lock_wait) as locked:
        if not locked:
            result.busy = True
            result.remaining = len(spooled(directory))
            return result
        while result.error is None:
            batch = spooled(directory)
            if not batch:
                break
            for path in batch:
                if deadline - time.monotonic() <= 0:
                    result.error = "time budget spent"
                    break
                if not _deliver_file(path, deliver, result):
                    break
        result.remaining = len(spooled(directory))
    marker = directory / ".down"
    if result.error is None:
        marker.unlink(missing_ok=True)
    elif result.error != "time budget spent":
        with suppress(OSError):
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o660)
            try:
                os.utime(fd)
            finally:
                os.close(fd)
    return result


def _deliver_file(
    path: Path, deliver: Callable[[dict[str, Any], bytes], str], result: ReplayResult
) -> bool:
    """Deliver one spooled file; False (with ``result.error`` set) to stop."""
    try:
        body = _read_spooled(path)
        event = json.loads(body)
        event_id = str(event["id"])
    except FileNotFoundError:
        return True  # another sender took it
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"unreadable spool file {path.name} ({excerpt(str(exc))}); moved aside")
        with suppress(OSError):
            path.rename(path.with_name(f".bad-{path.name}"))
        return True
    try:
        outcome = deliver(event, body)
    except _RefusedError as exc:
        result.error = str(exc)
        return False
    except (OSError, _DeadlineError) as exc:
        result.error = f"bootbrain unreachable: {type(exc).__name__}: {exc}"
        return False
    except Exception as exc:  # whatever the caller's deliver raises: keep the event
        result.error = f"delivery failed: {type(exc).__name__}: {exc}"
        return False
    if outcome == "ok":
        result.delivered += 1
        result.delivered_ids.append(event_id)
    else:
        log(f"bootbrain refused event; dropped: {excerpt(body)}")
        result.rejected += 1
    path.unlink(missing_ok=True)
    return True


def _read_spooled(path: Path) -> bytes:
    """A spooled file's bytes: a regular file of at most SPOOL_FILE_MAX, never read
    through a symlink (one to /etc/shadow would otherwise be sent, or logged)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symlink, not an event") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > SPOOL_FILE_MAX:
            raise ValueError(f"{st.st_size} bytes, more than an event's {SPOOL_FILE_MAX}")
        chunks = []
        size = 0
        while size <= SPOOL_FILE_MAX:
            chunk = os.read(fd, SPOOL_FILE_MAX + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > SPOOL_FILE_MAX:
            raise ValueError(f"more than an event's {SPOOL_FILE_MAX} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _backing_off(config: HookConfig) -> bool:
    try:
        age = time.time() - (config.spool_dir / ".down").lstat().st_mtime
    except OSError:
        return False
    return 0 <= age < config.backoff


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _DeadlineError("time budget spent")


def handle(events: list[dict[str, Any]], config: HookConfig) -> ReplayResult | None:
    """Spool the events, then (unless backing off) send the spool within the budget."""
    start = time.monotonic()
    unspooled = []
    for event in events:
        try:
            spool_event(config.spool_dir, event)
        except OSError as exc:
            log(f"cannot spool to {config.spool_dir} ({exc})")
            unspooled.append(event)
    if config.url is None or config.token is None:
        log("no url or token configured; events stay spooled")
        for event in unspooled:
            log(f"event lost: {excerpt(json.dumps(event))}")
        return None
    for event in unspooled:
        # Nowhere to keep it: one direct try, and the whole event in the log if that fails.
        left = config.budget - (time.monotonic() - start)
        try:
            status = post_event(
                config.url,
                config.token,
                json.dumps(event).encode(),
                min(config.timeout, max(left, 0.05)),
            )
            outcome = str(status)
        except (OSError, ValueError) as exc:
            status, outcome = 0, f"{type(exc).__name__}: {exc}"
        if not 200 <= status < 300:
            log(f"event lost ({excerpt(outcome)}): {excerpt(json.dumps(event))}")
    if _backing_off(config):
        return None
    budget = config.budget - (time.monotonic() - start)
    if budget <= 0:
        return None
    # A hard stop as well: socket timeouts bound each read, not a server that
    # trickles bytes.
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, budget + 0.25)
    try:
        result = replay_spool(
            config.spool_dir, config.url, config.token, budget, timeout=config.timeout
        )
    except _DeadlineError:
        log("time budget spent; the rest stays spooled")
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if result.error:
        log(f"{result.error}; {result.remaining} event(s) spooled in {config.spool_dir}")
    return result


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point; returns 0 for every hook invocation, whatever went wrong."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    try:
        if args[:1] == ["replay"]:
            return _replay_command(args[1:], env)
        config = load_config(env)
        for problem in config.problems:
            log(problem)
        if args[:1] == ["dnsmasq"]:
            events = events_from_dnsmasq(args[1:], env)
        elif args[:1] == ["kea"]:
            events = events_from_kea(args[1] if len(args) > 1 else "", env)
        elif args and (args[0] in DNSMASQ_ACTIONS or args[0] in DNSMASQ_IGNORED):
            events = events_from_dnsmasq(args, env)
        elif args and _KEA_HOOK_NAME.fullmatch(args[0]):
            events = events_from_kea(args[0], env)
        else:
            log(f"unknown invocation {' '.join(a[:40] for a in args[:3])!r}; ignored")
            events = []
        if events:
            handle(events, config)
    except BaseException as exc:  # the DHCP server must never see this hook fail
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            return 0
        log(f"internal error, event may be lost: {type(exc).__name__}: {exc}")
    return 0


def _replay_command(args: Sequence[str], env: Mapping[str, str]) -> int:
    config = load_config(env)
    for problem in config.problems:
        log(problem)
    budget = _seconds(args[0] if args else None, 30.0, [])
    if config.url is None or config.token is None:
        log("no url or token configured")
        return 1
    result = replay_spool(
        config.spool_dir, config.url, config.token, budget, timeout=config.timeout
    )
    print(
        f"delivered {result.delivered}, dropped {result.rejected}, "
        f"{result.remaining} left in {config.spool_dir}"
        + (f" ({result.error})" if result.error else "")
    )
    return 0 if result.remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
