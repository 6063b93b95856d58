"""CPU per ``/ipxe`` answer in one process, without HTTP: where a boot's time goes.

    python bench/ipxe_storm.py --machines 100000 --db sqlite   # fills the inventory
    python bench/ipxe_inproc.py                                # then: SQLite
    python bench/ipxe_inproc.py --url postgresql+psycopg://bootbrain:bootbrain@127.0.0.1:5432/bootbrain_bench

Runs the app's WSGI callable for random machines of an inventory that
``bench/ipxe_storm.py`` filled (same MACs), with the event writer running, and prints
wall and CPU time per answer (CPU includes the writer thread) and the wall time of
each phase: lookup, render, parsing the query.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ipxe_storm import mac_of  # noqa: E402

phases: Counter[str] = Counter()


def timed(module: Any, name: str, phase: str) -> None:
    inner: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            phases[phase] += time.perf_counter() - start

    setattr(module, name, wrapper)


def inproc_environment(url: str, public_url: str) -> None:
    """The environment ``create_app()`` reads: ``url``'s inventory, a throw-away data
    directory and an empty configuration file."""
    data = Path(tempfile.mkdtemp(prefix="bb-inproc-"))
    (data / "empty.toml").write_text("")
    os.environ.update(
        BOOTBRAIN_DATABASE_URL=url,
        BOOTBRAIN_DATA_DIR=str(data),
        BOOTBRAIN_SECRET_KEY="bench",
        BOOTBRAIN_CONFIG=str(data / "empty.toml"),
        BOOTBRAIN_PUBLIC_URL=public_url,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default=f"sqlite:///{tempfile.gettempdir()}/bootbrain-bench.db")
    ap.add_argument(
        "--machines", type=int, default=100_000, help="size the inventory was filled to"
    )
    ap.add_argument("--number", type=int, default=4000)
    args = ap.parse_args()

    inproc_environment(args.url, "http://10.0.0.1")
    from bootbrain.app import create_app
    from bootbrain.boot import render
    from bootbrain.inventory import lookup
    from bootbrain.machine import flow as bootflow

    timed(lookup, "lookup_for_boot", "lookup")
    timed(render, "render_decision", "render")
    timed(bootflow, "parse_facts", "parse the query")
    app = create_app()
    rng = random.Random(1)
    macs = [mac_of(rng.randint(1, args.machines)).replace(":", "-") for _ in range(5000)]

    def answer(mac: str) -> bytes:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/ipxe",
            "QUERY_STRING": f"mac={mac}&buildarch=x86_64&platform=efi",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
        }
        return b"".join(app.wsgi_app(environ, lambda status, headers, exc_info=None: None))

    sample = answer(macs[0])
    if b"kernel" not in sample:
        sys.exit(f"{macs[0]} is not a known machine here; fill the inventory first:\n{__doc__}")
    for mac in macs[:500]:  # warm the caches a running server has warm
        answer(mac)
    phases.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(args.number):
        answer(macs[i % len(macs)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    app.extensions["bootbrain"].events.close()
    n = args.number
    per = f"{1e6 * wall / n:.0f} µs wall, {1e6 * cpu / n:.0f} µs CPU"
    print(f"{args.url.split(':')[0]}: {per} per /ipxe")
    for phase, seconds in phases.most_common():
        print(f"  {phase:<16} {1e6 * seconds / n:6.0f} µs")


if __name__ == "__main__":
    main()
