"""Benchmark of ``bootbrain apply`` and ``export`` on a large inventory.

    python bench/apply_bulk.py [--machines 100000] [--dir /tmp/bench-apply] [--pg URL]

Times, on a fresh database: parsing the file (with every bound the import keeps),
planning it, applying it (all creates), planning it again (no changes), applying an
update of 1 % of the machines, and exporting the inventory. Two references are
measured in the same run, so the figures read as ratios whatever else the machine is
doing: ``yaml.safe_load`` of the same file (what a naive reader pays just to read
it) and a raw ``executemany`` of the same machine and NIC rows (the least a write of
them costs; rolled back). SQLite always; PostgreSQL too with ``--pg`` or
``BOOTBRAIN_TEST_PG_URL`` (its tables are dropped and created again).

Each machine has a hostname, two NICs, a static address on one of the /16 networks,
a profile and two tags, as an exported inventory would. Wall-clock time of this
process (``time.perf_counter``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlalchemy import insert

from bootbrain.db import Database
from bootbrain.inventory import apply as inventory_apply
from bootbrain.inventory import transfer
from bootbrain.models import Base, Machine, Nic, utcnow

T = TypeVar("T")
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _mac(prefix: str, i: int) -> str:
    return f"{prefix}:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def document(machines: int, moved: int = 0) -> str:
    """The inventory file; every ``moved``-th machine (0: none) gets another tag."""
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
                "nics": [{"mac": _mac("52:54", i), "boot": True}, {"mac": _mac("52:55", i)}],
                "network": f"net{i // 60000}",
                "address": f"10.{i // 60000}.{(i % 60000 + 2) >> 8}.{(i % 60000 + 2) & 255}",
                "state": "ready",
                "profile": "disk",
                "tags": ["bench", "moved" if moved and i % moved == 0 else f"rack{i % 40}"],
            }
            for i in range(machines)
        ],
    }
    return yaml.dump(doc, Dumper=Dumper, sort_keys=False)


def raw_insert(db: Database, machines: list[dict[str, Any]]) -> None:
    """The file's machines and NICs written with bare ``executemany`` (then rolled
    back): the floor under any apply of them."""
    now = utcnow()
    with db.engine.connect() as conn:
        ids = conn.execute(
            insert(Machine.__table__).returning(  # type: ignore[arg-type]
                Machine.__table__.c.id, sort_by_parameter_order=True
            ),
            [
                {
                    "hostname": m["hostname"],
                    "state": m["state"],
                    "address": m["address"],
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                    "ssh_keys": [],
                    "meta": {},
                }
                for m in machines
            ],
        ).scalars()
        conn.execute(
            insert(Nic.__table__),  # type: ignore[arg-type]
            [
                {"machine_id": i, "mac": n["mac"], "boot": n.get("boot", False)}
                for i, m in zip(ids, machines, strict=True)
                for n in m["nics"]
            ],
        )
        conn.rollback()


def run(url: str, machines: int) -> list[tuple[str, float, float, str]]:
    db = Database(url)
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)
    text, moved = document(machines), document(machines, moved=100)
    out: list[tuple[str, float, float, str]] = []

    def timed(label: str, fn: Callable[[], T], note: Callable[[T], str] = lambda _: "") -> T:
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        out.append((label, time.perf_counter() - start, time.process_time() - cpu, note(result)))
        print(f"  ... {label}: {out[-1][1]:.1f} s (cpu {out[-1][2]:.1f} s)", flush=True)
        return result

    def changes(p: inventory_apply.Plan) -> str:
        n = p.counts()
        return f"{n['create']} created, {n['update']} changed, {n['delete']} deleted"

    timed("reference: yaml.safe_load", lambda: yaml.safe_load(text))
    rows = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["machines"]
    timed("reference: raw executemany", lambda: raw_insert(db, rows))
    timed("parse (bounded, libyaml)", lambda: list(transfer._yaml_rows(text)))
    timed("plan (empty inventory)", lambda: inventory_apply.plan(db, text), changes)
    timed("apply (all creates)", lambda: inventory_apply.apply(db, text, "bench"), changes)
    timed("plan again (no changes)", lambda: inventory_apply.plan(db, text), changes)
    timed("apply 1 % changed", lambda: inventory_apply.apply(db, moved, "bench"), changes)
    exported = timed("export (yaml)", lambda: transfer.export(db, "yaml"))
    timed("plan the export", lambda: inventory_apply.plan(db, exported), changes)
    db.dispose()
    return out


def report(name: str, rows: list[tuple[str, float, float, str]]) -> None:
    """Wall-clock seconds, and this process's CPU seconds (the part a busy machine
    does not inflate; a PostgreSQL server's own work is not in it)."""
    base = rows[0][1]
    print(f"\n{name}")
    for label, seconds, cpu, note in rows:
        print(
            f"  {label:30} {seconds:8.1f} s {seconds / base:6.2f} x safe_load "
            f"(cpu {cpu:6.1f} s)  {note}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--pg", default=os.environ.get("BOOTBRAIN_TEST_PG_URL"))
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-apply-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "bench.db"
    db_path.unlink(missing_ok=True)
    print(f"{args.machines} machines")
    report("SQLite", run(f"sqlite:///{db_path}", args.machines))
    if args.pg:
        report("PostgreSQL", run(args.pg, args.machines))


if __name__ == "__main__":
    main()
