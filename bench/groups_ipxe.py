"""What groups cost an ``/ipxe`` answer, in one process on SQLite, as a ratio.

    python bench/groups_ipxe.py [--groups 50] [--number 2000]

Builds a small inventory (one network, one profile whose cmdline uses a group's
variable, one machine), answers ``/ipxe`` for it ``--number`` times with no groups,
then again with ``--groups`` groups (every third one matching the machine), and
prints the wall time per answer of each and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args()

    from bootbrain import inventory, migrate, schemas
    from bootbrain.app import create_app
    from bootbrain.config import Settings
    from bootbrain.inventory import groups

    data = Path(tempfile.mkdtemp(prefix="bb-groups-"))
    settings = Settings.model_validate(
        {
            "data_dir": str(data),
            "database_url": f"sqlite:///{data / 'bench.db'}",
            "secret_key": "bench",
            "public_url": "http://10.0.0.1",
        }
    )
    migrate.upgrade(settings.database_url)
    app = create_app(settings)
    db = app.extensions["bootbrain"].db
    inventory.create_network(
        db, schemas.NetworkIn(name="rack1", cidr="10.0.0.0/24", gateway="10.0.0.1"), "bench"
    )
    profile = {
        "name": "installer",
        "kind": "linux",
        "kernel": "{{ assets }}/vmlinuz",
        "cmdline": "ntp={{ vars.ntp }}",
        "variables": {"ntp": "pool.example"},
    }
    inventory.create_profile(db, schemas.ProfileIn.model_validate(profile), "bench")
    machine: dict[str, Any] = {
        "hostname": "node-1",
        "nics": [{"mac": "52:54:00:00:00:01"}],
        "network": "rack1",
        "address": "10.0.0.10",
        "profile": "installer",
        "state": "ready",
        "labels": ["rack=a"],
    }
    inventory.create_machine(db, schemas.MachineCreate.model_validate(machine), "bench")
    client = app.test_client()
    query = "/ipxe?mac=52-54-00-00-00-01&buildarch=x86_64&platform=efi"

    def per_answer() -> float:
        for _ in range(50):  # warm the statement caches
            client.get(query)
        start = time.perf_counter()
        for _ in range(args.number):
            assert b"kernel" in client.get(query).data
        return (time.perf_counter() - start) / args.number

    without = per_answer()
    for n in range(args.groups):
        body = {"name": f"g{n:03}", "variables": {"ntp": f"10.0.{n}.1"}}
        body |= {"labels": ["rack=a"]} if n % 3 == 0 else {"state": "deployed"}
        groups.create_group(db, schemas.GroupIn.model_validate(body), "bench")
    with_groups = per_answer()
    app.extensions["bootbrain"].events.close()
    print(f"no groups:   {without * 1e3:.3f} ms per answer")
    print(f"{args.groups} groups: {with_groups * 1e3:.3f} ms per answer")
    print(f"ratio:       {with_groups / without:.2f}")


if __name__ == "__main__":
    main()
