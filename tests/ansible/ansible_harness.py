"""A Debian 12 target for the Ansible role, on this machine: a debootstrap tree
reached with ``community.general.chroot``, plus the means to start what the role
installed the way its systemd units would, since the tree has no init.

The pristine tree is built once and cached under ``CACHE``; every test run works
on its own copy, so a converge never sees another run's leftovers and the cache
is never written to by a converge. Downloaded .debs are shared the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
CACHE = Path(os.environ.get("BOOTBRAIN_ANSIBLE_CACHE", "/var/cache/bootbrain-ansible"))
SUITE = "bookworm"
PRISTINE = CACHE / f"{SUITE}-minbase"
PRISTINE_STAMP = CACHE / f"{SUITE}-minbase.stamp"
APT_ARCHIVES = CACHE / "apt-archives"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
WORK_PARENT = "/var/tmp"
WORK_PREFIX = "bootbrain-ansible-"


def venv_tool(name: str) -> str | None:
    """A console script from the virtualenv running the tests, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


# --- the Debian mirror this machine already uses ------------------------------


def debian_mirror() -> str:
    """The mirror URL serving ``SUITE`` main in this machine's apt sources."""
    override = os.environ.get("BOOTBRAIN_DEBIAN_MIRROR")
    if override:
        return override
    sources = Path("/etc/apt")
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for types, uris, suites, components in entries:
            if "deb" in types and SUITE in suites and "main" in components:
                for uri in uris:
                    if uri.startswith(("http://", "https://")):
                        return uri.rstrip("/")
    return FALLBACK_MIRROR


def _deb822_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        yield (
            fields.get("types", "").split(),
            fields.get("uris", "").split(),
            fields.get("suites", "").split(),
            fields.get("components", "").split(),
        )


def _one_line_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 4:
            yield [words[0]], [words[1]], [words[2]], words[3:]


# --- mounts and safe removal -----------------------------------------------------


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"could not unmount {left}")


def remove_tree(path: Path) -> None:
    """rm -rf that never follows a mount point out of ``path``."""
    if not path.exists():
        return
    unmount_all(path)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- the pristine tree and the per-run copy ------------------------------------


def pristine_tree(log: Path | None = None) -> tuple[Path, float]:
    """The cached debootstrap tree, built if missing; and the seconds spent building it."""
    with locked(CACHE / ".lock"):
        if PRISTINE_STAMP.is_file() and (PRISTINE / "usr/bin/python3").exists():
            return PRISTINE, 0.0
        started = time.monotonic()
        partial = CACHE / f"{SUITE}-minbase.partial"
        remove_tree(partial)
        remove_tree(PRISTINE)
        PRISTINE_STAMP.unlink(missing_ok=True)
        mirror = debian_mirror()
        argv = [
            "debootstrap",
            "--variant=minbase",
            "--include=python3",
            SUITE,
            str(partial),
            mirror,
        ]
        with log.open("a") if log else open(os.devnull, "w") as out:
            try:
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=1200)
            finally:
                unmount_all(partial)  # debootstrap mounts /proc and /sys while it works
        partial.rename(PRISTINE)
        PRISTINE_STAMP.write_text(
            json.dumps({"suite": SUITE, "mirror": mirror, "built": time.time(), "argv": argv})
            + "\n"
        )
        return PRISTINE, time.monotonic() - started


POLICY_RC_D = """#!/bin/sh
# Test target: package scripts must never start daemons in the host's network.
exit 101
"""


@dataclass
class Target:
    """One run's copy of the tree, with /proc and /sys mounted inside it."""

    work: Path
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, pristine: Path) -> Target:
        reap_stale_targets()
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_PARENT))
        (work / "owner.pid").write_text(f"{os.getpid()}\n")
        root = work / "root"
        target = cls(work=work, root=root)
        try:
            target._layer_over(pristine)
            policy = root / "usr/sbin/policy-rc.d"
            policy.write_text(POLICY_RC_D)
            policy.chmod(0o755)
            subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
            subprocess.run(
                ["mount", "-t", "sysfs", "-o", "ro", "sysfs", str(root / "sys")], check=True
            )
        except BaseException:
            target.destroy()
            raise
        return target

    def _layer_over(self, pristine: Path) -> None:
        """This run's writable tree: an overlay on the cached one (instant, and the
        cache stays untouched), or a full copy where overlayfs is not available."""
        upper, scratch = self.work / "upper", self.work / "overlay-work"
        upper.mkdir()
        scratch.mkdir()
        self.root.mkdir()
        # Seeded in the upper layer before mounting, so the .debs can be hard links.
        self._seed_apt_archives(upper)
        options = f"lowerdir={pristine},upperdir={upper},workdir={scratch}"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
            capture_output=True,
        )
        if mounted.returncode != 0:
            self.root.rmdir()
            subprocess.run(
                ["cp", "-a", "--reflink=auto", str(pristine), str(self.root)], check=True
            )
            self._seed_apt_archives(self.root)

    def _seed_apt_archives(self, tree: Path) -> None:
        dest = tree / "var/cache/apt/archives"
        dest.mkdir(parents=True, exist_ok=True)
        for deb in APT_ARCHIVES.glob("*.deb") if APT_ARCHIVES.is_dir() else []:
            with contextlib.suppress(FileExistsError):
                _link_or_copy(deb, dest / deb.name)

    def harvest_apt_archives(self) -> None:
        """Keep the .debs this run downloaded for the next one (same name, same bytes)."""
        APT_ARCHIVES.mkdir(parents=True, exist_ok=True)
        for deb in (self.root / "var/cache/apt/archives").glob("*.deb"):
            if not (APT_ARCHIVES / deb.name).exists():
                tmp = APT_ARCHIVES / f".{deb.name}.tmp"
                shutil.copyfile(deb, tmp)
                tmp.replace(APT_ARCHIVES / deb.name)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    # --- running things inside the tree --------------------------------------

    def run(
        self, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the tree as root (``chroot ROOT argv``), with a clean
        environment: nothing of the test process leaks into what is checked."""
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
        return subprocess.run(
            ["chroot", str(self.root), *argv],
            capture_output=True,
            text=True,
            timeout=120,
            env={**base, **(env or {})},
        )

    def _ids(self, user: str, group: str | None) -> tuple[int, int, list[int]]:
        passwd = {
            f[0]: f
            for f in (line.split(":") for line in self.path("/etc/passwd").read_text().splitlines())
        }
        groups = [line.split(":") for line in self.path("/etc/group").read_text().splitlines()]
        uid, primary = int(passwd[user][2]), int(passwd[user][3])
        gid = next(int(g[2]) for g in groups if g[0] == group) if group else primary
        extra = sorted({gid} | {int(g[2]) for g in groups if user in g[3].split(",")})
        return uid, gid, extra

    def start(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        user: str = "root",
        group: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str = "/",
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in the tree as ``user``, like a unit's User=/Group=."""
        uid, gid, groups = self._ids(user, group)
        root = str(self.root)

        def enter() -> None:
            os.chroot(root)
            os.chdir(cwd)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            os.setsid()

        base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
        out = log.open("ab")
        proc = subprocess.Popen(
            list(argv),
            env={**base, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=enter,
        )
        out.close()
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop what ``start`` began, then anything else still running inside the tree."""
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in self._pids_inside():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.processes.clear()

    def _pids_inside(self) -> list[int]:
        root = str(self.root.resolve())
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "root") == root:
                        pids.append(int(entry.name))
        return pids

    def destroy(self, keep: bool = False) -> None:
        try:
            self.stop_all()
        finally:
            unmount_all(self.root)
            if keep:
                (self.work / ".keep").touch()
            else:
                remove_tree(self.work)


def reap_stale_targets() -> None:
    """Clean up after runs that were killed before their teardown: stop what still
    runs in their trees, unmount, delete. Trees kept on purpose (.keep) stay."""
    for work in Path(WORK_PARENT).glob(f"{WORK_PREFIX}*"):
        if (work / ".keep").exists():
            continue
        try:
            owner = int((work / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and Path(f"/proc/{owner}").exists():
            continue  # a run in progress
        stale = Target(work=work, root=work / "root")
        with contextlib.suppress(Exception):
            stale.stop_all()
            remove_tree(work)


# --- what the role's units say ----------------------------------------------------


@dataclass
class Unit:
    user: str
    group: str | None
    environment: dict[str, str]
    working_directory: str
    exec_start_pre: list[list[str]]
    exec_start: list[str]


def parse_unit(text: str) -> Unit:
    """The [Service] settings a test needs to start a unit's process by hand."""
    service: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            service.setdefault(key.strip(), []).append(value.strip())
    env: dict[str, str] = {}
    for value in service.get("Environment", []):
        for item in shlex.split(value):
            k, _, v = item.partition("=")
            env[k] = v

    def command(value: str) -> list[str]:
        return shlex.split(value.lstrip("-@+!:"))

    return Unit(
        user=service.get("User", ["root"])[-1],
        group=service.get("Group", [None])[-1],
        environment=env,
        working_directory=service.get("WorkingDirectory", ["/"])[-1],
        exec_start_pre=[command(v) for v in service.get("ExecStartPre", [])],
        exec_start=command(service["ExecStart"][-1]),
    )


# --- starting what the role installed, as its units would -------------------------------


def start_bootbrain(target: Target, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``bootbrain serve`` exactly as bootbrain.service describes it, once it answers
    /healthz on 127.0.0.1:``port`` (the role's ``bootbrain_gunicorn_bind``)."""
    unit = parse_unit(target.path("/etc/systemd/system/bootbrain.service").read_text())
    run_dir = target.path("/run/bootbrain")  # RuntimeDirectory=, which systemd would create
    run_dir.mkdir(mode=0o755, exist_ok=True)
    uid, gid, _ = target._ids(unit.user, unit.group)
    os.chown(run_dir, uid, gid)
    proc = target.start(
        unit.exec_start,
        log=log,
        user=unit.user,
        group=unit.group,
        env=unit.environment,
        cwd=unit.working_directory,
    )
    direct = wait_for_http(f"http://127.0.0.1:{port}/healthz", proc, log)
    assert direct.status == 200, direct
    return proc


def start_nginx(target: Target, log: Path) -> subprocess.Popen[bytes]:
    """nginx as Debian's nginx.service starts it, but in the foreground so the test owns
    it; refused unless every ``listen`` of the deployed configuration is on loopback."""
    unit = parse_unit(target.path("/lib/systemd/system/nginx.service").read_text())
    listens = target.run(["/usr/sbin/nginx", "-T", "-q"])
    assert listens.returncode == 0, listens.stderr
    for listen in re.findall(r"^\s*listen\s+([^;]+);", listens.stdout, re.M):
        assert listen.startswith(("127.0.0.1:", "[::1]:")), (
            f"nginx would listen on {listen!r} outside loopback; refusing to start it"
        )
    for argv in unit.exec_start_pre:
        pre = target.run(argv)
        assert pre.returncode == 0, f"{argv}: {pre.stdout}{pre.stderr}"
    return target.start([a.replace("daemon on;", "daemon off;") for a in unit.exec_start], log=log)


# --- ansible-playbook ------------------------------------------------------------------


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        """The first host's recap line (a run with one host)."""
        return next(iter(self.recaps().values()), {})

    def recaps(self) -> dict[str, dict[str, int]]:
        """Each host's recap line: {host: {"ok": …, "changed": …, "failed": …}}."""
        recap = self.output.split("PLAY RECAP", 1)[-1] if "PLAY RECAP" in self.output else ""
        return {
            host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in re.findall(r"^(\S+)\s*:\s*(ok=\d+.*)$", recap, re.M)
        }

    def task_results(self, task: str) -> dict[str, str]:
        """What each host reported for the task named ``task`` (its last run):
        {host: "ok" | "changed" | "skipping" | "fatal" | …}."""
        current, found = "", dict[str, str]()
        for line in self.output.splitlines():
            header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if header:
                current = header.group(1)
                if current.endswith(task):
                    found = {}
                continue
            result = re.match(r"^(\w+): \[([^]]+)\]", line)
            if result and current.endswith(task):
                found[result.group(2)] = result.group(1)
        return found

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported "changed" (default callback output)."""
        task, found = "", []
        for line in self.output.splitlines():
            header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if header:
                task = header.group(1)
            elif line.startswith("changed:"):
                found.append(task)
        return found

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_playbook(
    inventory: Path,
    extra_vars: Path | None,
    *,
    workdir: Path,
    args: Sequence[str] = (),
    timeout: int = 900,
) -> PlaybookRun:
    env = dict(
        os.environ,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-local"),
        ANSIBLE_PYTHON_INTERPRETER="auto_silent",
        ANSIBLE_PIPELINING="1",
    )
    argv = [
        venv_tool("ansible-playbook") or "ansible-playbook",
        "-i",
        str(inventory),
        *(["-e", f"@{extra_vars}"] if extra_vars else []),
        *args,
        str(ANSIBLE_DIR / "site.yml"),
    ]
    started = time.monotonic()
    proc = subprocess.run(
        argv, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def write_inventory(path: Path, root: Path) -> None:
    """A ``bootbrain`` group holding the tree, reached through chroot as root (no become)."""
    write_fleet_inventory(path, {"target": (root, {})})


def write_fleet_inventory(
    path: Path,
    hosts: dict[str, tuple[Path, dict[str, object]]],
    group_vars: dict[str, object] | None = None,
) -> None:
    """A ``bootbrain`` group of several trees ({name: (root, host variables)}), each
    reached through chroot as root, with variables shared by the group."""
    inventory = {
        "bootbrain": {
            "hosts": {
                name: {
                    "ansible_host": str(root),
                    "ansible_connection": "community.general.chroot",
                    "ansible_become": False,
                    **host_vars,
                }
                for name, (root, host_vars) in hosts.items()
            },
            "vars": group_vars or {},
        }
    }
    path.write_text(json.dumps(inventory, indent=2) + "\n")


# --- dependency wheels, built once on this machine ------------------------------------


def wheelhouse(log: Path | None = None) -> tuple[Path, float]:
    """Wheels of bootbrain's dependencies, keyed by pyproject.toml's dependency list.

    The target installs from these with --no-index: no package index is needed
    inside the tree and a converge does not depend on PyPI's speed.
    """
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # With the PostgreSQL driver: one converge moves the host to PostgreSQL.
    extras = project.get("optional-dependencies", {}).get("postgresql", [])
    deps = sorted([*project.get("dependencies", []), *extras])
    key = hashlib.sha256(json.dumps([sys.version_info[:2], deps]).encode()).hexdigest()[:16]
    house = CACHE / f"wheelhouse-{key}"
    with locked(CACHE / ".lock"):
        if (house / ".complete").is_file():
            return house, 0.0
        started = time.monotonic()
        for old in CACHE.glob("wheelhouse-*"):
            remove_tree(old)
        partial = CACHE / f".wheelhouse-{key}.partial"
        remove_tree(partial)
        with log.open("a") if log else open(os.devnull, "w") as out:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--wheel-dir",
                    str(partial),
                    *deps,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=900,
            )
        (partial / ".complete").write_text(json.dumps(deps) + "\n")
        partial.rename(house)
        return house, time.monotonic() - started


def snapshot_checkout(dest: Path) -> Path:
    """A still copy of the repository to build bootbrain from.

    Both converges must build from the same sources, even while someone edits the
    working tree; and nothing is built inside the working tree itself.
    """
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        "*.pyc",
        ".*_cache",
        ".hypothesis",
    )
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


# --- small network helpers (loopback only) --------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def http_get(url: str, *, headers: dict[str, str] | None = None, timeout: float = 10) -> Response:
    return http_request("GET", url, headers=headers, timeout=timeout)


def http_request(
    method: str,
    url: str,
    *,
    body: object = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Response:
    """One request; ``body`` is sent as JSON, ``form`` as a urlencoded form."""
    data: bytes | None = None
    sent = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(
                resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
            )
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def wait_for_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited with {proc.returncode} before answering {url}:\n{_tail(log)}"
            )
        try:
            return http_get(url, timeout=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            last = err
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url} within {timeout}s ({last}):\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as err:
        if isinstance(err, FileExistsError):
            raise
        shutil.copy2(src, dest)
