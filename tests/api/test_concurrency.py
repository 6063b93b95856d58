"""gunicorn with 4 workers, 50 concurrent clients: no "database is locked", no lost
update, every acknowledged write present afterwards. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.api.serving import bootbrain_env, start_serve

pytestmark = pytest.mark.slow

CLIENTS = 50
INCREMENTS = 2


@pytest.fixture
def server(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    # db_url comes with the schema in place (tests/conftest.py).
    env = bootbrain_env(db_url, tmp_path)
    create = ["token", "create", "--name", "load", "--scope", "write", "--quiet"]
    token = subprocess.run(
        [sys.executable, "-m", "bootbrain", *create],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = tmp_path / "gunicorn.log"
    proc, base = start_serve(env, log, "--workers", "4", "--no-access-log")
    try:
        yield base, {"Authorization": f"Bearer {token}"}, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_concurrent_writers_and_readers(server) -> None:  # type: ignore[no-untyped-def]
    base, auth, logfile = server
    shared = requests.post(
        f"{base}/api/v1/machines",
        json={"hostname": "shared", "notes": "0"},
        headers=auth,
        timeout=10,
    ).json()
    statuses: Counter[int] = Counter()
    created: list[int] = []

    def client(i: int) -> int:
        s = requests.Session()
        s.headers.update(auth)
        r = s.post(
            f"{base}/api/v1/machines",
            json={
                "hostname": f"node-{i}",
                "nics": [{"mac": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"}],
            },
            timeout=30,
        )
        statuses[r.status_code] += 1
        if r.status_code == 201:
            created.append(r.json()["id"])
        done = 0
        while done < INCREMENTS:
            g = s.get(f"{base}/api/v1/machines/{shared['id']}", timeout=30)
            statuses[g.status_code] += 1
            value = int(g.json()["notes"])
            p = s.patch(
                f"{base}/api/v1/machines/{shared['id']}",
                json={"notes": str(value + 1)},
                headers={"If-Match": g.headers["ETag"]},
                timeout=30,
            )
            statuses[p.status_code] += 1
            if p.status_code == 200:
                done += 1
            else:  # someone else won: back off a little, as a real client would
                time.sleep(random.uniform(0, 0.05))
            statuses[s.get(f"{base}/api/v1/machines?limit=20", timeout=30).status_code] += 1
        return done

    with ThreadPoolExecutor(CLIENTS) as pool:
        increments = sum(pool.map(client, range(CLIENTS)))

    assert set(statuses) <= {200, 201, 412}, statuses
    assert statuses[201] == CLIENTS
    final = requests.get(f"{base}/api/v1/machines/{shared['id']}", headers=auth, timeout=10).json()
    assert int(final["notes"]) == increments == CLIENTS * INCREMENTS  # no lost update
    for mid in created:
        assert (
            requests.get(f"{base}/api/v1/machines/{mid}", headers=auth, timeout=10).status_code
            == 200
        )
    assert "database is locked" not in logfile.read_text()
