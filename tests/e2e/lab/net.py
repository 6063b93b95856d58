"""Network namespaces for lab guests.

:class:`LabNetwork` creates a uniquely named namespace ``bbtest-<pid>-<hex>``,
a bridge ``br0`` with an address inside it (default ``10.213.0.1/24`` plus
``fd42:b00b::1/64`` so dnsmasq can send router advertisements), tap devices
on the bridge for QEMU guests, and optional peer namespaces joined to the
bridge by a veth pair. Nothing is created in the host's own namespace.

On exit -- also on exceptions and KeyboardInterrupt -- it stops every process
it started (SIGTERM to the process group, then SIGKILL), SIGKILLs anything
else still running inside its namespaces, and deletes the links and the
namespaces. :func:`cleanup_stale` removes namespaces left by crashed runs
(whose creating process is gone).

The pytest process itself stays in the host namespace. :meth:`Netns.call`
runs a Python callable on a helper thread that has joined the namespace
(``setns`` is per thread for network namespaces), so sockets it creates live
in the namespace: :meth:`Netns.bind_tcp` returns a listening socket inside
the namespace that an in-process server (``http.server``, werkzeug) can
serve from any thread.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from .errors import LabError

PREFIX = "bbtest-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_live: weakref.WeakSet[Netns] = weakref.WeakSet()

_File = int | IO[Any] | None


def _ip(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing network namespaces starting with *prefix*."""
    out = _ip("netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


class Netns:
    """A network namespace this process created, and the processes it started there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen[Any]] = []
        self._created = False
        _live.add(self)

    # -- lifecycle -----------------------------------------------------------------

    def create(self) -> None:
        _ip("netns", "add", self.name)
        self._created = True
        self.ip("link", "set", "lo", "up")

    def pids(self) -> list[int]:
        """Every process currently inside the namespace."""
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every process started here, then SIGKILL whatever remains inside."""
        for proc in reversed(self._procs):
            stop_process(proc, timeout=timeout)
        self._procs.clear()
        if not self.exists():
            return
        deadline = time.monotonic() + timeout
        while (
            pids := [p for p in self.pids() if p != os.getpid()]
        ) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    def delete(self) -> None:
        """Stop processes, delete the namespace's links, then the namespace."""
        if not self._created:
            return
        self.stop_all()
        if self.exists():
            links = self.ip("-o", "link", "show", check=False).stdout
            for match in re.finditer(r"^\d+:\s+([^:@\s]+)", links, re.M):
                if match.group(1) != "lo":
                    self.ip("link", "del", match.group(1), check=False)
            _ip("netns", "del", self.name, check=False)
        self._created = False

    # -- commands ------------------------------------------------------------------

    def argv(self, argv: Sequence[str]) -> list[str]:
        """*argv* wrapped in ``ip netns exec <name>``."""
        return ["ip", "netns", "exec", self.name, *argv]

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n <name> ...``."""
        return _ip("-n", self.name, *args, check=check)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run *argv* inside the namespace to completion (output captured as text)."""
        try:
            proc = subprocess.run(
                self.argv(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} timed out after {timeout}s in {self.name}") from exc
        if check and proc.returncode != 0:
            raise LabError(
                f"{' '.join(argv)} failed ({proc.returncode}) in {self.name}: "
                f"{proc.stderr.strip()} {proc.stdout.strip()}"
            )
        return proc

    def popen(
        self,
        argv: Sequence[str],
        *,
        stdin: _File = subprocess.DEVNULL,
        stdout: _File = None,
        stderr: _File = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start *argv* in the background inside the namespace, in its own session.

        The process is tracked and stopped when the namespace is deleted.
        ``ip netns exec`` execs the command, so ``proc.pid`` is the command's pid.
        """
        proc = subprocess.Popen(
            self.argv(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        """Stop tracking *proc* (after the caller stopped it itself)."""
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)

    # -- in-process access -----------------------------------------------------------

    def call(
        self, fn: Callable[..., T], *args: Any, timeout: float | None = 60, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on a helper thread inside the namespace."""
        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                fd = os.open(NETNS_DIR / self.name, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns({self.name}): {os.strerror(err)}")
                finally:
                    os.close(fd)
                result.append(fn(*args, **kwargs))
            except BaseException as exc:  # re-raised in the caller
                error.append(exc)

        thread = threading.Thread(target=target, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise LabError(f"call into {self.name} did not finish within {timeout}s")
        if error:
            raise error[0]
        return result[0]

    def bind_tcp(self, host: str, port: int = 0, backlog: int = 128) -> socket.socket:
        """A listening TCP socket bound to *host*:*port* inside the namespace."""

        def bind() -> socket.socket:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            return sock

        return self.call(bind)

    def connect_tcp(self, host: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection from inside the namespace (raises OSError if refused)."""
        return self.call(socket.create_connection, (host, port), timeout=timeout)

    def wait_tcp(self, host: str, port: int, timeout: float = 20.0) -> None:
        """Wait until *host*:*port* accepts connections from inside the namespace."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect_tcp(host, port, timeout=1.0).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise LabError(f"{host}:{port} not reachable in {self.name}: {exc}") from exc
                time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM *proc*'s process group, wait, then SIGKILL it. Returns the exit code."""
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        # The leader is gone; make sure nothing else in its group survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.poll()


class LabNetwork(Netns):
    """A namespace with a bridge, taps for guests and optional peer namespaces.

    Use as a context manager::

        with LabNetwork() as net:
            tap = net.add_tap()
            net.popen([...])
    """

    def __init__(
        self,
        subnet: str = "10.213.0.0/24",
        *,
        address: str | None = None,
        ipv6: str | None = "fd42:b00b::1/64",
        bridge: str = "br0",
        workdir: Path | None = None,
        tag: str = "",
    ) -> None:
        self.network = ipaddress.IPv4Network(subnet)
        self.address = address or str(next(self.network.hosts()))
        self.ipv6 = ipv6
        self.bridge = bridge
        stem = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        super().__init__(f"{stem}-{tag}" if tag else stem)
        self.peers: list[Netns] = []
        self.taps: list[str] = []
        self._veths = 0
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bbtest-lab-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    def host(self, index: int) -> str:
        """The *index*-th address of the subnet (1 is usually the bridge)."""
        return str(self.network.network_address + index)

    def url(self, port: int, path: str = "/") -> str:
        """``http://<bridge address>:<port><path>``."""
        return f"http://{self.address}:{port}{path}"

    def __enter__(self) -> LabNetwork:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def setup(self) -> None:
        self.create()
        self.ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0",
                "stp_state", "0", "mcast_snooping", "0")  # fmt: skip
        self.ip("addr", "add", f"{self.address}/{self.prefixlen}", "dev", self.bridge)
        if self.ipv6:
            self.ip("-6", "addr", "add", self.ipv6, "dev", self.bridge, "nodad")
        self.ip("link", "set", self.bridge, "up")
        # A bridge whose last port went away loses its carrier, and a Kea reconfigured
        # then skips it for good ("the interface br0 is not running"). A boot host's NIC
        # is cabled to a switch: a veth pair kept up on the bridge stands for that link.
        self.ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
        self.ip("link", "set", "uplink0", "master", self.bridge, "up")
        self.ip("link", "set", "uplink1", "up")

    def add_tap(self, name: str | None = None) -> str:
        """Create a tap device on the bridge; QEMU attaches with ``ifname=<name>``."""
        name = name or f"tap{len(self.taps)}"
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        self.ip("link", "set", name, "master", self.bridge, "up")
        self.taps.append(name)
        return name

    def add_peer(self, address: str, *, name: str = "peer", iface: str = "eth0") -> Netns:
        """A second namespace whose *iface* (addressed *address*, e.g. ``10.213.0.2/24``)
        is joined to this bridge by a veth pair -- e.g. a foreign DHCP server."""
        peer = Netns(f"{self.name}-{name}")
        peer.create()
        self.peers.append(peer)
        host_end = f"veth{self._veths}"
        self._veths += 1
        self.ip("link", "add", host_end, "type", "veth", "peer", "name", iface, "netns", peer.name)
        self.ip("link", "set", host_end, "master", self.bridge, "up")
        peer.ip("addr", "add", address, "dev", iface)
        peer.ip("link", "set", iface, "up")
        return peer

    def close(self) -> None:
        """Stop everything and delete all namespaces (safe to call twice)."""
        errors: list[BaseException] = []
        for ns in [*self.peers, self]:
            try:
                ns.stop_all()
            except BaseException as exc:  # keep cleaning up
                errors.append(exc)
        for ns in [*self.peers, self]:
            try:
                Netns.delete(ns)
            except BaseException as exc:
                errors.append(exc)
        self.peers.clear()
        self.taps.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]


def cleanup_stale(*, force: bool = False) -> list[str]:
    """Delete ``bbtest-*`` namespaces whose creating process is gone.

    Names carry the creator's pid (``bbtest-<pid>-...``); namespaces of live
    processes (concurrent test runs) are kept unless *force*. Processes still
    inside a removed namespace are killed. Returns the removed names.
    """
    removed = []
    for name in list_namespaces():
        match = re.match(re.escape(PREFIX) + r"(\d+)-", name)
        owner = int(match.group(1)) if match else None
        if not force and (owner is None or owner == os.getpid() or _pid_alive(owner)):
            continue
        ns = Netns(name)
        ns._created = True
        ns.delete()
        removed.append(name)
    return removed


@atexit.register
def _cleanup_at_exit() -> None:
    for ns in list(_live):
        with contextlib.suppress(Exception):
            if isinstance(ns, LabNetwork):
                ns.close()
            else:
                ns.delete()
