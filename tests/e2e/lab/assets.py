"""Boot assets for lab guests: Debian kernel, busybox initrd, iPXE, OVMF.

Everything downloaded or built is cached under ``$BOOTBRAIN_LAB_CACHE``
(default ``/var/cache/bootbrain-lab``):

* ``kernel-<package>_<version>/`` -- ``vmlinuz``, ``modules/<name>.ko`` and
  ``manifest.json`` (written last; its presence marks a complete entry),
  extracted from the ``linux-image-6.1.0-*-amd64`` package that
  ``linux-image-amd64`` depends on. The package is downloaded with
  ``apt-get download`` and never installed.
* ``initrd-<hash>.gz`` -- gzip-compressed cpio (newc) archive with a static
  busybox, the NIC modules and :file:`init.sh` as ``/init``. The hash covers
  the init script, busybox and the modules, so any change rebuilds it.

Builds take an exclusive lock on ``<cache>/.lock``, so concurrent test
processes build once and share the result.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shlex
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

CACHE_ENV = "BOOTBRAIN_LAB_CACHE"
DEFAULT_CACHE = Path("/var/cache/bootbrain-lab")

IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_BOOT_FILES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BUSYBOX = Path("/bin/busybox")

KERNEL_META_PACKAGE = "linux-image-amd64"
#: Drivers the initrd loads; their dependencies are resolved from the modules'
#: own ``.modinfo`` (the .deb carries no ``modules.dep``).
NIC_DRIVERS = ("e1000", "virtio_pci", "virtio_net")
#: Modules extracted up front (the virtio chain); the closure over ``depends=``
#: is checked afterwards and anything missing is extracted in another pass.
_EXPECTED_CHAIN = (
    "failover",
    "net_failover",
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
)
_MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
_INIT_SCRIPT = Path(__file__).with_name("init.sh")
INITRD_NAME = "initrd.gz"
KERNEL_NAME = "vmlinuz"


def cache_dir() -> Path:
    """The asset cache directory (created if needed)."""
    path = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _cache_lock() -> Iterator[None]:
    with open(cache_dir() / ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: list[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} not found") from exc
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# --------------------------------------------------------------------------- kernel


@dataclass(frozen=True)
class Kernel:
    """An extracted Debian kernel: the image and its NIC modules in load order."""

    package: str
    version: str
    release: str  # ``uname -r``, e.g. 6.1.0-56-amd64
    vmlinuz: Path
    modules: tuple[Path, ...]  # uncompressed .ko files, dependencies first
    builtin: tuple[str, ...]  # wanted modules that are built into the image

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(p.name.removesuffix(".ko") for p in self.modules)


def resolve_kernel_package() -> tuple[str, str]:
    """``(package, candidate version)`` of the kernel ``linux-image-amd64`` depends on."""
    out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
    match = re.search(r"Depends:\s*(linux-image-\d[^\s]*-amd64)\b", out)
    if not match:
        raise LabError(f"cannot find the kernel package in apt-cache depends output:\n{out}")
    package = match.group(1)
    policy = _run(["apt-cache", "policy", package])
    cand = re.search(r"Candidate:\s*(\S+)", policy)
    if not cand or cand.group(1) == "(none)":
        raise LabError(f"no installable candidate for {package}:\n{policy}")
    return package, cand.group(1)


def _modinfo(data: bytes) -> dict[str, list[str]]:
    """Parse the ``.modinfo`` section of an ELF64 kernel module."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LabError("not a little-endian ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, base)
        return name, offset, size

    _, stroff, strsize = section(shstrndx)
    strtab = data[stroff : stroff + strsize]
    info: dict[str, list[str]] = {}
    for i in range(shnum):
        name_off, offset, size = section(i)
        name = strtab[name_off : strtab.index(b"\0", name_off)]
        if name != b".modinfo":
            continue
        for entry in data[offset : offset + size].split(b"\0"):
            key, sep, value = entry.partition(b"=")
            if sep:
                info.setdefault(key.decode(), []).append(value.decode(errors="replace"))
    return info


def _decompress_module(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".ko.zst"):
        return subprocess.run(
            ["zstd", "-dc", str(path)], capture_output=True, check=True, timeout=60
        ).stdout
    return raw


def _module_name(member: str) -> str | None:
    base = member.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES:
        if base.endswith(suffix):
            return base.removesuffix(suffix).replace("-", "_")
    return None


def _extract(deb: Path, members: Iterable[str], dest: Path) -> None:
    members = sorted(set(members))
    if not members:
        return
    dest.mkdir(parents=True, exist_ok=True)
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        tar = subprocess.run(
            ["tar", "-x", "-C", str(dest), "--", *members],
            stdin=dpkg.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        assert dpkg.stdout is not None
        dpkg.stdout.close()
        dpkg.wait(timeout=60)
    if tar.returncode != 0:
        raise LabError(f"tar -x from {deb.name} failed: {tar.stderr.strip()}")


def _build_kernel(package: str, version: str, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".kbuild-") as tmp_name:
        tmp = Path(tmp_name)
        _run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}"],
            cwd=tmp,
        )
        debs = list(tmp.glob("*.deb"))
        if len(debs) != 1:
            raise LabError(f"apt-get download {package} produced {debs}")
        deb = debs[0]
        listing = subprocess.run(
            f"dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | tar -t",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.splitlines()
        vmlinuz = [m for m in listing if re.fullmatch(r"\./boot/vmlinuz-[^/]+", m)]
        builtin_list = [
            m for m in listing if re.fullmatch(r"\./lib/modules/[^/]+/modules\.builtin", m)
        ]
        if len(vmlinuz) != 1 or len(builtin_list) != 1:
            raise LabError(f"unexpected layout in {deb.name}: {vmlinuz} {builtin_list}")
        release = vmlinuz[0].removeprefix("./boot/vmlinuz-")
        by_name: dict[str, str] = {}
        for member in listing:
            name = _module_name(member)
            if name and "/kernel/" in member:
                by_name.setdefault(name, member)

        raw = tmp / "raw"
        _extract(deb, [vmlinuz[0], builtin_list[0]], raw)
        builtin = {
            n
            for line in (raw / builtin_list[0]).read_text().splitlines()
            if (n := _module_name(line.strip()))
        }

        wanted = [*NIC_DRIVERS, *_EXPECTED_CHAIN]
        _extract(deb, [by_name[n] for n in wanted if n in by_name], raw)
        infos: dict[str, dict[str, list[str]]] = {}
        order: list[str] = []
        builtin_used: list[str] = []

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in order or name in builtin_used:
                return
            if name in stack:
                raise LabError(f"module dependency cycle: {' -> '.join((*stack, name))}")
            if name not in by_name:
                if name in builtin:
                    builtin_used.append(name)
                    return
                raise LabError(f"module {name} is neither in {deb.name} nor built in")
            path = raw / by_name[name]
            if not path.exists():
                _extract(deb, [by_name[name]], raw)
            info = infos.setdefault(name, _modinfo(_decompress_module(path)))
            deps = [d for v in info.get("depends", []) for d in v.split(",") if d]
            for dep in deps:
                visit(dep.replace("-", "_"), (*stack, name))
            order.append(name)

        for driver in NIC_DRIVERS:
            visit(driver, ())

        out = target.with_name(target.name + ".tmp")
        shutil.rmtree(out, ignore_errors=True)
        (out / "modules").mkdir(parents=True)
        shutil.copyfile(raw / vmlinuz[0], out / KERNEL_NAME)
        for name in order:
            (out / "modules" / f"{name}.ko").write_bytes(_decompress_module(raw / by_name[name]))
        manifest = {
            "package": package,
            "version": version,
            "release": release,
            "modules": order,
            "builtin": builtin_used,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)


def _load_kernel(entry: Path) -> Kernel:
    manifest = json.loads((entry / "manifest.json").read_text())
    return Kernel(
        package=manifest["package"],
        version=manifest["version"],
        release=manifest["release"],
        vmlinuz=entry / KERNEL_NAME,
        modules=tuple(entry / "modules" / f"{m}.ko" for m in manifest["modules"]),
        builtin=tuple(manifest["builtin"]),
    )


def kernel() -> Kernel:
    """The cached kernel, downloading and extracting it on first use.

    If ``apt-cache`` cannot resolve the package (no package lists), the newest
    complete cache entry is used instead.
    """
    try:
        package, version = resolve_kernel_package()
    except LabError:
        entries = sorted(
            (p for p in cache_dir().glob("kernel-*") if (p / "manifest.json").exists()),
            key=lambda p: p.stat().st_mtime,
        )
        if entries:
            return _load_kernel(entries[-1])
        raise
    entry = cache_dir() / f"kernel-{package}_{version.replace(':', '%')}"
    if not (entry / "manifest.json").exists():
        with _cache_lock():
            if not (entry / "manifest.json").exists():
                _build_kernel(package, version, entry)
    return _load_kernel(entry)


# --------------------------------------------------------------------------- initrd


class _Cpio:
    """Minimal writer for the cpio "newc" format the kernel unpacks."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        self._ino += 1
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._buf.write(header + encoded)
        self._buf.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self._buf.write(data)
        self._buf.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, 0o020000 | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


def _is_static_elf(data: bytes) -> bool:
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def init_script(k: Kernel) -> str:
    """The ``/init`` text for kernel *k* (module list substituted)."""
    return _INIT_SCRIPT.read_text().replace("@MODULES@", " ".join(k.module_names))


def build_initrd(k: Kernel) -> bytes:
    """Build the gzip-compressed newc initrd for kernel *k* (not cached)."""
    busybox = BUSYBOX.read_bytes()
    if not _is_static_elf(busybox):
        raise LabError(f"{BUSYBOX} is not a static binary (install busybox-static)")
    applets = _run([str(BUSYBOX), "--list-full"]).split()
    cpio = _Cpio()
    dirs = {
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "etc",
        "tmp",
        "run",
        "lib",
        "lib/modules",
    }
    for d in sorted(dirs):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", busybox, 0o755)
    for applet in applets:
        applet = applet.lstrip("/")
        if applet in ("bin/busybox",) or applet.rsplit("/", 1)[0] not in dirs:
            continue
        cpio.symlink(applet, "/bin/busybox")
    cpio.file("init", init_script(k).encode(), 0o755)
    cpio.file("etc/hostname", b"(none)\n")
    for module in k.modules:
        cpio.file(f"lib/modules/{module.name}", module.read_bytes())
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def initrd(k: Kernel | None = None) -> Path:
    """Cached initrd for kernel *k* (default: :func:`kernel`)."""
    k = k or kernel()
    digest = hashlib.sha256()
    digest.update(init_script(k).encode())
    digest.update(BUSYBOX.read_bytes())
    for module in k.modules:
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    path = cache_dir() / f"initrd-{digest.hexdigest()[:16]}.gz"
    if not path.exists():
        with _cache_lock():
            if not path.exists():
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(build_initrd(k))
                tmp.rename(path)
    return path


@dataclass(frozen=True)
class BootFiles:
    """What a guest's iPXE script fetches: ``vmlinuz`` and ``initrd.gz``."""

    kernel: Kernel
    vmlinuz: Path
    initrd: Path

    def install(self, directory: Path) -> tuple[Path, Path]:
        """Hard-link (or copy) both files into *directory* as vmlinuz / initrd.gz."""
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for src, name in ((self.vmlinuz, KERNEL_NAME), (self.initrd, INITRD_NAME)):
            dst = directory / name
            dst.unlink(missing_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
            out.append(dst)
        return out[0], out[1]


def boot_files() -> BootFiles:
    """Kernel + initrd, downloading/building into the cache as needed."""
    k = kernel()
    return BootFiles(kernel=k, vmlinuz=k.vmlinuz, initrd=initrd(k))


# --------------------------------------------------------------------------- firmware


def ipxe_file(name: str) -> Path:
    """``/usr/lib/ipxe/<name>`` (undionly.kpxe, ipxe.efi, snponly.efi, ...)."""
    path = IPXE_DIR / name
    if not path.is_file():
        raise LabError(f"{path} is missing (install Debian's ipxe package)")
    return path


def ovmf_code() -> Path:
    if not OVMF_CODE.is_file():
        raise LabError(f"{OVMF_CODE} is missing (install ovmf)")
    return OVMF_CODE


def ovmf_vars_copy(dest: Path) -> Path:
    """A private, writable copy of the OVMF variable store at *dest*."""
    if not OVMF_VARS.is_file():
        raise LabError(f"{OVMF_VARS} is missing (install ovmf)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OVMF_VARS, dest)
    return dest


# --------------------------------------------------------------------------- cmdline


def ip_param(
    ip: str,
    *,
    gateway: str = "",
    netmask: str = "255.255.255.0",
    hostname: str = "",
    interface: str = "eth0",
    dns: Iterable[str] = (),
) -> str:
    """``ip=<ip>::<gw>:<netmask>:<hostname>:<iface>:none:<dns0>:<dns1>``."""
    dns = list(dns)[:2]
    fields = [ip, "", gateway, netmask, hostname, interface, "none", *dns]
    return "ip=" + ":".join(fields)


def kernel_cmdline(
    *,
    ip: str | None = None,
    done_url: str | None = None,
    meta_url: str | None = None,
    metajson_url: str | None = None,
    initrd_name: str | None = INITRD_NAME,
    console: str = "ttyS0",
    hold: int | None = None,
    debug: bool = False,
    extra: Iterable[str] = (),
) -> str:
    """Kernel parameters the lab initrd understands (see :file:`init.sh`).

    *ip* is a full ``ip=...`` parameter (see :func:`ip_param`). Keep
    ``initrd_name`` set for UEFI guests: the EFI stub finds the initrd that
    iPXE loaded by that name (``initrd=initrd.gz``); it is harmless on BIOS.
    """
    words = [f"console={console}"]
    if initrd_name:
        words.append(f"initrd={initrd_name}")
    if ip:
        words.append(ip)
    if meta_url:
        words.append(f"bootbrain.meta={meta_url}")
    if metajson_url:
        words.append(f"bootbrain.metajson={metajson_url}")
    if done_url:
        words.append(f"bootbrain.done={done_url}")
    if hold:
        words.append(f"bootbrain.hold={hold}")
    if debug:
        words.append("bootbrain.debug")
    words.extend(extra)
    for word in words:
        if any(c.isspace() for c in word):
            raise LabError(f"kernel parameter contains whitespace: {word!r}")
    return " ".join(words)
