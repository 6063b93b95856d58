"""Boot-storm benchmark: /ipxe for random existing machines under wrk, beside the
naive reference brain (``bench/naive_brain.py``: the same machines in a Python dict
under the same gunicorn) and nginx serving a static file of the same size, in the
same run.

    python bench/ipxe_storm.py                    # 100,000 machines, SQLite and PostgreSQL
    python bench/ipxe_storm.py --machines 100000 --db sqlite --workers 1 --wrk-cpu 1
    python bench/ipxe_storm.py --machines 1000000 --db sqlite
    python bench/ipxe_storm.py --machines 100 --machines 100000   # cost vs size

Prints requests/s, p50 and p99 for each, the servers' CPU per request (every
process of the server: gunicorn's master and workers, nginx's workers), and
bootbrain's throughput and CPU per request as ratios of the naive brain's and of
nginx's (these machines are noisy; the ratios are what to compare across runs).
``--workers 1 --wrk-cpu 1`` gives each server one core and wrk the other. Each
server first gets a 5-second run that is not counted (connections, prepared
statements and caches warm up, as they are long before a real storm).
Needs wrk and nginx (Debian packages); PostgreSQL via scripts/postgres-for-tests.sh.
Everything listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootbrain import migrate  # noqa: E402
from bootbrain.db import Database  # noqa: E402
from bootbrain.models import Machine, Network, Nic, Profile, utcnow  # noqa: E402

CONNECTIONS = 64
DURATION = "15s"
WARMUP = "5s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mac_of(i: int) -> str:
    return "02:" + ":".join(f"{(i >> s) & 0xFF:02x}" for s in (32, 24, 16, 8, 0))


def fill(url: str, n: int) -> None:
    """n machines with a NIC, a static address and a linux profile, by bulk insert."""
    migrate.upgrade(url)
    db = Database(url)
    tables = ("event", "boot", "next_boot", "machine_tag", "nic", "bmc", "machine", "rule")
    tables += ("profile", "network")
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
        else:
            # Not DELETE: emptying a million rows that way writes WAL for every row and
            # leaves them dead for vacuum, work that can run into the next measurement.
            conn.execute(text(f"TRUNCATE {', '.join(tables)}"))
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(
            insert(Network),
            [
                {
                    "id": 1,
                    "name": "bench",
                    "cidr": "10.0.0.0/8",
                    "gateway": "10.0.0.1",
                    "dns": ["10.0.0.2"],
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
            ],
        )
        conn.execute(
            insert(Profile),
            [
                {
                    "id": 1,
                    "name": "install",
                    "kind": "linux",
                    "kernel": "{{ assets }}/vmlinuz",
                    "initrds": ["{{ assets }}/initrd.img"],
                    "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0",
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
            ],
        )
    batch = 20_000
    for start in range(0, n, batch):
        ids = range(start + 1, min(n, start + batch) + 1)
        with db.engine.begin() as conn:
            conn.execute(
                insert(Machine),
                [
                    {
                        "id": i,
                        "hostname": f"n{i}",
                        "state": "ready",
                        "profile_id": 1,
                        "network_id": 1,
                        "address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                        "interface": "eth0",
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Nic), [{"machine_id": i, "mac": mac_of(i), "boot": True} for i in ids]
            )
    # A real inventory is not bulk-loaded seconds before a boot storm: settle the
    # tables first, or autovacuum and fresh statistics compete with the measurement.
    raw: Any = db.engine.raw_connection().driver_connection  # outside any transaction
    if db.is_sqlite:  # in autocommit already (bootbrain.db sets it on connect)
        raw.execute("ANALYZE")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        raw.autocommit = True
        raw.execute("VACUUM ANALYZE")
        # The load and the vacuum wrote gigabytes of WAL; the checkpoints they set off
        # spread their writes over minutes, into the measurement, unless done now.
        from psycopg.errors import InsufficientPrivilege

        try:
            raw.execute("CHECKPOINT")
        except InsufficientPrivilege as e:  # PostgreSQL ≥ 15: role pg_checkpoint
            print(f"note: no CHECKPOINT after the load ({e}); one may overlap the run")
    db.dispose()


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_seconds: float = float("nan")

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / self.requests if self.requests else float("nan")


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    assert m, value
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its children so far."""
    root = psutil.Process(pid)
    total = 0.0
    for p in (root, *root.children(recursive=True)):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def pinned(cpus: set[int] | None) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []


def run_wrk(
    name: str,
    url: str,
    lua: Path | None,
    duration: str = DURATION,
    *,
    server: int | None = None,
    cpus: set[int] | None = None,
) -> Result:
    """wrk against ``url``; with ``server`` (a pid), that process tree's CPU meanwhile."""
    cmd = [*pinned(cpus), "wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}", "--latency"]
    if lua:
        cmd += ["-s", str(lua)]
    before = tree_cpu(server) if server else 0.0
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    cpu = tree_cpu(server) - before if server else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests_ = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(x) for x in re.findall(r"(?:Non-2xx or 3xx responses|timeout)\D+(\d+)", out))
    return Result(name, rps, p50, p99, errors, requests_, cpu)


@dataclass
class Setup:
    """Where each program runs: wrk on ``wrk_cpus``, the servers on ``server_cpus``
    (None: anywhere)."""

    workers: int | None
    wrk_cpus: set[int] | None = None
    server_cpus: set[int] | None = None


def start_nginx(tmp: Path, body_size: int, setup: Setup) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    root = tmp / "www"
    root.mkdir()
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user
    (root / "static.ipxe").write_bytes(b"#" * body_size)
    conf = tmp / "nginx.conf"
    workers = setup.workers or len(setup.server_cpus or os.sched_getaffinity(0))
    conf.write_text(f"""
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    proc = subprocess.Popen([*pinned(setup.server_cpus), "nginx", "-c", str(conf), "-p", str(tmp)])
    started(proc, f"http://127.0.0.1:{port}/static.ipxe")
    return proc, port


def started(proc: subprocess.Popen[bytes], url: str) -> None:
    """Wait for ``url``; a server that does not come up is stopped (SIGTERM: gunicorn's
    master stops its workers), never left running."""
    try:
        wait_http(url)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise


def wait_http(url: str) -> None:
    for _ in range(200):
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still loading the app
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_bootbrain(url: str, tmp: Path, setup: Setup) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "BOOTBRAIN_DATABASE_URL": url,
        "BOOTBRAIN_DATA_DIR": str(tmp),
        "BOOTBRAIN_SECRET_KEY": "bench",
        "BOOTBRAIN_CONFIG": str(tmp / "empty.toml"),
        "BOOTBRAIN_PUBLIC_URL": "http://10.0.0.1",
    }
    (tmp / "empty.toml").write_text("")
    proc = subprocess.Popen(
        [
            *pinned(setup.server_cpus),
            sys.executable,
            "-m",
            "bootbrain",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            *(["--workers", str(setup.workers)] if setup.workers else []),
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "gunicorn.log").open("w"),
    )
    started(proc, f"http://127.0.0.1:{port}/healthz")
    return proc, port


def start_naive(url: str, tmp: Path, setup: Setup) -> tuple[subprocess.Popen[bytes], int]:
    """The naive reference brain under gunicorn's own sync workers, as many as
    bootbrain's (``bootbrain serve``'s default when ``--workers`` is not given)."""
    from bootbrain.server import default_workers

    port = free_port()
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": url,
        "BENCH_PUBLIC_URL": "http://10.0.0.1",
        "PYTHONPATH": str(ROOT),
    }
    workers = setup.workers or default_workers()
    proc = subprocess.Popen(
        [
            *pinned(setup.server_cpus),
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "bench.naive_brain:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "naive.log").open("w"),
    )
    started(proc, f"http://127.0.0.1:{port}/boot.ipxe")
    return proc, port


def lua_script(tmp: Path, n: int) -> Path:
    """Each request for a machine drawn at random from all ``n`` (``mac_of``, computed
    in Lua): a boot storm touches every part of the inventory, never a warm subset.
    Each wrk thread gets its own random sequence."""
    path = tmp / "random_machines.lua"
    path.write_text(
        f"local n = {n}\n"
        "local threads = 0\n"
        "function setup(thread)\n"
        "  threads = threads + 1\n"
        '  thread:set("thread_id", threads)\n'
        "end\n"
        "function init(args)\n"
        "  math.randomseed(os.time() * 1000 + thread_id)\n"
        "end\n"
        "local floor = math.floor\n"
        "request = function()\n"
        "  local i = math.random(n)\n"
        '  local mac = string.format("02-%02x-%02x-%02x-%02x-%02x", floor(i / 2^32) % 256,\n'
        "    floor(i / 2^24) % 256, floor(i / 2^16) % 256, floor(i / 2^8) % 256, i % 256)\n"
        '  return wrk.format("GET", "/ipxe?uuid=&mac=" .. mac .. "&serial=&board-serial='
        '&manufacturer=&product=&asset=&buildarch=x86_64&platform=efi")\n'
        "end\n"
    )
    return path


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _measure(name: str, base: str, lua: Path | None, pid: int, setup: Setup) -> Result:
    run_wrk("warm-up", base, lua, WARMUP, cpus=setup.wrk_cpus)
    return run_wrk(name, base, lua, server=pid, cpus=setup.wrk_cpus)


def bench_one(db_name: str, url: str, n: int, setup: Setup) -> tuple[list[Result], int]:
    """bootbrain, the naive brain and nginx, one after another on the same inventory."""
    fill(url, n)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bb-bench-") as t:
        tmp = Path(t)
        lua = lua_script(tmp, n)
        bb, bb_port = start_bootbrain(url, tmp, setup)
        try:
            sample = requests.get(
                f"http://127.0.0.1:{bb_port}/ipxe?mac={mac_of(1).replace(':', '-')}"
                "&buildarch=x86_64&platform=efi",
                timeout=5,
            )
            assert "kernel" in sample.text, sample.text
            results.append(
                _measure(
                    f"bootbrain /ipxe ({db_name}, {n:,} machines)",
                    f"http://127.0.0.1:{bb_port}",
                    lua,
                    bb.pid,
                    setup,
                )
            )
        finally:
            _stop(bb)
        naive, naive_port = start_naive(url, tmp, setup)
        try:
            check = requests.get(
                f"http://127.0.0.1:{naive_port}/ipxe?mac={mac_of(1).replace(':', '-')}", timeout=5
            )
            assert "kernel" in check.text, check.text
            results.append(
                _measure("naive Flask dict brain /ipxe", f"http://127.0.0.1:{naive_port}", lua,
                         naive.pid, setup)
            )  # fmt: skip
        finally:
            _stop(naive)
        ng, ng_port = start_nginx(tmp, len(sample.content), setup)
        try:
            static = f"http://127.0.0.1:{ng_port}/static.ipxe"
            results.append(_measure("nginx static file, same size", static, None, ng.pid, setup))
        finally:
            _stop(ng, signal.SIGQUIT)
    return results, len(sample.content)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--machines", type=int, action="append", help="inventory size (repeatable)")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument(
        "--workers",
        type=int,
        help="gunicorn workers of both brains, nginx's workers (default: bootbrain serve's)",
    )
    ap.add_argument(
        "--wrk-cpu",
        type=int,
        action="append",
        help="run wrk on this CPU and the servers on the others (repeatable; needs taskset)",
    )
    args = ap.parse_args()
    for tool in ("wrk", "nginx", *(["taskset"] if args.wrk_cpu else [])):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install wrk nginx-light util-linux")
    setup = Setup(args.workers)
    if args.wrk_cpu:
        setup.wrk_cpus = set(args.wrk_cpu)
        setup.server_cpus = os.sched_getaffinity(0) - setup.wrk_cpus
        if not setup.server_cpus:
            sys.exit("--wrk-cpu leaves no CPU for the servers")
    sizes = args.machines or [100_000]
    dbs = []
    if args.db in ("sqlite", "both"):
        dbs.append(("sqlite", f"sqlite:///{tempfile.gettempdir()}/bootbrain-bench.db"))
    if args.db in ("postgresql", "both"):
        pg = subprocess.run(
            ["bash", str(ROOT / "scripts/postgres-for-tests.sh")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dbs.append(("postgresql", pg.replace("bootbrain_test", "bootbrain_bench")))
    print(
        f"{'what':<46} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'CPU µs/req':>10} {'vs naive':>8} {'vs nginx':>8}"
    )
    for name, url in dbs:
        for n in sizes:
            results, size = bench_one(name, url, n, setup)
            ours, naive, ref = results
            for r in results:
                figures = (
                    f"{r.rps:7.0f} {r.p50_ms:7.1f} {r.p99_ms:7.1f} {r.errors:6d} "
                    f"{r.cpu_us_per_request:10.0f} {r.rps / naive.rps:8.1%} {r.rps / ref.rps:8.1%}"
                )
                print(f"{r.name:<46} {figures}")
            cpu_ratio = ours.cpu_us_per_request / naive.cpu_us_per_request
            print(
                f"  bootbrain's CPU per /ipxe is {cpu_ratio:.2f}x "
                f"the naive brain's; its req/s {ours.rps / naive.rps:.2f}x "
                f"(response body {size} bytes, {CONNECTIONS} connections, {DURATION}, "
                f"workers {setup.workers or 'default'}"
                + (f", wrk on CPU {sorted(setup.wrk_cpus)}" if setup.wrk_cpus else "")
                + ")"
            )


if __name__ == "__main__":
    main()
