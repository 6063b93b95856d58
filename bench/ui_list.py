"""The dashboard's machine list at 100,000 machines: server time per request.

    python bench/ui_list.py [--machines 100000] [--requests 50] [--dir /tmp/bench-ui]

Fills an empty SQLite inventory (migrated) by bulk insert: machines with a hostname,
serial, state, profile, two tags and a NIC, in eight states and forty racks. Then logs
in to the dashboard and times each page through Flask's test client, in this process
(no socket, so the figure is the server's own time: routing, queries, template), next
to the API's ``GET /api/v1/machines?limit=50`` in the same run as the reference. It
prints the median and p99 of each, and each median as a multiple of the reference's.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bootbrain import inventory, migrate, schemas  # noqa: E402
from bootbrain.app import create_app  # noqa: E402
from bootbrain.db import Database  # noqa: E402
from bootbrain.models import Machine, MachineTag, Nic, Profile, utcnow  # noqa: E402
from bootbrain.vocabulary import MACHINE_STATES  # noqa: E402

PAGES = {
    "reference: GET /api/v1/machines?limit=50": "/api/v1/machines?limit=50",
    "ui: machine list, first page": "/ui/machines",
    "ui: machine list, page 1000": "/ui/machines?after=50000",
    "ui: filtered (state + tag + profile)": "/ui/machines?state=deployed&tag=rack7&profile=disk",
    "ui: text search (hostname part)": "/ui/machines?text=node-0421",
    "ui: text search (whole MAC)": "/ui/machines?text=52-54-00-01-86-a0",
    "ui: fleet at a glance": "/ui/",
    "ui: a machine's page": "/ui/machines/4242",
}


def mac_of(i: int) -> str:
    return f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def fill(url: str, n: int) -> None:
    migrate.upgrade(url)
    db = Database(url)
    now = utcnow()
    with db.engine.begin() as conn:
        for pid, name in ((1, "disk"), (2, "install")):
            conn.execute(
                insert(Profile),
                [{"id": pid, "name": name, "kind": "local" if pid == 1 else "linux",
                  "kernel": None if pid == 1 else "{{ assets }}/vmlinuz",
                  "initrds": [], "created_at": now, "updated_at": now, "version": 1}],
            )  # fmt: skip
    batch = 20_000
    for start in range(0, n, batch):
        ids = range(start + 1, min(n, start + batch) + 1)
        with db.engine.begin() as conn:
            conn.execute(
                insert(Machine),
                [
                    {
                        "id": i,
                        "hostname": f"node-{i:06d}",
                        "serial": f"SN{i * 7919 % 10**8:08d}",
                        "state": MACHINE_STATES[i % len(MACHINE_STATES)],
                        "profile_id": 1 + i % 2,
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
            conn.execute(
                insert(MachineTag),
                [{"machine_id": i, "tag": t} for i in ids for t in ("bench", f"rack{i % 40}")],
            )
    raw = db.engine.raw_connection().driver_connection
    raw.execute("ANALYZE")  # type: ignore[union-attr]
    db.dispose()


def timed(client: FlaskClient, path: str, n: int, headers: dict[str, str]) -> list[float]:
    out = []
    for _ in range(n + 3):
        t0 = time.perf_counter()
        resp = client.get(path, headers=headers)
        took = time.perf_counter() - t0
        assert resp.status_code == 200, (path, resp.status_code, resp.get_data(as_text=True))
        out.append(took * 1000)
    return out[3:]  # the first requests warm caches and compile templates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-ui-"))
    work.mkdir(parents=True, exist_ok=True)
    db_file = work / "inventory.db"
    db_file.unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    t0 = time.perf_counter()
    fill(url, args.machines)
    print(f"filled {args.machines} machines in {time.perf_counter() - t0:.1f} s ({db_file})")

    app = create_app(
        {"database_url": url, "data_dir": str(work / "data"), "secret_key": "bench-secret"}
    )
    services = app.extensions["bootbrain"]
    _, token = inventory.create_token(
        services.db, services.settings.secret(), schemas.TokenIn(name="bench", scope="read"), "b"
    )
    client = app.test_client()
    form = client.get("/ui/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf
    login = client.post("/ui/login", data={"token": token, "csrf_token": csrf.group(1)})
    assert login.status_code == 302
    bearer = {"Authorization": f"Bearer {token}"}

    reference = None
    print(f"{'page':48} {'median ms':>10} {'p99 ms':>8} {'x ref':>6}")
    for label, path in PAGES.items():
        ms = timed(client, path, args.requests, bearer if path.startswith("/api/") else {})
        median = statistics.median(ms)
        p99 = statistics.quantiles(ms, n=100)[98] if len(ms) > 1 else ms[0]
        reference = reference or median
        print(f"{label:48} {median:10.1f} {p99:8.1f} {median / reference:6.2f}")
    services.close()


if __name__ == "__main__":
    main()
