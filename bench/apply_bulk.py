"""Benchmark of ``bootbrain apply`` on a large file: seconds to apply N machines to an
empty SQLite inventory, then to plan the same file again (nothing to do).

    python bench/apply_bulk.py [--machines 100000] [--dir /tmp/bench-apply]

Each machine has a hostname, two NICs, a static address on one of the /16 networks,
a profile and two tags, as an exported inventory would. Wall-clock time of this
process (``time.perf_counter``), on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from bootbrain.db import Database
from bootbrain.inventory import apply as inventory_apply
from bootbrain.models import Base


def document(machines: int) -> str:
    nets = max(1, machines // 60000 + 1)
    doc = {
        "networks": [
            {"name": f"net{i}", "cidr": f"10.{i}.0.0/16", "gateway": f"10.{i}.0.1"}
            for i in range(nets)
        ],
        "profiles": [{"name": "disk", "kind": "local"}],
        "machines": [
            {
                "hostname": f"node-{i:06d}",
                "nics": [
                    {
                        "mac": f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                        f"{i & 255:02x}",
                        "boot": True,
                    },
                    {
                        "mac": f"52:55:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                        f"{i & 255:02x}"
                    },
                ],
                "network": f"net{i // 60000}",
                "address": f"10.{i // 60000}.{(i % 60000 + 2) >> 8}.{(i % 60000 + 2) & 255}",
                "state": "ready",
                "profile": "disk",
                "tags": ["bench", f"rack{i % 40}"],
            }
            for i in range(machines)
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-apply-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "bench.db"
    db_path.unlink(missing_ok=True)
    db = Database(f"sqlite:///{db_path}")
    Base.metadata.create_all(db.engine)
    text = document(args.machines)
    start = time.perf_counter()
    plan = inventory_apply.apply(db, text, "bench")
    applied = time.perf_counter() - start
    start = time.perf_counter()
    again = inventory_apply.plan(db, text)
    replanned = time.perf_counter() - start
    print(
        f"{args.machines} machines: applied {plan.counts()['create']} creates in {applied:.1f} s; "
        f"planned again ({len(again.changes)} changes) in {replanned:.1f} s"
    )
    db.dispose()


if __name__ == "__main__":
    main()
