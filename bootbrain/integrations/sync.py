"""Records the lease events the hooks spooled while bootbrain was down (at
``bootbrain serve``'s start). Reservations reach the DHCP servers through the
reconciler, :mod:`bootbrain.integrations.reconcile`."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from bootbrain import schemas
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.inventory import leases

from .leasehook import drain_spool

log = logging.getLogger(__name__)


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
