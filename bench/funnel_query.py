"""What the boot funnel's reads cost on a full event log.

    python bench/funnel_query.py --url sqlite:////tmp/funnel.db --machines 10000
    python bench/funnel_query.py --url postgresql+psycopg://bootbrain:bootbrain@127.0.0.1:5432/bootbrain_bench

Fills an empty, migrated inventory with ``--machines`` machines that each booted
``--attempts`` times (lease, bootstrap, decision, kernel, initrd, two documents,
completion), one in a hundred of them stuck after the kernel, then times
``machine_boots`` (the API's ``/machines/{id}/boots``) for random machines and
``stuck_boots`` (``/boots?stuck=true``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bootbrain import migrate  # noqa: E402
from bootbrain.config import Settings  # noqa: E402
from bootbrain.db import Database  # noqa: E402
from bootbrain.inventory import funnel  # noqa: E402
from bootbrain.models import Boot, Event, Machine, Nic, Profile, utcnow  # noqa: E402


def fill(db: Database, machines: int, attempts: int) -> None:
    now = utcnow()
    with db.write() as s:
        s.add(
            Profile(
                name="installer",
                kind="linux",
                kernel="{{ assets }}/vmlinuz",
                initrds=["{{ assets }}/initrd.img"],
            )
        )
    for start in range(1, machines + 1, 1000):
        ids = range(start, min(start + 1000, machines + 1))
        events: list[dict[str, Any]] = []
        boots: list[dict[str, Any]] = []
        for m in ids:
            mac = f"52:54:{m >> 24 & 255:02x}:{m >> 16 & 255:02x}:{m >> 8 & 255:02x}:{m & 255:02x}"
            ip = f"10.{m >> 16 & 255}.{m >> 8 & 255}.{m & 255}"
            stuck = m % 100 == 0
            for a in range(attempts):
                t0 = now - timedelta(hours=attempts - a, seconds=random.random() * 600)
                if stuck and a == attempts - 1:
                    t0 = now - timedelta(hours=1)
                boot_id = f"b{m:08d}{a:04d}"
                boots.append(
                    {
                        "id": boot_id,
                        "machine_id": m,
                        "token_hash": boot_id,
                        "profile_name": "installer",
                        "step": "assigned",
                        "created_at": t0 + timedelta(seconds=20),
                        "expires_at": t0 + timedelta(hours=2),
                        "completed_at": None,
                    }
                )

                def ev(
                    kind: str,
                    dt: float,
                    _t0: Any = t0,
                    _m: int = m,
                    _mac: str = mac,
                    _ip: str = ip,
                    _events: list[dict[str, Any]] = events,
                    **kw: Any,
                ) -> None:
                    _events.append(
                        {
                            "at": _t0 + timedelta(seconds=dt),
                            "kind": kind,
                            "machine_id": kw.pop("machine_id", _m),
                            "mac": kw.pop("mac", _mac),
                            "ip": _ip,
                            "message": kind,
                            "data": kw,
                            "ref": None,
                        }
                    )  # fmt: skip

                ev("lease", 0, action="add", source="dnsmasq")
                ev("bootstrap", 20, machine_id=None, mac=None)
                ev("boot", 20.2, step="assigned", profile="installer", boot_id=boot_id)
                ev("asset", 20.4, machine_id=None, mac=None, path="/assets/vmlinuz", bytes=8e6)
                if stuck and a == attempts - 1:
                    continue
                ev("asset", 22, machine_id=None, mac=None, path="/assets/initrd.img", bytes=3e7)
                ev("metadata", 30, document="meta-data", boot_id=boot_id)
                ev("metadata", 30.1, document="user-data", boot_id=boot_id)
                ev("completion", 45, boot_id=boot_id)
                boots[-1]["completed_at"] = t0 + timedelta(seconds=45)
        with db.write() as s:
            s.execute(insert(Machine), [{"id": m, "state": "ready", "version": 1} for m in ids])
            nic_macs = [
                f"02:00:00:{m >> 16 & 255:02x}:{m >> 8 & 255:02x}:{m & 255:02x}" for m in ids
            ]
            s.execute(
                insert(Nic),
                [
                    {"machine_id": m, "mac": x, "boot": True}
                    for m, x in zip(ids, nic_macs, strict=True)
                ],
            )
            s.execute(insert(Boot), boots)
            s.execute(insert(Event), events)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--machines", type=int, default=10_000)
    ap.add_argument("--attempts", type=int, default=5)
    ap.add_argument("--samples", type=int, default=300)
    args = ap.parse_args()
    migrate.upgrade(args.url)
    db = Database(args.url)
    settings = Settings.model_validate({"database_url": args.url, "secret_key": "bench"})
    with db.read() as s:
        empty = s.get(Machine, 1) is None
    if empty:
        t = time.perf_counter()
        fill(db, args.machines, args.attempts)
        print(f"filled {args.machines} machines in {time.perf_counter() - t:.0f} s")
    now = utcnow()
    times = []
    for _ in range(args.samples):
        m = random.randint(1, args.machines)
        t = time.perf_counter()
        got = funnel.machine_boots(db, settings, m, 10, now)
        times.append(time.perf_counter() - t)
        assert len(got) == args.attempts and len(got[-1].stages) >= 4, got
    times.sort()
    print(
        f"machine_boots(limit=10): p50 {statistics.median(times) * 1000:.1f} ms, "
        f"p99 {times[int(len(times) * 0.99) - 1] * 1000:.1f} ms"
    )
    t = time.perf_counter()
    stuck = funnel.stuck_boots(db, settings, 1000, now)
    print(f"stuck_boots: {len(stuck)} stuck in {(time.perf_counter() - t) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
