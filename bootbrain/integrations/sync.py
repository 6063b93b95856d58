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
                    dnsmasq.write_reservation(hostsdir, reservation)
            elif settings.dhcp == "kea":
                from bootbrain.integrations import kea

                kea.sync_reservations(settings, settings.public_url, inventory.all_reservations(db))
        except Exception:
            log.exception(
                "could not update %s reservation of machine %s", settings.dhcp, machine_id
            )

    return on_change


def init_app(app: Flask, settings: Settings, db: Database) -> None:
    if settings.dhcp != "none":
        db.reservation_listeners.append(listener(settings, db))
