"""Run dnsmasq inside a lab namespace.

The runner starts ``dnsmasq --keep-in-foreground --conf-file=<file>`` with
per-instance defaults on the command line: ``--pid-file``, ``--log-facility``,
``--log-dhcp``, ``--dhcp-leasefile`` (never the host's
``/var/lib/misc/dnsmasq.leases``) and ``--user=root`` (so TFTP roots and
scripts under 0700 pytest temp dirs work). dnsmasq reads the config file
after the command line, so a value set in the file wins; the runner parses
``pid-file=`` and ``log-facility=`` from the file to know where they went.

:func:`minimal_pxe_config` is a hand-written reference config used by the lab's
self-test -- bootbrain renders its own configs.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .errors import LabError
from .net import Netns, stop_process

READY_PATTERN = re.compile(r"dnsmasq\[\d+\]: started, version")


class Dnsmasq:
    """One dnsmasq instance in *netns*, configured by *conf_file*."""

    def __init__(
        self,
        netns: Netns,
        conf_file: Path,
        *,
        workdir: Path | None = None,
        binary: str = "dnsmasq",
        user: str | None = "root",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.netns = netns
        self.conf_file = Path(conf_file)
        self.workdir = Path(workdir) if workdir else self.conf_file.parent
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.user = user
        self.extra_args = list(extra_args)
        self.pid_file = self.workdir / "dnsmasq.pid"
        self.log_file = self.workdir / "dnsmasq.log"
        self.lease_file = self.workdir / "dnsmasq.leases"
        self.stderr_file = self.workdir / "dnsmasq.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[Any] | None = None

    def _effective_paths(self) -> None:
        text = self.conf_file.read_text()
        keys = {
            "pid-file": "pid_file",
            "log-facility": "log_file",
            "dhcp-leasefile": "lease_file",
            "dhcp-lease-file": "lease_file",
        }
        for key, attr in keys.items():
            for match in re.finditer(rf"^\s*{key}\s*=\s*(\S+)\s*$", text, re.M):
                setattr(self, attr, Path(match.group(1)))

    def command(self) -> list[str]:
        argv = [
            self.binary,
            "--keep-in-foreground",
            f"--conf-file={self.conf_file}",
            f"--pid-file={self.pid_file}",
            f"--log-facility={self.log_file}",
            "--log-dhcp",
            f"--dhcp-leasefile={self.lease_file}",
        ]
        if self.user:
            argv.append(f"--user={self.user}")
        return argv + self.extra_args

    def start(self, timeout: float = 15.0) -> Dnsmasq:
        """Start dnsmasq and wait until it logged its start-up and wrote its pid-file."""
        if self.proc is not None:
            raise LabError("dnsmasq already started")
        argv = self.command()  # before the config may redirect the paths
        self._effective_paths()
        for path in (self.pid_file, self.log_file):
            path.unlink(missing_ok=True)
        self._stderr = open(self.stderr_file, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = self.netns.popen(argv, stdout=self._stderr, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise LabError(
                    f"dnsmasq exited with {self.proc.returncode}:\n"
                    f"{self.stderr_text()}\n{self.log_text()}"
                )
            pid_ok = self.pid_file.exists() and self.pid_file.read_text().strip() == str(
                self.proc.pid
            )
            if pid_ok and READY_PATTERN.search(self.log_text()):
                # A config error after the banner still exits at once; give it a moment.
                time.sleep(0.2)
                if self.proc.poll() is None:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise LabError(
                    f"dnsmasq not ready after {timeout}s:\n{self.stderr_text()}\n{self.log_text()}"
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def signal(self, sig: signal.Signals) -> None:
        if not self.proc or self.proc.poll() is not None:
            raise LabError("dnsmasq is not running")
        self.proc.send_signal(sig)

    def reload(self) -> None:
        """SIGHUP: re-read hosts/ethers/dhcp-hostsfile (not the main config)."""
        self.signal(signal.SIGHUP)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop dnsmasq (SIGTERM, then SIGKILL). Returns its exit code."""
        code = None
        if self.proc is not None:
            code = stop_process(self.proc, timeout=timeout)
            self.netns.forget(self.proc)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return code

    def log_text(self) -> str:
        """Everything dnsmasq logged so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_text(self) -> str:
        try:
            return self.stderr_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """Wait until the log matches *pattern*; returns the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            if match := regex.search(self.log_text()):
                return match
            if time.monotonic() > deadline:
                raise LabError(f"dnsmasq log did not match {regex.pattern!r} within {timeout}s")
            time.sleep(0.1)

    def __enter__(self) -> Dnsmasq:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def minimal_pxe_config(
    *,
    interface: str,
    boot_url: str,
    tftp_root: Path | str,
    range_start: str,
    range_end: str,
    netmask: str = "255.255.255.0",
    efi_boot_file: str = "snponly.efi",
    extra: Iterable[str] = (),
) -> str:
    """A hand-written full-DHCP + TFTP config that chains every guest to *boot_url*.

    iPXE (user-class ``iPXE`` or option 175) gets *boot_url*; BIOS PXE gets
    ``undionly.kpxe``; UEFI PXE (option 93 = 7 or 9) gets *efi_boot_file*.
    """
    lines = [
        "port=0",
        f"interface={interface}",
        "bind-interfaces",
        "no-ping",
        "log-dhcp",
        f"dhcp-range={range_start},{range_end},{netmask},1h",
        "enable-ra",
        f"dhcp-range=::,constructor:{interface},ra-only",
        "dhcp-match=set:ipxe,175",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        f"dhcp-boot=tag:ipxe,{boot_url}",
        f"dhcp-boot=tag:!ipxe,tag:efi64,{efi_boot_file}",
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
        "dhcp-option=encap:175,176,1",
        "enable-tftp",
        f"tftp-root={tftp_root}",
        *extra,
    ]
    return "\n".join(lines) + "\n"
