"""``/metrics`` is the whole host's: under ``bootbrain serve`` with four workers, every
scrape, whichever worker answers it, gives the same sums (the fleet issue found
``events_written`` going 4, 8, 4, 8 … with two workers)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from bootbrain import migrate
from tests.api.serving import bootbrain_env, start_serve

pytestmark = pytest.mark.slow


def _value(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M):
        total += float(m.group(1))
    return total


def test_scrapes_agree_whichever_worker_answers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    env = bootbrain_env(url, tmp_path)
    proc, base = start_serve(env, tmp_path / "gunicorn.log", "--workers", "4", "--no-access-log")
    try:
        boots = 40
        for i in range(boots):
            r = requests.get(f"{base}/ipxe", params={"mac": f"52:54:00:00:01:{i:02x}"}, timeout=10)
            assert r.text.startswith("#!ipxe\n")
        time.sleep(1.0)  # every worker's writer has flushed its batch
        seen = []
        for _ in range(12):  # a new connection each: the kernel spreads them over workers
            text = requests.get(f"{base}/metrics", timeout=10).text
            seen.append(
                (
                    _value(text, "bootbrain_ipxe_requests_total"),
                    _value(text, "bootbrain_events_written_total"),
                    _value(text, "bootbrain_ipxe_seconds_count"),
                )
            )
        assert set(seen) == {(boots, boots, boots)}, seen
        assert "# TYPE bootbrain_event_backlog gauge" in text
        assert list((tmp_path / "metrics").glob("*.db")), "no multiprocess files"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
