"""Keeps the chosen DHCP server's reservations in step with the inventory.

The inventory calls the listener after a machine's reservation changed and the
change committed; ``settings.dhcp`` picks the server. A failure here is logged and
does not undo the inventory change: ``bootbrain dnsmasq sync`` / ``bootbrain kea
sync`` rewrite everything from the inventory.
"""

from __future__ import annotations

import logging

from flask import Flask

from bootbrain import inventory
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.integrations.reservations import Reservation

log = logging.getLogger(__name__)


def listener(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    def on_change(machine_id: int, reservation: Reservation | None) -> None:
        try:
            if settings.dhcp == "dnsmasq":
                from bootbrain.integrations import dnsmasq

                hostsdir = settings.dnsmasq.hostsdir
                assert hostsdir is not None
                if reservation is None:
                    dnsmasq.remove_reservation(hostsdir, machine_id, settings.dnsmasq.pid_file)
                else:
                    dnsmasq.write_reservation(hostsdir, reservation, settings.dnsmasq.pid_file)
            elif settings.dhcp == "kea":
                from bootbrain.integrations import kea

                kea.sync_reservations(settings, settings.public_url, inventory.all_reservations(db))
        except Exception:
            log.exception(
                "could not update %s reservation of machine %s", settings.dhcp, machine_id
            )

    return on_change


def replay_spools(settings: Settings, db: Database) -> int:
    """Record lease events the hooks spooled while bootbrain was down; at start-up."""
    from pydantic import ValidationError

    from bootbrain import leases, schemas
    from bootbrain.hooks.leasehook import drain_spool

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


def init_app(app: Flask, settings: Settings, db: Database) -> None:
    if settings.dhcp != "none":
        db.reservation_listeners.append(listener(settings, db))
