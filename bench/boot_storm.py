"""A boot storm: N machines power on within S seconds and each must boot.

    python bench/boot_storm.py --machines 10000 --ramp 10              # SQLite
    python bench/boot_storm.py --machines 10000 --ramp 10 --db postgresql
    python bench/boot_storm.py --machines 500 --ramp 2 --kernel-mb 1 --initrd-mb 4

Unlike ``ipxe_storm.py`` (wrk on ``/ipxe`` alone), every simulated machine here is
an iPXE client (``bench/ipxe_sim.py``) that DHCP pointed at ``/boot.ipxe``: it
executes the scripts it is answered — the bootstrap's retry schedule, the brain's
retry scripts, the decision script's download retries — downloads its kernel and
initrd from nginx at its link's speed, fetches its metadata with its per-boot
token and reports done. Everything goes through nginx configured as the Ansible
role deploys it (the role's site template, Debian's nginx defaults around it).

The same storm then runs against the naive reference brain (``naive_brain.py``: a
dict lookup, nothing recorded) behind the same nginx, for a ratio. Reported: time
to the last completion, machines that fell through to local disk or gave up (must
be 0), decision latency p50/p99/max, retries, errors by kind, the brain's CPU per
completed boot and its peak memory (all of its processes).

Only 127.0.0.1 is used; every process started is stopped; ``--time-limit`` bounds
each storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import multiprocessing.pool
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import jinja2
import psutil
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ipxe_sim import Identity, Link, Machine, Outcome, Trace  # noqa: E402
from bench.ipxe_storm import fill, free_port, mac_of  # noqa: E402

ROLE = ROOT / "ansible/roles/bootbrain"


# -- the servers -----------------------------------------------------------------------


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def role_site(**values: object) -> str:
    """The role's nginx site as it deploys it: its defaults and private variables
    where they are plain values, ``values`` for the rest (and to override)."""
    plain: dict[str, object] = {}
    for part in ("defaults", "vars"):
        for key, value in yaml.safe_load((ROLE / part / "main.yml").read_text()).items():
            if not (isinstance(value, str) and "{{" in value):
                plain[key] = value
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((ROLE / "templates/nginx-site.conf.j2").read_text()).render(
        plain | values
    )


def nginx_conf(tmp: Path, listen: int, upstream: str, assets: Path) -> Path:
    """Debian's nginx.conf with the role's edits, around the role's own site template."""
    site = role_site(
        bootbrain_gunicorn_bind=upstream,
        bootbrain_nginx_listen=[f"127.0.0.1:{listen}"],
        bootbrain_assets_dir=str(assets),
    )
    site = site.replace("/var/log/nginx/", f"{tmp}/")
    connections = int(role_site_value("bootbrain_nginx_worker_connections"))
    # As the role sets it, within what this unprivileged benchmark may raise it to.
    nofile = min(connections * 2, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    conf = tmp / "nginx.conf"
    # The main context as Debian ships it (worker_processes auto), with the
    # worker_connections and worker_rlimit_nofile the role sets in it.
    conf.write_text(
        f"worker_processes auto;\nworker_rlimit_nofile {nofile};\n"
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-main.log;\ndaemon off;\n"
        f"events {{ worker_connections {connections}; }}\n"
        "http {\n  sendfile on;\n  tcp_nopush on;\n  types_hash_max_size 2048;\n"
        "  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n"
        f"  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
        f"{site}\n}}\n"
    )
    return conf


def role_site_value(name: str) -> object:
    """A plain value of the role's defaults."""
    return yaml.safe_load((ROLE / "defaults/main.yml").read_text())[name]


@dataclass
class Servers:
    brain: subprocess.Popen[bytes]
    nginx: subprocess.Popen[bytes]
    base: str

    def stop(self) -> None:
        self.nginx.send_signal(signal.SIGQUIT)
        self.brain.send_signal(signal.SIGTERM)
        for proc in (self.nginx, self.brain):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start(kind: str, url: str, tmp: Path, assets: Path, workers: int | None) -> Servers:
    """bootbrain (``kind="bootbrain"``) or the naive brain, behind nginx."""
    port, web = free_port(), free_port()
    base = f"http://127.0.0.1:{web}"
    env = {**os.environ, "BOOTBRAIN_CONFIG": str(tmp / "empty.toml")}
    (tmp / "empty.toml").write_text("")
    log = (tmp / f"{kind}.log").open("w")
    if kind == "bootbrain":
        env |= {
            "BOOTBRAIN_DATABASE_URL": url,
            "BOOTBRAIN_DATA_DIR": str(tmp / "data"),
            "BOOTBRAIN_SECRET_KEY": "bench",
            "BOOTBRAIN_PUBLIC_URL": base,
            "BOOTBRAIN_ASSETS_URL": base + "/assets",
            "BOOTBRAIN_TRUSTED_PROXIES": "1",
        }
        (tmp / "data").mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "bootbrain", "serve", "--bind", f"127.0.0.1:{port}"]
        cmd += [*(["--workers", str(workers)] if workers else []), "--no-access-log"]
    else:
        env |= {"BENCH_DATABASE_URL": url, "BENCH_PUBLIC_URL": base, "PYTHONPATH": str(ROOT)}
        n = workers or len(os.sched_getaffinity(0))
        cmd = [sys.executable, "-m", "gunicorn", "-w", str(n), "-b", f"127.0.0.1:{port}"]
        cmd += ["bench.naive_brain:create_app()"]
    brain = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{port}/boot.ipxe")
        conf = nginx_conf(tmp, web, f"127.0.0.1:{port}", assets)
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)], stderr=log)
        wait_http(base + "/boot.ipxe")
    except BaseException as e:
        # SIGTERM, not SIGKILL: gunicorn's master then stops its workers too.
        for proc in (nginx, brain):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        if isinstance(e, RuntimeError):
            sys.exit(f"{kind} did not start:\n" + (tmp / f"{kind}.log").read_text()[-3000:])
        raise
    return Servers(brain, nginx, base)


# -- measuring the brain ---------------------------------------------------------------


class Meter:
    """CPU time and peak memory of a process tree (the brain: master, workers, children)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _read(self) -> None:
        rss = 0
        for p in self._procs():
            try:
                t = p.cpu_times()
                self._cpu[p.pid] = t.user + t.system
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def __enter__(self) -> Meter:
        self._read()
        self._base = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self._base.get(pid, 0.0) for pid, v in self._cpu.items())


# -- the storm -------------------------------------------------------------------------


@dataclass
class Report:
    name: str
    machines: int
    ramp: float
    traces: list[Trace] = field(default_factory=list)
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    t0: float = 0.0
    timed_out: int = 0

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.traces if t.outcome == outcome)

    @property
    def completed(self) -> int:
        return self.count(Outcome.COMPLETED)

    @property
    def fell_through(self) -> int:
        return self.machines - self.completed

    @property
    def last_at(self) -> float:
        done = [t.ended - self.t0 for t in self.traces if t.outcome == Outcome.COMPLETED]
        return max(done, default=float("nan"))

    def latencies_ms(self) -> list[float]:
        return sorted(x * 1000 for t in self.traces for x in t.decision_latencies)

    @property
    def cpu_ms_per_boot(self) -> float:
        return self.cpu_seconds * 1000 / self.completed if self.completed else float("nan")

    def print(self) -> None:
        lat = self.latencies_ms()
        errors: Counter[str] = Counter()
        for t in self.traces:
            errors.update(t.errors)
        outcomes = Counter(t.outcome for t in self.traces)
        print(f"== {self.name}")
        print(
            f"  outcomes: {dict(outcomes)}"
            + (f", timed out {self.timed_out}" if self.timed_out else "")
        )
        if lat:
            print(
                f"  decision latency: p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
                f"max {lat[-1]:.1f} ms ({len(lat)} decisions)"
            )
        print(f"  retries used: {sum(t.retries for t in self.traces)}")
        print(f"  errors by kind: {dict(errors) or 'none'}")
        failed = [t for t in self.traces if t.outcome != Outcome.COMPLETED]
        if failed:
            print(f"  a machine that did not complete said: {failed[0].messages[-4:]}")
        print(f"  last completion at {self.last_at:.1f} s")
        print(
            f"  brain CPU {self.cpu_seconds:.1f} s in all, {self.cpu_ms_per_boot:.2f} ms per "
            f"completed boot; peak memory {self.peak_rss / 2**20:.0f} MiB"
        )

    def line(self) -> str:
        lat = self.latencies_ms()
        p99 = pct(lat, 99) if lat else float("nan")
        return (
            f"storm: {self.machines} machines, {self.ramp:g} s ramp, completed {self.completed}, "
            f"fell through {self.fell_through}, last at {self.last_at:.1f} s, "
            f"decision p99 {p99:.0f} ms, brain CPU {self.cpu_ms_per_boot:.2f} ms/boot"
        )


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


#: Machines beyond the storm's that boot once before it, unmeasured: a real storm
#: meets a brain that has been serving (workers forked, templates and statements
#: prepared), not one started a second ago.
WARM_UP = 32


async def loop_lag(lag: list[float]) -> None:
    """How late the simulator's loop runs a timer: its own lag, reported, because a
    simulator that cannot keep up makes the brain look slower than it is."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.1)
        lag[0] = max(lag[0], time.monotonic() - t - 0.1)


async def warm_up(base: str, first: int) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        link = Link(session, 0)
        for i in range(first, first + WARM_UP):
            trace = await Machine(Identity(mac=mac_of(i)), link).run(base + "/boot.ipxe")
            if trace.outcome != Outcome.COMPLETED:
                sys.exit(f"warm-up machine {i} did not boot: {trace}")


#: What one simulator process brings back: its machines' traces, how many it stopped
#: at the time limit, its event loop's worst lag (a tuple: the class of a spawned
#: process's ``__main__`` would not unpickle here).
Part = tuple[list[Trace], int, float]


async def storm_part(
    base: str, plan: list[tuple[int, float]], t0: float, link_mbps: float, limit: float
) -> Part:
    """Machines ``plan`` ((inventory number, power-on time after ``t0``)), in one
    event loop. ``t0`` is on ``time.monotonic()``, which every process shares."""
    # No pooling across machines (each has its own NIC and TCP stack): a fresh
    # connection per request, as iPXE makes for each chain and download here.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": "iPXE/1.0.0+storm"}
    ) as session:
        link = Link(session, link_mbps * 1e6)

        async def one(i: int, at: float) -> Trace:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            return await Machine(Identity(mac=mac_of(i)), link).run(base + "/boot.ipxe")

        lag = [0.0]
        lagging = asyncio.create_task(loop_lag(lag))
        tasks = [asyncio.create_task(one(i, at)) for i, at in plan]
        done, pending = await asyncio.wait(tasks, timeout=max(1.0, t0 + limit - time.monotonic()))
        for task in pending:
            task.cancel()
        lagging.cancel()
        traces = [t.result() for t in done if not t.cancelled() and t.exception() is None]
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                tr = Trace(outcome=Outcome.ERROR)
                tr.errors[f"simulator: {type(t.exception()).__name__}"] += 1
                traces.append(tr)
        return traces, len(pending), lag[0]


def _run_part(
    base: str, plan: list[tuple[int, float]], t0: float, link_mbps: float, limit: float
) -> Part:
    return asyncio.run(storm_part(base, plan, t0, link_mbps, limit))


#: Machines one simulator process drives at most (one event loop: at 2,000 machines
#: over 10 s a single loop lagged by seconds and lost connections).
MACHINES_PER_PROCESS = 1000
#: Time the simulator processes get to start before the first machine powers on.
LEAD = 1.0


@contextlib.contextmanager
def simulators(processes: int) -> Iterator[multiprocessing.pool.Pool]:
    """``processes`` simulator processes, forked now (before the meter's thread starts:
    a fork copies no running thread, and a spawned interpreter would take seconds to
    import what this one has); all stopped on the way out, whatever happened.

    They run at a lower priority (nice 10) than the brain and nginx: real machines
    bring their own CPUs, and here the clients' reading of every kernel and initrd
    (600 GB for 10,000 machines at the defaults) would otherwise take the CPU the
    brain answers with, and the storm would measure the simulator."""
    pool = multiprocessing.get_context("fork").Pool(processes, initializer=os.nice, initargs=(10,))
    try:
        yield pool
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def storm(
    pool: multiprocessing.pool.Pool,
    processes: int,
    base: str,
    n: int,
    ramp: float,
    link_mbps: float,
    limit: float,
    seed: int,
) -> tuple[list[Trace], float, int]:
    """The storm, its machines dealt round-robin in power-on order over ``processes``
    simulator processes (each its own event loop), their traces merged."""
    rng = random.Random(seed)
    starts = sorted(rng.uniform(0, ramp) for _ in range(n))
    order = list(range(1, n + 1))
    rng.shuffle(order)  # machines power on in no particular order of the inventory
    plan = list(zip(order, starts, strict=True))
    plans = [plan[k::processes] for k in range(processes)]
    t0 = time.monotonic() + LEAD
    pending = [pool.apply_async(_run_part, (base, part, t0, link_mbps, limit)) for part in plans]
    parts = [r.get(timeout=LEAD + limit + 120) for r in pending]
    lag = max(p[2] for p in parts)
    print(f"  {processes} simulator processes; their event loops lagged up to {lag:.2f} s")
    traces = [t for p in parts for t in p[0]]
    return traces, t0, sum(p[1] for p in parts)


def run_one(kind: str, url: str, args: argparse.Namespace, assets: Path) -> Report:
    where: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="bb-storm-"))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="bb-storm-")
    )
    with where as t:
        tmp = Path(t)
        if args.keep:
            print(f"  logs kept in {tmp}")
        tmp.chmod(0o755)
        servers = start(kind, url, tmp, assets, args.workers)
        try:
            asyncio.run(warm_up(servers.base, args.machines + 1))
            processes = args.processes or max(1, -(-args.machines // MACHINES_PER_PROCESS))
            with simulators(processes) as pool, Meter(servers.brain.pid) as meter:
                traces, t0, timed_out = storm(
                    pool,
                    processes,
                    servers.base,
                    args.machines,
                    args.ramp,
                    args.link_mbps,
                    args.time_limit,
                    args.seed,
                )
            name = f"{kind} ({args.db_name}, {args.machines:,} machines)"
            report = Report(
                name,
                args.machines,
                args.ramp,
                traces,
                meter.cpu_seconds,
                meter.peak_rss,
                t0,
                timed_out,
            )
            errors = (tmp / "nginx-main.log").read_text(errors="replace") + (
                tmp / "bootbrain.error.log"
            ).read_text(errors="replace")
            kinds = Counter(
                re.sub(r"\d+", "N", m.group(1))
                for m in re.finditer(
                    r"\[(?:error|crit|alert|emerg)\] [\d#]+: (?:\*\d+ )?([^,]*)", errors
                )
            )
            if kinds:
                print(f"  nginx logged: {dict(kinds.most_common(6))}")
            status = Counter(
                re.findall(
                    r'" (\d{3}) ', (tmp / "bootbrain.access.log").read_text(errors="replace")
                )
            )
            print(f"  nginx answered: {dict(sorted(status.items()))}")
        finally:
            servers.stop()
    return report


def make_assets(dest: Path, kernel_mb: float, initrd_mb: float) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    dest.parent.chmod(0o755)
    for name, mb in (("vmlinuz", kernel_mb), ("initrd.img", initrd_mb)):
        with (dest / name).open("wb") as f:
            f.truncate(int(mb * 2**20))  # sparse: the page cache serves zeros


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--machines", type=int, default=10_000)
    ap.add_argument("--ramp", type=float, default=10.0, help="seconds over which machines power on")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument(
        "--pg-url", help="PostgreSQL URL (default: scripts/postgres-for-tests.sh's bench database)"
    )
    ap.add_argument("--kernel-mb", type=float, default=10.0)
    ap.add_argument("--initrd-mb", type=float, default=50.0)
    ap.add_argument(
        "--link-mbps", type=float, default=1000.0, help="each machine's link speed; 0: unthrottled"
    )
    ap.add_argument(
        "--workers", type=int, help="gunicorn workers for both brains (default: bootbrain serve's)"
    )
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds a storm may take")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--processes",
        type=int,
        help=f"simulator processes (default: one per {MACHINES_PER_PROCESS:,} machines)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the servers' logs")
    ap.add_argument("--no-reference", action="store_true", help="skip the naive brain's storm")
    args = ap.parse_args()
    if not shutil.which("nginx"):
        sys.exit("nginx is missing: apt-get install nginx-light")
    if args.db == "sqlite":
        url = f"sqlite:///{tempfile.gettempdir()}/bootbrain-storm.db"
    else:
        url = args.pg_url or subprocess.run(
            ["bash", str(ROOT / "scripts/postgres-for-tests.sh")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip().replace("bootbrain_test", "bootbrain_bench")
    args.db_name = args.db
    with tempfile.TemporaryDirectory(prefix="bb-storm-assets-") as a:
        assets = Path(a) / "assets"
        make_assets(assets, args.kernel_mb, args.initrd_mb)
        print(
            f"storm of {args.machines:,} machines over {args.ramp:g} s; "
            f"kernel {args.kernel_mb:g} MB, initrd {args.initrd_mb:g} MB, "
            f"{args.link_mbps:g} Mbit/s a machine; {args.db}"
        )
        fill(url, args.machines + WARM_UP)
        ours = run_one("bootbrain", url, args, assets)
        ours.print()
        if not args.no_reference:
            fill(url, args.machines + WARM_UP)  # the same inventory, without bootbrain's records
            ref = run_one("naive", url, args, assets)
            ref.print()
            print(
                f"ratio: bootbrain uses {ours.cpu_ms_per_boot / ref.cpu_ms_per_boot:.2f}x "
                f"the naive brain's CPU per boot; "
                f"last completion {ours.last_at / ref.last_at:.2f}x as late"
            )
        print(ours.line())
    sys.exit(0 if ours.fell_through == 0 else 1)


if __name__ == "__main__":
    main()
