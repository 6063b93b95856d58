"""The inventory schema (SQLAlchemy 2 typed ORM). No Flask, no validation logic here:
values arrive canonical from :mod:`bootbrain.identity` and :mod:`bootbrain.schemas`,
and the closed sets the check constraints name come from :mod:`bootbrain.vocabulary`.

Identity columns come in pairs: what the machine reported (``uuid``, ``serial`` …) is
stored as given, and a ``*_key`` column holds the same value only when it is usable as
identity (not junk), so that junk like "To be filled by O.E.M." is kept for the
operator's eyes but never matches or collides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bootbrain.vocabulary import MACHINE_STATES, PROFILE_KINDS, TOKEN_SCOPES

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A check constraint's text: ``column`` holds one of ``values``."""
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Network(Base):
    __tablename__ = "network"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    cidr: Mapped[str] = mapped_column(String(43))
    gateway: Mapped[str | None] = mapped_column(String(39))
    dns: Mapped[list[str]] = mapped_column(default=list)
    domain: Mapped[str | None] = mapped_column(String(253))
    vlan_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Profile(Base):
    __tablename__ = "profile"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint(_one_of("kind", PROFILE_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    # linux
    kernel: Mapped[str | None] = mapped_column(String(2048))
    initrds: Mapped[list[str]] = mapped_column(default=list)
    cmdline: Mapped[str | None] = mapped_column(Text)
    # ipxe
    script: Mapped[str | None] = mapped_column(Text)
    # chain
    chain_url: Mapped[str | None] = mapped_column(String(2048))
    # local
    local_method: Mapped[str | None] = mapped_column(String(16))
    # menu: {"items": [{"key", "label", "profile"}], "default": key, "timeout": seconds}
    menu: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: State a machine moves to when a boot of this profile reports completion.
    complete_state: Mapped[str | None] = mapped_column(String(16))
    #: Seconds a boot of this profile may go without reaching its next stage before
    #: the boot funnel calls it stuck (None: the ``boot_stuck_after`` setting).
    stuck_after: Mapped[int | None] = mapped_column(Integer)
    # configuration of the booted OS (bootbrain.boot.documents; machines override)
    tags: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    ssh_keys: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    #: The API's ``metadata`` (the name is taken by SQLAlchemy's declarative base).
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    user_data: Mapped[str | None] = mapped_column(Text)
    vendor_data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Machine(Base):
    __tablename__ = "machine"
    __table_args__ = (
        UniqueConstraint("hostname"),
        UniqueConstraint("uuid_key"),
        UniqueConstraint("network_id", "address", name="uq_machine_network_address"),
        CheckConstraint(_one_of("state", MACHINE_STATES), name="state"),
        Index("ix_machine_serial_key", "manufacturer", "serial_key"),
        Index("ix_machine_board_serial_key", "manufacturer", "board_serial_key"),
        Index("ix_machine_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str | None] = mapped_column(String(63))
    uuid: Mapped[str | None] = mapped_column(String(36))
    uuid_key: Mapped[str | None] = mapped_column(String(36))
    serial: Mapped[str | None] = mapped_column(String(128))
    serial_key: Mapped[str | None] = mapped_column(String(128))
    board_serial: Mapped[str | None] = mapped_column(String(128))
    board_serial_key: Mapped[str | None] = mapped_column(String(128))
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    product: Mapped[str | None] = mapped_column(String(128))
    asset_tag: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="new")
    profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("profile.id", ondelete="RESTRICT"), index=True
    )
    network_id: Mapped[int | None] = mapped_column(
        ForeignKey("network.id", ondelete="RESTRICT"), index=True
    )
    address: Mapped[str | None] = mapped_column(String(39))
    interface: Mapped[str | None] = mapped_column(String(15))
    notes: Mapped[str | None] = mapped_column(Text)
    # configuration of the booted OS (bootbrain.boot.documents; overrides the profile's)
    ssh_keys: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    #: The API's ``metadata`` (the name is taken by SQLAlchemy's declarative base).
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    #: None: the profile's; "": none, not even the profile's.
    user_data: Mapped[str | None] = mapped_column(Text)
    vendor_data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column()
    last_seen_ip: Mapped[str | None] = mapped_column(String(39))
    version: Mapped[int] = mapped_column(Integer, default=1)

    profile: Mapped[Profile | None] = relationship(lazy="joined")
    network: Mapped[Network | None] = relationship(lazy="joined")
    nics: Mapped[list[Nic]] = relationship(
        back_populates="machine",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Nic.id",
        lazy="selectin",
    )
    tags: Mapped[list[MachineTag]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="MachineTag.tag",
        lazy="selectin",
    )
    next_boot: Mapped[NextBoot | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="joined"
    )
    #: Read-only here (the BMC record is written by inventory/bmc.py): for the power
    #: state and last BMC error a machine's answer shows.
    bmc: Mapped[Bmc | None] = relationship(viewonly=True, lazy="joined")

    __mapper_args__ = {"version_id_col": version}

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]


class Nic(Base):
    __tablename__ = "nic"
    __table_args__ = (UniqueConstraint("mac"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    machine_id: Mapped[int] = mapped_column(
        ForeignKey("machine.id", ondelete="CASCADE"), index=True
    )
    mac: Mapped[str] = mapped_column(String(17))
    name: Mapped[str | None] = mapped_column(String(15))
    #: The NIC the machine network-boots from (its reservation goes to DHCP).
    boot: Mapped[bool] = mapped_column(Boolean, default=False)

    machine: Mapped[Machine] = relationship(back_populates="nics")


class MachineTag(Base):
    __tablename__ = "machine_tag"
    __table_args__ = (UniqueConstraint("machine_id", "tag"), Index("ix_machine_tag_tag", "tag"))

    id: Mapped[int] = mapped_column(primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machine.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(64))


class NextBoot(Base):
    """A one-shot action: what the machine boots until the booted OS reports completion."""

    __tablename__ = "next_boot"
    __table_args__ = (UniqueConstraint("machine_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machine.id", ondelete="CASCADE"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profile.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column()
    #: The machine's state once the action completes (None: the profile's, else unchanged).
    complete_state: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Random, new each time the action is set; a boot records the ref it was decided
    #: by, and only a completion with that boot's token consumes this action. (None:
    #: set before refs existed; then the profile's name decides, as it did.)
    ref: Mapped[str | None] = mapped_column(String(32))

    profile: Mapped[Profile] = relationship(lazy="joined")


class Rule(Base):
    __tablename__ = "rule"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    product: Mapped[str | None] = mapped_column(String(128))
    buildarch: Mapped[str | None] = mapped_column(String(16))
    platform: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(default=list)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profile.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    profile: Mapped[Profile] = relationship(lazy="joined")

    __mapper_args__ = {"version_id_col": version}


class Boot(Base):
    """One answered ``/ipxe`` request that handed out a per-boot token.

    Written off the hot path by the event writer; the token itself never is, only
    its HMAC.
    """

    __tablename__ = "boot"
    #: ``expires_at`` is indexed for pruning (:func:`bootbrain.inventory.retention.prune`): its
    #: values arrive in nearly increasing order, so the hot path's insert lands on the
    #: index's last page.
    __table_args__ = (UniqueConstraint("token_hash"), Index("ix_boot_expires_at", "expires_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Not a foreign key: the writer stores boots in batches a moment after /ipxe, and
    #: a machine deleted meanwhile must not fail the other machines' boots. Deleting a
    #: machine deletes its boots; a boot whose machine is gone opens nothing.
    machine_id: Mapped[int | None] = mapped_column(Integer, index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    profile_name: Mapped[str | None] = mapped_column(String(64))
    #: Which decision step chose the profile ("action", "assigned", "rule", "default").
    step: Mapped[str] = mapped_column(String(16))
    #: The ``next_boot.ref`` of the one-shot action this boot was for (step "action").
    action_ref: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()


#: The conditions of the boot funnel's partial indexes on ``event`` (their queries
#: repeat them: :mod:`bootbrain.inventory.funnel`).
FETCH_KINDS_SQL = "kind IN ('bootstrap', 'asset')"
BOOTSTRAP_MAC_SQL = "kind = 'bootstrap' AND mac IS NOT NULL"


class Event(Base):
    """Append-only log of boots, decisions, DHCP leases and operator changes."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_machine_id_id", "machine_id", "id"),
        Index("ix_event_kind_id", "kind", "id"),
        UniqueConstraint("ref"),
        #: The boot funnel finds /boot.ipxe and asset fetches by the address they came
        #: from, and a bootstrap that named its MAC by the MAC; only those events are in
        #: these indexes, so no other write pays for them. A query uses one only if its
        #: WHERE repeats the index's condition word for word (SQLite).
        Index(
            "ix_event_fetch_ip_at",
            "ip",
            "at",
            postgresql_where=text(FETCH_KINDS_SQL),
            sqlite_where=text(FETCH_KINDS_SQL),
        ),
        Index(
            "ix_event_bootstrap_mac_at",
            "mac",
            "at",
            postgresql_where=text(BOOTSTRAP_MAC_SQL),
            sqlite_where=text(BOOTSTRAP_MAC_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    #: Deliberately not a foreign key: the log outlives the machines it speaks of.
    machine_id: Mapped[int | None] = mapped_column(Integer)
    mac: Mapped[str | None] = mapped_column(String(17))
    ip: Mapped[str | None] = mapped_column(String(39))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: A sender's id for the event (lease hooks), so a replayed event is stored once.
    ref: Mapped[str | None] = mapped_column(String(64))


class ApiToken(Base):
    __tablename__ = "api_token"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        UniqueConstraint("name"),
        CheckConstraint(_one_of("scope", TOKEN_SCOPES), name="scope"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    #: The first characters of the token, shown in listings so operators recognise it.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class DiscoveryCounter(Base):
    """Shared rate window for discovery, so several brains respect one cap."""

    __tablename__ = "discovery_counter"

    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ReservationVersion(Base):
    """One counter that the database's own triggers raise with every statement that
    changes what DHCP reservations are made of (a machine inserted or deleted, its
    address or hostname, its NICs), whoever runs it: a brain's API, the CLI, an import,
    an operator's SQL. Each boot host's reconciler compares it with the version it
    last applied; on PostgreSQL the same triggers also ``NOTIFY`` it.

    The row may be missing (a truncated table): readers take that as version 0, and
    the triggers insert it."""

    __tablename__ = "reservation_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


#: The channel the reservation triggers notify on PostgreSQL.
RESERVATION_CHANNEL = "bootbrain_reservations"
_BUMP = (
    "INSERT INTO reservation_version (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = reservation_version.version + 1"
)
#: (table, events) the reservation triggers watch. Last-seen updates (every boot)
#: touch neither column, so they raise nothing.
RESERVATION_SOURCES = (
    ("machine", ("INSERT", "DELETE", "UPDATE OF address, hostname")),
    ("nic", ("INSERT", "DELETE", "UPDATE")),
)


def reservation_trigger_ddl(dialect: str) -> list[str]:
    """The statements that create the reservation triggers (the migration that
    introduced them runs its own copy)."""
    if dialect == "postgresql":
        statements = [
            "CREATE OR REPLACE FUNCTION bootbrain_reservation_changed() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; "
            f"PERFORM pg_notify('{RESERVATION_CHANNEL}', ''); RETURN NULL; END $$"
        ]
        for table, events in RESERVATION_SOURCES:
            statements.append(
                f"CREATE TRIGGER reservation_changed_{table} AFTER {' OR '.join(events)} "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bootbrain_reservation_changed()"
            )
        return statements
    statements = []
    for table, events in RESERVATION_SOURCES:
        for ev in events:
            name = ev.split()[0].lower()
            statements.append(
                f"CREATE TRIGGER reservation_changed_{table}_{name} AFTER {ev} ON {table} "
                f"BEGIN {_BUMP}; END"
            )
    return statements


@sa_event.listens_for(Base.metadata, "after_create")
def _create_reservation_triggers(_target: Any, connection: Connection, **_kw: Any) -> None:
    for statement in reservation_trigger_ddl(connection.dialect.name):
        connection.exec_driver_sql(statement)

class Bmc(Base):
    """A machine's BMC. ``password_enc`` is a Fernet token keyed from the brain's secret
    (:mod:`bootbrain.inventory.bmc`); the clear password is never stored."""

    __tablename__ = "bmc"
    __table_args__ = (
        UniqueConstraint("machine_id"),
        CheckConstraint("kind IN ('ipmi', 'redfish')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    machine_id: Mapped[int] = mapped_column(ForeignKey("machine.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    password_enc: Mapped[str] = mapped_column(Text)
    system_id: Mapped[str | None] = mapped_column(String(128))
    verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: What the BMC last said, kept by :mod:`bootbrain.inventory.reinstalls` (not part
    #: of the record an operator sets: writing them leaves ``updated_at`` alone).
    power_state: Mapped[str | None] = mapped_column(String(8))
    power_seen_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column()
