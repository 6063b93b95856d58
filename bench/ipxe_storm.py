"""Boot-storm benchmark: /ipxe for random existing machines under wrk, beside nginx
serving a static file of the same size, in the same run.

    python bench/ipxe_storm.py                    # 100,000 machines, SQLite and PostgreSQL
    python bench/ipxe_storm.py --machines 1000000 --db sqlite
    python bench/ipxe_storm.py --machines 100 --machines 100000   # cost vs size

Prints requests/s, p50 and p99 for each, and bootbrain's throughput as a ratio of
nginx's (these machines are noisy; the ratio is what to compare across runs). Each
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
    tables = ("event", "boot", "next_boot", "machine_tag", "nic", "machine", "rule")
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


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    assert m, value
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def run_wrk(name: str, url: str, lua: Path | None, duration: str = DURATION) -> Result:
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration}", "--latency"]
    if lua:
        cmd += ["-s", str(lua)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(x) for x in re.findall(r"(?:Non-2xx or 3xx responses|timeout)\D+(\d+)", out))
    return Result(name, rps, p50, p99, errors)


def start_nginx(tmp: Path, body_size: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    root = tmp / "www"
    root.mkdir()
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user
    (root / "static.ipxe").write_bytes(b"#" * body_size)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
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
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)])
    wait_http(f"http://127.0.0.1:{port}/static.ipxe")
    return proc, port


def wait_http(url: str) -> None:
    for _ in range(200):
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_bootbrain(
    url: str, tmp: Path, workers: int | None
) -> tuple[subprocess.Popen[bytes], int]:
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
            sys.executable,
            "-m",
            "bootbrain",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            *(["--workers", str(workers)] if workers else []),
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "gunicorn.log").open("w"),
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
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


def bench_one(db_name: str, url: str, n: int, workers: int | None) -> tuple[Result, Result, int]:
    fill(url, n)
    with tempfile.TemporaryDirectory(prefix="bb-bench-") as t:
        tmp = Path(t)
        bb, bb_port = start_bootbrain(url, tmp, workers)
        try:
            sample = requests.get(
                f"http://127.0.0.1:{bb_port}/ipxe?mac={mac_of(1).replace(':', '-')}"
                "&buildarch=x86_64&platform=efi",
                timeout=5,
            )
            assert "kernel" in sample.text, sample.text
            ng, ng_port = start_nginx(tmp, len(sample.content))
            try:
                lua = lua_script(tmp, n)
                run_wrk("warm-up", f"http://127.0.0.1:{bb_port}", lua, WARMUP)
                ours = run_wrk(
                    f"bootbrain /ipxe ({db_name}, {n:,} machines)",
                    f"http://127.0.0.1:{bb_port}",
                    lua,
                )
                static = f"http://127.0.0.1:{ng_port}/static.ipxe"
                run_wrk("warm-up", static, None, WARMUP)
                ref = run_wrk("nginx static file, same size", static, None)
            finally:
                ng.send_signal(signal.SIGQUIT)
                ng.wait(timeout=10)
        finally:
            bb.terminate()
            bb.wait(timeout=30)
    return ours, ref, len(sample.content)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--machines", type=int, action="append", help="inventory size (repeatable)")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--workers", type=int, help="gunicorn workers (default: bootbrain serve's)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install wrk nginx-light")
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
    print(f"{'what':<50} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs nginx':>9}")
    for name, url in dbs:
        for n in sizes:
            ours, ref, size = bench_one(name, url, n, args.workers)
            for r in (ours, ref):
                ratio = f"{r.rps / ref.rps:8.1%}" if r is ours else ""
                figures = f"{r.rps:9.0f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} {r.errors:7d}"
                print(f"{r.name:<50} {figures} {ratio:>9}")
            print(f"{'':<50} (response body {size} bytes, {CONNECTIONS} connections, {DURATION})")


if __name__ == "__main__":
    main()
