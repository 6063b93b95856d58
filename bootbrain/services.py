"""The composition root's builder: one place that makes the database, the event writer
and the rest, and wires the integrations to the inventory.

:func:`bootbrain.app.create_app` and the CLI (:mod:`bootbrain.cli`) both call
:func:`build`, so a write through either reaches what is wired here — with
``dhcp = "dnsmasq"`` or ``"kea"``, the DHCP server's reservations — and nothing is
wired differently depending on who made the change.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.machine.documents import RefusalBudget
from bootbrain.machine.events import EventWriter


@dataclass
class Services:
    """What a process that serves or changes the inventory works with."""

    settings: Settings
    db: Database
    #: The hot path's records, written off it (its thread starts on first use).
    events: EventWriter
    #: How many refused per-boot tokens a minute are recorded as events.
    refusals: RefusalBudget

    def close(self) -> None:
        """Drain the event writer, then close the database's connections."""
        self.events.close()
        self.db.dispose()


def build(settings: Settings) -> Services:
    db = Database(settings.database_url)
    return Services(
        settings=settings,
        db=db,
        events=EventWriter(
            db,
            settings.event_flush_interval,
            settings.event_batch_max,
            journal_dir=settings.data_dir / "journal",
        ),
        refusals=RefusalBudget(),
    )
