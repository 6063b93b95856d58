"""Boot QEMU guests with real PXE/iPXE firmware inside a lab namespace.

Modes (:class:`Mode`):

* ``bios`` -- ``-machine pc -boot n``; the NIC's option ROM (from ipxe-qemu)
  is iPXE, which DHCPs with user-class ``iPXE`` itself.
* ``uefi`` -- ``-machine q35`` + OVMF pflash; the NIC (e1000 or virtio) keeps
  its iPXE EFI ROM and has ``bootindex=1``.
* ``uefi-native`` -- q35 + OVMF with ``virtio-net-pci,romfile=``: OVMF's own
  PXE client (DHCP option 93 = 7) TFTPs its boot file (``snponly.efi``).

The serial console goes to ``<workdir>/console.log`` (``-nographic``, so
SeaBIOS also mirrors the iPXE text console there), QEMU's own output to
``qemu.log``. ``-no-reboot`` turns the guest's ``poweroff -f``, a reboot or a
triple fault into QEMU exiting. TCG is used unless ``BOOTBRAIN_LAB_KVM=1``.
"""

from __future__ import annotations

import enum
import os
import re
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import assets
from .errors import LabError
from .net import LabNetwork, stop_process

KVM_ENV = "BOOTBRAIN_LAB_KVM"
QEMU = "qemu-system-x86_64"
DEFAULT_TIMEOUT = 180.0
DONE_RE = re.compile(r"BOOTBRAIN-LAB-DONE status=(\w+)(.*)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1bc|\r")


class Mode(enum.StrEnum):
    BIOS = "bios"
    UEFI = "uefi"
    UEFI_NATIVE = "uefi-native"


def smbios_escape(value: str) -> str:
    """Escape *value* for QEMU's option parser (``,`` is written ``,,``)."""
    return value.replace(",", ",,")


@dataclass(frozen=True)
class Smbios:
    """SMBIOS strings; ``None`` fields are left to QEMU's defaults.

    ``uuid`` is the RFC 4122 string iPXE reports as ``${uuid}``.
    Type 1 = system, type 2 = baseboard (``board_*``), type 3 = chassis.
    """

    manufacturer: str | None = None
    product: str | None = None
    version: str | None = None
    serial: str | None = None
    uuid: str | None = None
    sku: str | None = None
    family: str | None = None
    board_manufacturer: str | None = None
    board_product: str | None = None
    board_serial: str | None = None
    board_asset: str | None = None
    chassis_manufacturer: str | None = None
    chassis_serial: str | None = None
    asset: str | None = None  # chassis asset tag (iPXE's ${asset})

    def qemu_args(self) -> list[str]:
        tables: dict[int, list[tuple[str, str | None]]] = {
            1: [
                ("manufacturer", self.manufacturer),
                ("product", self.product),
                ("version", self.version),
                ("serial", self.serial),
                ("uuid", self.uuid),
                ("sku", self.sku),
                ("family", self.family),
            ],
            2: [
                ("manufacturer", self.board_manufacturer),
                ("product", self.board_product),
                ("serial", self.board_serial),
                ("asset", self.board_asset),
            ],
            3: [
                ("manufacturer", self.chassis_manufacturer),
                ("serial", self.chassis_serial),
                ("asset", self.asset),
            ],
        }
        args: list[str] = []
        for table, fields in tables.items():
            parts = [f"{key}={smbios_escape(value)}" for key, value in fields if value is not None]
            if parts:
                args += ["-smbios", ",".join([f"type={table}", *parts])]
        return args


def random_mac() -> str:
    """A locally administered QEMU-style MAC ``52:54:00:xx:xx:xx``."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


@dataclass
class Nic:
    """One guest NIC. ``model``: e1000 or virtio (virtio-net-pci).

    ``romfile``: ``None`` = QEMU's default (the iPXE ROM from ipxe-qemu), ``""`` =
    no option ROM (firmware's own driver), or a path. ``tap``: ``None`` creates a
    new tap on the lab bridge. ``boot``: gets ``bootindex`` (first such NIC = 1).
    """

    model: str = "e1000"
    mac: str = field(default_factory=random_mac)
    romfile: str | None = None
    tap: str | None = None
    boot: bool = True

    @property
    def device(self) -> str:
        return {"e1000": "e1000", "virtio": "virtio-net-pci"}.get(self.model, self.model)


@dataclass
class BootResult:
    """What a finished (or killed) guest left behind."""

    console: str  # raw serial console text
    returncode: int | None
    timed_out: bool
    duration: float  # seconds from start to exit/kill
    qemu_log: str

    @property
    def text(self) -> str:
        """Console with ANSI escapes and carriage returns removed."""
        return strip_ansi(self.console)

    @property
    def done(self) -> re.Match[str] | None:
        """The init's ``BOOTBRAIN-LAB-DONE status=...`` line, if it got that far."""
        return DONE_RE.search(self.text)

    @property
    def ok(self) -> bool:
        done = self.done
        return done is not None and done.group(1) == "ok" and not self.timed_out

    def lab_lines(self) -> list[str]:
        """The init's ``BOOTBRAIN-LAB: ...`` lines, prefix removed."""
        return [m.group(1) for m in re.finditer(r"BOOTBRAIN-LAB: (.*)", self.text)]

    def dmi(self) -> dict[str, str]:
        """DMI strings as the booted Linux saw them (decoded from the init's hex lines)."""
        out = {}
        for m in re.finditer(r"BOOTBRAIN-LAB: dmi-hex (\w+)=([0-9a-f]*)", self.text):
            out[m.group(1)] = bytes.fromhex(m.group(2)).decode(errors="replace")
        return out

    def describe(self, tail: int = 60) -> str:
        """Short diagnosis for assertion messages: status and the console tail."""
        lines = self.text.splitlines()[-tail:]
        return (
            f"returncode={self.returncode} timed_out={self.timed_out} "
            f"duration={self.duration:.1f}s\n--- console tail ---\n"
            + "\n".join(lines)
            + (f"\n--- qemu ---\n{self.qemu_log}" if self.qemu_log.strip() else "")
        )


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def kvm_enabled() -> bool:
    return os.environ.get(KVM_ENV, "") in ("1", "true", "yes")


class Guest:
    """A QEMU guest on the lab bridge. ``start()`` then ``wait()``, or ``boot()``."""

    def __init__(
        self,
        net: LabNetwork,
        *,
        mode: Mode | str = Mode.BIOS,
        nics: Sequence[Nic] | None = None,
        smbios: Smbios | None = None,
        memory_mb: int = 512,
        name: str | None = None,
        workdir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.net = net
        self.mode = Mode(mode)
        if nics is None:
            nics = [Nic(model="virtio", romfile="") if self.mode is Mode.UEFI_NATIVE else Nic()]
        self.nics = list(nics)
        if not self.nics:
            raise LabError("a guest needs at least one NIC")
        self.smbios = smbios
        self.memory_mb = memory_mb
        self.name = name or f"guest-{secrets.token_hex(3)}"
        self.workdir = workdir or (net.workdir / self.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_path = self.workdir / "console.log"
        self.qemu_log_path = self.workdir / "qemu.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[Any] | None = None
        self._started = 0.0
        self._result: BootResult | None = None

    @property
    def mac(self) -> str:
        """MAC of the first NIC."""
        return self.nics[0].mac

    def command(self) -> list[str]:
        argv = [QEMU, "-name", self.name, "-m", str(self.memory_mb), "-smp", "1"]
        argv += ["-accel", "kvm", "-cpu", "host"] if kvm_enabled() else ["-accel", "tcg"]
        argv += [
            "-nographic",
            "-serial", f"file:{self.console_path}",
            "-monitor", "none",
            "-parallel", "none",
            "-no-reboot",
        ]  # fmt: skip
        if self.mode is Mode.BIOS:
            argv += ["-machine", "pc", "-boot", "n"]
        else:
            vars_copy = assets.ovmf_vars_copy(self.workdir / "OVMF_VARS.fd")
            argv += [
                "-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={assets.ovmf_code()}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            ]  # fmt: skip
        bootindex = 1
        for i, nic in enumerate(self.nics):
            if nic.tap is None:
                nic.tap = self.net.add_tap()
            argv += ["-netdev", f"tap,id=n{i},ifname={nic.tap},script=no,downscript=no"]
            device = f"{nic.device},netdev=n{i},mac={nic.mac}"
            if nic.romfile is not None:
                device += f",romfile={nic.romfile}"
            if nic.boot:
                device += f",bootindex={bootindex}"
                bootindex += 1
            argv += ["-device", device]
        if self.smbios:
            argv += self.smbios.qemu_args()
        return argv + self.extra_args

    def start(self) -> Guest:
        if self.proc is not None:
            raise LabError(f"{self.name} already started")
        argv = self.command()
        self.console_path.write_bytes(b"")
        self._log = open(self.qemu_log_path, "wb")  # noqa: SIM115 - closed in wait()
        self._log.write((" ".join(argv) + "\n").encode())
        self._log.flush()
        self._started = time.monotonic()
        self.proc = self.net.popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def console(self) -> str:
        """The serial console so far (raw)."""
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_console(
        self, pattern: str | re.Pattern[str], timeout: float = DEFAULT_TIMEOUT
    ) -> re.Match[str]:
        """Wait until the (ANSI-stripped) console matches *pattern*."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            if match := regex.search(strip_ansi(self.console())):
                return match
            if self.proc is not None and self.proc.poll() is not None:
                raise LabError(f"{self.name} exited before console matched {regex.pattern!r}")
            if time.monotonic() > deadline:
                raise LabError(
                    f"{self.name}: console did not match {regex.pattern!r} in {timeout}s"
                )
            time.sleep(0.1)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> BootResult:
        """Wait for QEMU to exit; kill it after *timeout* seconds."""
        if self._result is not None:
            return self._result
        if self.proc is None:
            raise LabError(f"{self.name} was never started")
        remaining = max(0.0, self._started + timeout - time.monotonic())
        timed_out = False
        try:
            self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process(self.proc, timeout=5)
        duration = time.monotonic() - self._started
        self.net.forget(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._result = BootResult(
            console=self.console(),
            returncode=self.proc.returncode,
            timed_out=timed_out,
            duration=duration,
            qemu_log=self.qemu_log_path.read_text(errors="replace").split("\n", 1)[-1],
        )
        return self._result

    def kill(self) -> BootResult:
        """Stop the guest now."""
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, timeout=5)
        return self.wait(timeout=0)

    def __enter__(self) -> Guest:
        return self if self.proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.kill()

    def boot(self, timeout: float = DEFAULT_TIMEOUT) -> BootResult:
        """``start()`` + ``wait(timeout)``."""
        return self.start().wait(timeout)


def boot(
    net: LabNetwork,
    *,
    mode: Mode | str = Mode.BIOS,
    timeout: float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> BootResult:
    """Boot one guest to completion (see :class:`Guest` for *kwargs*)."""
    return Guest(net, mode=mode, **kwargs).boot(timeout)
