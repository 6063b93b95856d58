"""Keeps the chosen DHCP server's reservations in step with the inventory, and records
the lease events the hooks spooled while bootbrain was down.

:mod:`bootbrain.services` registers :func:`listener` with the database when
``settings.dhcp`` names a server, for the API and the CLI alike; the inventory calls
it after a commit that changed reservations. A failure here is logged and does not
undo the inventory change: ``bootbrain dnsmasq sync`` / ``bootbrain kea sync`` rewrite
everything from the inventory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from bootbrain import schemas
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.inventory import ReservationChanges, all_reservations, leases

from . import dnsmasq, kea
from .leasehook import drain_spool

log = logging.getLogger(__name__)


def listener(settings: Settings, db: Database) -> Callable[[ReservationChanges], None]:
    """What to do after a commit that changed these machines' reservations."""

    def on_change(changes: ReservationChanges) -> None:
        try:
            if settings.dhcp == "dnsmasq":
                d = settings.dnsmasq
                assert d.hostsdir is not None  # settings derive it from data_dir
                for machine_id, reservation in changes:
                    if reservation is None:
                        dnsmasq.remove_reservation(d.hostsdir, machine_id, d.pid_file)
                    else:
                        dnsmasq.write_reservation(d.hostsdir, reservation, d.pid_file)
            elif settings.dhcp == "kea":
                # One document and one reload for the whole change, however many machines.
                kea.sync_reservations(settings, settings.public_url, all_reservations(db))
        except Exception:
            log.exception(
                "could not update the %s reservations of machine(s) %s",
                settings.dhcp,
                ", ".join(str(machine_id) for machine_id, _ in changes),
            )

    return on_change


def replay_spools(settings: Settings, db: Database) -> int:
    """Record lease events the hooks spooled while bootbrain was down; at start-up."""

    def deliver(event: dict[str, object], raw: bytes) -> str:
        try:
            leases.record(db, settings, schemas.LeaseEventIn.model_validate(event))
        except ValidationError:
            log.warning("spooled lease event rejected: %s", raw[:200])
            return "reject"
        return "ok"

    delivered = 0
    for spool in dict.fromkeys((settings.dnsmasq.spool_dir, settings.kea.spool_dir)):
        if spool is not None:
            delivered += drain_spool(spool, deliver, budget=60).delivered
    return delivered
