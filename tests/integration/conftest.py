"""A two-namespace DHCP lab for the real-daemon tests of dnsmasq and Kea.

``dhcp_lab`` creates ``bbint-<pid>-<hex>-s`` (the DHCP server's side) and ``…-c`` (the
client's), joined by one veth pair created directly inside them, so no address or
link ever appears in the host's namespace. Clients are busybox ``udhcpc`` runs whose
script records what the server offered. Everything started inside is killed and both
namespaces are deleted afterwards, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

SERVER_IF = "srv0"
CLIENT_IF = "cli0"
SERVER_IP = "10.231.0.1"
PREFIX = 24
ULA = "fd00:231::1/64"

UDHCPC_SCRIPT = """#!/bin/sh
# Records the offer; configures the address so that a release (-R) can be sent.
case "$1" in
  deconfig) ip addr flush dev "$interface" scope global ;;
  bound|renew)
    ip addr flush dev "$interface" scope global
    ip addr add "$ip/${mask:-24}" dev "$interface"
    env | sort > "$UDHCPC_OUT" ;;
esac
exit 0
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True, timeout=30)


class DhcpLab:
    def __init__(self, workdir: Path) -> None:
        tag = f"bbint-{os.getpid()}-{secrets.token_hex(3)}"
        self.server_ns = f"{tag}-s"
        self.client_ns = f"{tag}-c"
        self.workdir = workdir
        self.procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self.script = workdir / "udhcpc.sh"
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        self._runs = 0

    # -- set-up and tear-down -------------------------------------------------------

    def create(self) -> None:
        for ns in (self.server_ns, self.client_ns):
            _ip("netns", "add", ns)
            self._created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", SERVER_IF, "netns", self.server_ns, "type", "veth",
            "peer", "name", CLIENT_IF, "netns", self.client_ns)
        _ip("-n", self.server_ns, "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", SERVER_IF)
        _ip("-n", self.server_ns, "addr", "add", ULA, "dev", SERVER_IF, "nodad")
        _ip("-n", self.server_ns, "link", "set", SERVER_IF, "up")
        _ip("-n", self.client_ns, "link", "set", CLIENT_IF, "up")

    def destroy(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for ns in self._created:
            # Whatever is still inside (hook scripts, a daemon that forked) goes too.
            for _ in range(50):
                out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                     text=True, check=False).stdout.split()
                pids = [int(p) for p in out if p.isdigit() and int(p) != os.getpid()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._created.clear()

    # -- running things -------------------------------------------------------------

    def in_server(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *argv]

    def start(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[Any]:
        out = log.open("ab")
        proc = subprocess.Popen(self.in_server(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc

    def dhcp(self, mac: str, *options: str, release: bool = False, attempts: int = 3,
             timeout: float = 30) -> dict[str, str] | None:
        """One DHCP exchange from the client namespace with this MAC; the offer's fields.

        ``options`` go to udhcpc as they are (``-x 0x5d:0000`` sends option 93,
        ``-O 175`` asks for option 175 back). None when no lease was obtained.
        """
        self._runs += 1
        out = self.workdir / f"udhcpc-{self._runs}.env"
        _ip("-n", self.client_ns, "addr", "flush", "dev", CLIENT_IF, "scope", "global")
        _ip("-n", self.client_ns, "link", "set", CLIENT_IF, "address", mac)
        argv = ["ip", "netns", "exec", self.client_ns, "busybox", "udhcpc", "-i", CLIENT_IF,
                "-f", "-n", "-t", str(attempts), "-T", "1", "-s", str(self.script)]
        env = {**os.environ, "UDHCPC_OUT": str(out)}
        if not release:
            try:
                proc = subprocess.run([*argv, "-q", *options], capture_output=True, text=True,
                                      timeout=timeout, check=False, env=env)
            except subprocess.TimeoutExpired:
                return None
            if proc.returncode != 0 or not out.exists():
                return None
        else:
            # udhcpc -q exits without releasing; -R releases on SIGTERM while bound.
            # (ip netns exec execs udhcpc, so the pid is udhcpc's.)
            bg = subprocess.Popen([*argv, "-R", *options], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env)
            try:
                got = self.wait_for(lambda: out.exists() or bg.poll() is not None,
                                    timeout=attempts * 2 + 2)
                if not got or not out.exists():
                    return None
                bg.terminate()
                bg.wait(10)
            finally:
                if bg.poll() is None:
                    bg.kill()
                    bg.wait()
        values = {}
        for line in out.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value
        return values

    # -- helpers for the tests --------------------------------------------------------

    @staticmethod
    def require(*binaries: str) -> None:
        """Skip (naming what is missing) unless root and every binary is installed."""
        if os.geteuid() != 0:
            pytest.skip("needs root (network namespaces)")
        missing = [b for b in binaries if shutil.which(b) is None]
        if missing:
            pytest.skip(f"not installed: {', '.join(missing)}")

    @staticmethod
    def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
        """Poll until ``predicate()`` is truthy; its value, or the last falsy one."""
        deadline = time.monotonic() + timeout
        value = predicate()
        while not value and time.monotonic() < deadline:
            time.sleep(interval)
            value = predicate()
        return value


@pytest.fixture
def dhcp_lab(tmp_path: Path) -> Iterator[DhcpLab]:
    DhcpLab.require("ip", "busybox")
    lab = DhcpLab(tmp_path)
    try:
        lab.create()
        yield lab
    finally:
        lab.destroy()
