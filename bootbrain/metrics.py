"""The host's metrics, through prometheus-client.

Under ``bootbrain serve`` every worker (and the reconciler) writes its values to files
in one directory per host (``<data_dir>/metrics``, emptied when serve starts:
prometheus-client's multiprocess mode), and ``/metrics`` in any worker answers the
sum over all of them, so successive scrapes never see a counter go backwards because
another worker answered. Elsewhere (tests, the CLI) the values live in the process.

The metrics are made on first use, not at import: the multiprocess mode must be
chosen (:func:`use_directory`) before the first one exists. Names are stable; the
README lists them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: /ipxe answer times: a boot is a few milliseconds; a slow database shows above.
_IPXE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def use_directory(directory: Path) -> None:
    """Choose the multiprocess mode with this (emptied) directory; in serve's master,
    before the app (and any metric) is made. The workers and the reconciler it starts
    inherit it through the environment."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()
    os.environ[ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def process_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's child_exit)."""
    if ENV in os.environ:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    ipxe_requests: Counter
    ipxe_seconds: Histogram
    failures: Counter
    events_written: Counter
    events_failed: Counter
    events_rejected: Counter
    events_journalled: Counter
    events_replayed: Counter
    event_backlog: Gauge
    event_writes_failing: Gauge
    discovery_capped: Counter
    reconcile_passes: Counter
    reconcile_failures: Counter
    reconcile_last_success: Gauge
    reconcile_version: Gauge
    boots_stuck: Gauge


@functools.cache
def metrics() -> Metrics:
    r = CollectorRegistry()
    return Metrics(
        registry=r,
        ipxe_requests=Counter(
            "bootbrain_ipxe_requests", "/ipxe answers, by decision step", ["step"], registry=r
        ),
        ipxe_seconds=Histogram(
            "bootbrain_ipxe_seconds",
            "time to answer /ipxe, by decision step",
            ["step"],
            buckets=_IPXE_BUCKETS,
            registry=r,
        ),
        failures=Counter(
            "bootbrain_machine_route_failures",
            "failures answered on machine routes (always with a valid script), by kind",
            ["kind"],
            registry=r,
        ),
        events_written=Counter(
            "bootbrain_events_written", "event records written by the writer", registry=r
        ),
        events_failed=Counter(
            "bootbrain_events_failed", "failed batch writes (each is retried)", registry=r
        ),
        events_rejected=Counter(
            "bootbrain_events_rejected",
            "records the database refused for their content (kept in rejected.jsonl)",
            registry=r,
        ),
        events_journalled=Counter(
            "bootbrain_events_journalled", "records journalled at shutdown", registry=r
        ),
        events_replayed=Counter(
            "bootbrain_events_replayed", "journalled records written at start", registry=r
        ),
        event_backlog=Gauge(
            "bootbrain_event_backlog",
            "records queued and not yet written, summed over workers",
            multiprocess_mode="livesum",
            registry=r,
        ),
        event_writes_failing=Gauge(
            "bootbrain_event_writes_failing",
            "1 while a worker's writer cannot write (boots are shed meanwhile)",
            multiprocess_mode="livemax",
            registry=r,
        ),
        discovery_capped=Counter(
            "bootbrain_discovery_capped",
            "unknown machines not registered because a discovery cap was reached",
            registry=r,
        ),
        reconcile_passes=Counter(
            "bootbrain_reconcile_passes", "reconciler passes that completed", registry=r
        ),
        reconcile_failures=Counter(
            "bootbrain_reconcile_failures", "reconciler passes that failed", registry=r
        ),
        reconcile_last_success=Gauge(
            "bootbrain_reconcile_last_success_timestamp_seconds",
            "when the DHCP server last matched the inventory",
            multiprocess_mode="max",
            registry=r,
        ),
        reconcile_version=Gauge(
            "bootbrain_reconcile_version",
            "the reservation version the DHCP server was last brought to",
            multiprocess_mode="max",
            registry=r,
        ),
        # Set by serve's stuck-boot watcher alone; live: gone with it, not left stale.
        boots_stuck=Gauge(
            "bootbrain_boots_stuck",
            "boot attempts stuck at the watcher's last pass (the whole inventory's)",
            multiprocess_mode="livemax",
            registry=r,
        ),
    )


def exposition() -> bytes:
    """The Prometheus text of this host (multiprocess) or of this process."""
    if ENV in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(metrics().registry)
