"""CPU per call of a whole boot, in one process, without HTTP: ``/boot.ipxe``,
``/ipxe``, ``metadata.json`` and the completion, each timed on its own.

    python bench/ipxe_storm.py --machines 100000 --db sqlite   # fills the inventory
    python bench/boot_inproc.py                                # then: SQLite
    python bench/boot_inproc.py --url postgresql+psycopg://bootbrain:bootbrain@127.0.0.1:5432/bootbrain_bench

A boot storm's brain CPU is these four calls per machine (``bench/boot_storm.py``
measures them through gunicorn and nginx); ``bench/ipxe_inproc.py`` splits
``/ipxe`` further. Each machine boots once, as in a storm: the benchmark draws
``--number`` distinct machines of the inventory, answers their ``/ipxe``, waits for
the event writer to store their boot records, then fetches each one's metadata and
completes it. CPU is the process's (the event writer's thread included).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ipxe_inproc import inproc_environment  # noqa: E402
from bench.ipxe_storm import mac_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default=f"sqlite:///{tempfile.gettempdir()}/bootbrain-bench.db")
    ap.add_argument(
        "--machines", type=int, default=100_000, help="size the inventory was filled to"
    )
    ap.add_argument("--number", type=int, default=1000, help="machines booted (each once)")
    ap.add_argument("--seed", type=int, default=None, help="default: a new sample each run")
    args = ap.parse_args()

    inproc_environment(args.url, "http://127.0.0.1")
    from bootbrain.app import create_app

    app = create_app()
    client = app.test_client()
    rng = random.Random(args.seed)
    machines = rng.sample(range(1, args.machines + 1), args.number + 50)
    cpu = dict.fromkeys(("/boot.ipxe", "/ipxe", "metadata.json", "completion"), 0.0)

    def timed(what: str, call: object) -> object:
        start = time.process_time()
        result = call()  # type: ignore[operator]
        cpu[what] += time.process_time() - start
        return result

    def decide(i: int) -> tuple[str, str]:
        timed("/boot.ipxe", lambda: client.get("/boot.ipxe"))
        mac = mac_of(i).replace(":", "-")
        r = timed("/ipxe", lambda: client.get(f"/ipxe?mac={mac}&buildarch=x86_64&platform=efi"))
        urls = dict(
            line.split()[1:3]
            for line in r.get_data(as_text=True).splitlines()  # type: ignore[attr-defined]
            if line.startswith("set IPXE_BOOT_")
        )
        if "IPXE_BOOT_DONE_URL" not in urls:
            sys.exit(f"machine {i} got no boot token; fill the inventory first:\n{__doc__}")
        base = "http://127.0.0.1"
        return (
            urls["IPXE_BOOT_METADATA_URL"].removeprefix(base),
            urls["IPXE_BOOT_DONE_URL"].removeprefix(base),
        )

    def finish(meta: str, done: str) -> None:
        r = timed("metadata.json", lambda: client.get(meta + "metadata.json"))
        assert r.status_code == 200, r.status_code  # type: ignore[attr-defined]
        r = timed("completion", lambda: client.post(done, data={"status": "ok"}))
        assert r.status_code == 200, r.status_code  # type: ignore[attr-defined]

    # Warm-up: the caches a running server has warm (templates, statements).
    warm = [decide(i) for i in machines[:50]]
    time.sleep(1.0)  # the event writer stores the boot records
    for meta, done in warm:
        finish(meta, done)
    for k in cpu:
        cpu[k] = 0.0
    tokens = [decide(i) for i in machines[50:]]
    time.sleep(1.0)
    for meta, done in tokens:
        finish(meta, done)
    app.extensions["bootbrain"].events.close()
    n = args.number
    total = sum(cpu.values())
    print(f"{args.url.split(':')[0]}: {1e6 * total / n:.0f} µs CPU per boot ({n} machines)")
    for what, seconds in cpu.items():
        print(f"  {what:<14} {1e6 * seconds / n:6.0f} µs")


if __name__ == "__main__":
    main()
