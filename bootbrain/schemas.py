"""Request and response models of the operator API (pydantic).

Every value is put in canonical form and checked here, at the edge; ORM objects never
cross the wire (``*Out.from_orm_obj`` builds the response). Checks that need the
database (an address inside its network, a profile that exists) live in
:mod:`bootbrain.inventory`.
"""

from __future__ import annotations

import re
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bootbrain import identity, models
from bootbrain.boot import documents
from bootbrain.errors import IdentityError
from bootbrain.vocabulary import (
    CONTROL_RE,
    DOMAIN_RE,
    INTERFACE_RE,
    MENU_KEY_RE,
    NAME_RE,
    TAG_RE,
    Buildarch,
    LeaseAction,
    LeaseSource,
    LocalMethod,
    MachineState,
    Platform,
    ProfileKind,
    TokenScope,
)


def _anchored(pattern: re.Pattern[str]) -> str:
    """A vocabulary pattern (used with fullmatch) as pydantic's ``pattern`` (searched)."""
    return rf"^(?:{pattern.pattern})$"


def _one_line(value: str) -> str:
    """Control characters (NUL, newline, ESC …) never belong in a one-line field."""
    if CONTROL_RE.search(value):
        raise ValueError("must be one line of printable text (no control characters)")
    return value


def _as(fn: Any) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return str(fn(value))
        except IdentityError as e:
            raise ValueError(str(e)) from None

    return AfterValidator(check)


def _ipv4(value: str) -> str:
    try:
        return str(IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"not an IPv4 address: {value!r}") from None


def _unicast(value: str) -> str:
    """An address a DHCP server can lease to one host."""
    ip = IPv4Address(_ipv4(value))
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_reserved:
        raise ValueError(f"{ip} is not a host's unicast address")
    if ip.is_link_local:
        raise ValueError(f"{ip} is link-local, never a DHCP lease")
    return str(ip)


def _cidr(value: str) -> str:
    try:
        return str(IPv4Network(value.strip(), strict=True))
    except ValueError as e:
        raise ValueError(f"not an IPv4 network in CIDR form (10.0.0.0/24): {e}") from None


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://\S+", value) or CONTROL_RE.search(value):
        raise ValueError("must be an http:// or https:// URL without whitespace")
    return value


def _domain(value: str) -> str:
    v = value.strip().lower().rstrip(".")
    if not DOMAIN_RE.fullmatch(v):
        raise ValueError("not a DNS domain name")
    return v


Text = Annotated[str, StringConstraints(max_length=128), AfterValidator(_one_line)]
LongText = Annotated[
    str,
    StringConstraints(max_length=10_000),
    AfterValidator(
        lambda v: v if "\x00" not in v else (_ for _ in ()).throw(ValueError("NUL byte"))
    ),
]
Name = Annotated[str, StringConstraints(pattern=_anchored(NAME_RE))]
Mac = Annotated[str, StringConstraints(max_length=32), _as(identity.canonical_mac)]
#: A MAC that identifies a machine (NICs, lease events): junk MACs are refused.
BootMac = Annotated[str, StringConstraints(max_length=32), _as(identity.boot_mac)]
Uuid = Annotated[str, StringConstraints(max_length=45), _as(identity.canonical_uuid)]
Hostname = Annotated[str, StringConstraints(max_length=63), _as(identity.canonical_hostname)]
Interface = Annotated[str, StringConstraints(pattern=_anchored(INTERFACE_RE))]
Tag = Annotated[str, StringConstraints(pattern=_anchored(TAG_RE))]
IPv4 = Annotated[str, StringConstraints(max_length=39), AfterValidator(_ipv4)]
LeaseIPv4 = Annotated[str, StringConstraints(max_length=39), AfterValidator(_unicast)]
Cidr = Annotated[str, StringConstraints(max_length=43), AfterValidator(_cidr)]
Url = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_url)]
Domain = Annotated[str, StringConstraints(max_length=253), AfterValidator(_domain)]


def _unique_keys(keys: list[str]) -> list[str]:
    material = [documents.key_material(k) for k in keys]
    if len(material) != len(set(material)):
        raise ValueError("the same key is listed twice")
    return keys


SshKey = Annotated[
    str,
    StringConstraints(max_length=documents.MAX_SSH_KEY),
    AfterValidator(documents.canonical_ssh_key),
]
SshKeys = Annotated[
    list[SshKey], Field(max_length=documents.MAX_SSH_KEYS), AfterValidator(_unique_keys)
]
Metadata = Annotated[dict[str, Any], AfterValidator(documents.check_metadata)]
Document = Annotated[
    str,
    StringConstraints(max_length=documents.MAX_DOCUMENT),
    AfterValidator(documents.check_document_text),
]
State = MachineState
Kind = ProfileKind
Scope = TokenScope


def _not_null(value: Any) -> Any:
    """For a PATCH: a field left out stays unchanged; an explicit null would store a
    NULL the column and every later read of the row cannot take."""
    if value is None:
        raise ValueError("may not be null: leave the field out to keep it")
    return value


def _null_is_empty(value: Any) -> Any:
    """For a PATCH: an explicit null on a list means what [] means."""
    return [] if value is None else value


class _FromRow(BaseModel):
    """A response read straight off an ORM row's attributes."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, row: Any) -> Self:
        return cls.model_validate(row)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# --- NICs and machines ------------------------------------------------------------


class NicIn(_In):
    mac: BootMac
    name: Interface | None = None
    boot: bool = False


class NicOut(BaseModel):
    mac: str
    name: str | None
    boot: bool


class MachineFields(_In):
    hostname: Hostname | None = None
    uuid: Uuid | None = None
    serial: Text | None = None
    board_serial: Text | None = None
    manufacturer: Text | None = None
    product: Text | None = None
    asset_tag: Text | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] = []
    state: State = "new"
    profile: Name | None = Field(default=None, description="name of the assigned profile")
    network: Name | None = Field(default=None, description="name of the static network")
    address: IPv4 | None = Field(default=None, description="static IPv4 address in network")
    interface: Interface | None = Field(
        default=None, description="interface name the booted OS configures (default eth0)"
    )
    notes: LongText | None = None
    nics: Annotated[list[NicIn], Field(max_length=32)] = []
    ssh_keys: SshKeys = Field(
        default=[], description="SSH public keys for the booted OS, added to the profile's"
    )
    metadata: Metadata = Field(
        default_factory=dict,
        description="free-form JSON object for the booted OS, merged over the profile's "
        "as an RFC 7396 merge patch (null removes a profile key)",
    )
    user_data: Document | None = Field(
        default=None,
        description='cloud-init user-data template (secret); null: the profile\'s, "": none at all',
    )
    vendor_data: Document | None = Field(
        default=None,
        description="cloud-init vendor-data template (secret); null: the profile's, "
        '"": none at all',
    )

    @model_validator(mode="after")
    def _unique_macs(self) -> MachineFields:
        macs = [n.mac for n in self.nics]
        if len(macs) != len(set(macs)):
            raise ValueError("nics: the same MAC is listed twice")
        if sum(n.boot for n in self.nics) > 1:
            raise ValueError("nics: at most one NIC has boot=true")
        return self


class MachineCreate(MachineFields):
    pass


class MachineUpdate(_In):
    """Partial update: only the fields sent change. ``nics`` and ``tags`` replace the lists."""

    hostname: Hostname | None = None
    uuid: Uuid | None = None
    serial: Text | None = None
    board_serial: Text | None = None
    manufacturer: Text | None = None
    product: Text | None = None
    asset_tag: Text | None = None
    tags: Annotated[list[Tag], Field(max_length=64)] | None = None
    state: State | None = None
    profile: Name | None = None
    network: Name | None = None
    address: IPv4 | None = None
    interface: Interface | None = None
    notes: LongText | None = None
    nics: Annotated[list[NicIn], Field(max_length=32)] | None = None
    ssh_keys: SshKeys | None = None
    metadata: Metadata | None = None
    user_data: Document | None = None
    vendor_data: Document | None = None

    @field_validator("tags", "nics", "ssh_keys", "metadata")
    @classmethod
    def _null_clears(cls, value: Any, info: ValidationInfo) -> Any:
        """An explicit null means what []/{} means; a field left out stays unset."""
        if value is None:
            return {} if info.field_name == "metadata" else []
        return value

    _state_not_null = field_validator("state", mode="before")(_not_null)

    @model_validator(mode="after")
    def _unique_macs(self) -> MachineUpdate:
        if self.nics is not None:
            macs = [n.mac for n in self.nics]
            if len(macs) != len(set(macs)):
                raise ValueError("nics: the same MAC is listed twice")
        return self


class NextBootOut(BaseModel):
    profile: str
    expires_at: datetime
    complete_state: str | None


class MachineOut(BaseModel):
    id: int
    hostname: str | None
    uuid: str | None
    serial: str | None
    board_serial: str | None
    manufacturer: str | None
    product: str | None
    asset_tag: str | None
    tags: list[str]
    state: str
    profile: str | None
    network: str | None
    address: str | None
    interface: str | None
    notes: str | None
    nics: list[NicOut]
    next_boot: NextBootOut | None
    ssh_keys: list[str]
    metadata: dict[str, Any]
    user_data: str | None
    vendor_data: str | None
    redacted: list[str] = Field(
        default=[],
        description="secret fields withheld from this answer (listings, read-scope tokens)",
    )
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None
    last_seen_ip: str | None
    version: int
    power: Literal["on", "off"] | None = Field(
        default=None, description="the power state its BMC last reported (none: not asked yet)"
    )
    power_seen_at: datetime | None = None
    bmc_error: str | None = Field(default=None, description="the BMC's last error, if any")
    bmc_error_at: datetime | None = None

    @classmethod
    def of(cls, m: models.Machine, reveal: bool = False) -> MachineOut:
        """``reveal``: include user-data and vendor-data (else listed in ``redacted``)."""
        nb = m.next_boot
        secrets, redacted = _secrets(m, reveal)
        return cls(
            id=m.id,
            hostname=m.hostname,
            uuid=m.uuid,
            serial=m.serial,
            board_serial=m.board_serial,
            manufacturer=m.manufacturer,
            product=m.product,
            asset_tag=m.asset_tag,
            tags=m.tag_names,
            state=m.state,
            profile=m.profile.name if m.profile else None,
            network=m.network.name if m.network else None,
            address=m.address,
            interface=m.interface,
            notes=m.notes,
            nics=[NicOut(mac=n.mac, name=n.name, boot=n.boot) for n in m.nics],
            next_boot=NextBootOut(
                profile=nb.profile.name, expires_at=nb.expires_at, complete_state=nb.complete_state
            )
            if nb
            else None,
            ssh_keys=list(m.ssh_keys),
            metadata=dict(m.meta),
            **secrets,
            redacted=redacted,
            created_at=m.created_at,
            updated_at=m.updated_at,
            last_seen_at=m.last_seen_at,
            last_seen_ip=m.last_seen_ip,
            version=m.version,
            **_bmc_observed(m.bmc),
        )


def _bmc_observed(b: models.Bmc | None) -> dict[str, Any]:
    if b is None:
        return {}
    return {
        "power": b.power_state if b.power_state in ("on", "off") else None,
        "power_seen_at": b.power_seen_at,
        "bmc_error": b.last_error,
        "bmc_error_at": b.last_error_at,
    }


#: Fields that can hold secrets (passwords, tokens): never in listings or logs.
SECRET_FIELDS = ("user_data", "vendor_data")


def _secrets(obj: Any, reveal: bool) -> tuple[dict[str, str | None], list[str]]:
    if reveal:
        return {f: getattr(obj, f) for f in SECRET_FIELDS}, []
    return dict.fromkeys(SECRET_FIELDS), [f for f in SECRET_FIELDS if getattr(obj, f) is not None]


class NextBootIn(_In):
    profile: Name
    expires_in: int | None = Field(
        default=None, ge=60, le=366 * 86400, description="seconds until the action lapses"
    )
    complete_state: State | None = Field(
        default=None, description="state after the booted OS reports completion"
    )


# --- networks ---------------------------------------------------------------------


class NetworkIn(_In):
    name: Name
    cidr: Cidr
    gateway: IPv4 | None = None
    dns: Annotated[list[IPv4], Field(max_length=2)] = []
    domain: Domain | None = None
    vlan_id: int | None = Field(default=None, ge=1, le=4094)

    @model_validator(mode="after")
    def _gateway_inside(self) -> NetworkIn:
        if self.gateway is not None:
            try:
                identity.check_address_in(self.gateway, self.cidr)
            except identity.IdentityError as e:
                raise ValueError(f"gateway: {e}") from None
        return self


class NetworkUpdate(_In):
    name: Name | None = None
    gateway: IPv4 | None = None
    dns: Annotated[list[IPv4], Field(max_length=2)] | None = None
    domain: Domain | None = None
    vlan_id: int | None = Field(default=None, ge=1, le=4094)

    _name_not_null = field_validator("name", mode="before")(_not_null)
    _dns_null_clears = field_validator("dns", mode="before")(_null_is_empty)


class NetworkOut(_FromRow):
    id: int
    name: str
    cidr: str
    gateway: str | None
    dns: list[str]
    domain: str | None
    vlan_id: int | None
    version: int


# --- profiles ---------------------------------------------------------------------


class MenuItemIn(_In):
    key: Annotated[str, StringConstraints(pattern=_anchored(MENU_KEY_RE))]
    label: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_one_line)]
    profile: Name


class MenuIn(_In):
    items: Annotated[list[MenuItemIn], Field(min_length=1, max_length=32)]
    default: str | None = None
    timeout: int = Field(default=10, ge=0, le=3600, description="seconds")

    @model_validator(mode="after")
    def _default_is_item(self) -> MenuIn:
        keys = [i.key for i in self.items]
        if len(keys) != len(set(keys)):
            raise ValueError("items: keys must be unique")
        if self.default is not None and self.default not in keys:
            raise ValueError(f"default: {self.default!r} is not one of the item keys")
        return self


class ProfileFields(_In):
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    kernel: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None, description="kernel URL (a template: {{ assets }}/vmlinuz)"
    )
    initrds: Annotated[
        list[Annotated[str, StringConstraints(max_length=2048)]], Field(max_length=8)
    ] = []
    cmdline: Annotated[str, StringConstraints(max_length=4096)] | None = None
    script: Annotated[str, StringConstraints(max_length=65536)] | None = Field(
        default=None, description="iPXE script template (kind ipxe)"
    )
    chain_url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    local_method: LocalMethod | None = None
    menu: MenuIn | None = None
    complete_state: State | None = None
    stuck_after: int | None = Field(
        default=None,
        ge=60,
        le=7 * 86_400,
        description="seconds a boot may go without reaching its next stage before it is "
        "flagged stuck (default: the boot_stuck_after setting)",
    )
    tags: Annotated[list[Tag], Field(max_length=64)] = Field(
        default=[], description="tags the booted OS sees, with the machine's"
    )
    ssh_keys: SshKeys = Field(default=[], description="SSH public keys for the booted OS")
    metadata: Metadata = Field(
        default_factory=dict, description="free-form JSON object for the booted OS"
    )
    user_data: Document | None = Field(
        default=None, description="cloud-init user-data template (secret)"
    )
    vendor_data: Document | None = Field(
        default=None, description="cloud-init vendor-data template (secret)"
    )


class ProfileIn(ProfileFields):
    name: Name
    kind: Kind


class ProfileUpdate(ProfileFields):
    name: Name | None = None
    kind: Kind | None = None

    _not_null = field_validator("name", "kind", mode="before")(_not_null)


class ProfileOut(BaseModel):
    id: int
    name: str
    kind: str
    description: str | None
    kernel: str | None
    initrds: list[str]
    cmdline: str | None
    script: str | None
    chain_url: str | None
    local_method: str | None
    menu: dict[str, Any] | None
    complete_state: str | None
    stuck_after: int | None = None
    tags: list[str]
    ssh_keys: list[str]
    metadata: dict[str, Any]
    user_data: str | None
    vendor_data: str | None
    redacted: list[str] = Field(
        default=[],
        description="secret fields withheld from this answer (listings, read-scope tokens)",
    )
    version: int

    @classmethod
    def of(cls, p: models.Profile, reveal: bool = False) -> ProfileOut:
        """``reveal``: include user-data and vendor-data (else listed in ``redacted``)."""
        secrets, redacted = _secrets(p, reveal)
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind,
            description=p.description,
            kernel=p.kernel,
            initrds=list(p.initrds),
            cmdline=p.cmdline,
            script=p.script,
            chain_url=p.chain_url,
            local_method=p.local_method,
            menu=p.menu,
            complete_state=p.complete_state,
            stuck_after=p.stuck_after,
            tags=list(p.tags),
            ssh_keys=list(p.ssh_keys),
            metadata=dict(p.meta),
            **secrets,
            redacted=redacted,
            version=p.version,
        )


# --- rules ------------------------------------------------------------------------


class RuleFields(_In):
    priority: int = Field(default=0, ge=-1000, le=1000)
    manufacturer: Text | None = None
    product: Text | None = None
    buildarch: Buildarch | None = None
    platform: Platform | None = None
    tags: Annotated[list[Tag], Field(max_length=16)] = []


class RuleIn(RuleFields):
    name: Name
    profile: Name


class RuleUpdate(_In):
    name: Name | None = None
    profile: Name | None = None
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    manufacturer: Text | None = None
    product: Text | None = None
    buildarch: Buildarch | None = None
    platform: Platform | None = None
    tags: Annotated[list[Tag], Field(max_length=16)] | None = None

    _not_null = field_validator("name", "profile", "priority", mode="before")(_not_null)
    _tags_null_clears = field_validator("tags", mode="before")(_null_is_empty)


class RuleOut(BaseModel):
    id: int
    name: str
    priority: int
    manufacturer: str | None
    product: str | None
    buildarch: str | None
    platform: str | None
    tags: list[str]
    profile: str
    version: int

    @classmethod
    def of(cls, r: models.Rule) -> RuleOut:
        return cls(
            id=r.id,
            name=r.name,
            priority=r.priority,
            manufacturer=r.manufacturer,
            product=r.product,
            buildarch=r.buildarch,
            platform=r.platform,
            tags=list(r.tags),
            profile=r.profile.name,
            version=r.version,
        )


# --- tokens, events, leases, previews ----------------------------------------------


class TokenIn(_In):
    name: Name
    scope: Scope = "read"
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(_FromRow):
    id: int
    name: str
    prefix: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class EventOut(_FromRow):
    id: int
    at: datetime
    kind: str
    machine_id: int | None
    mac: str | None
    ip: str | None
    message: str
    data: dict[str, Any]


class LeaseEventIn(_In):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{8,64}$")] = Field(
        description="unique per event, so a replayed event is recorded once"
    )
    source: LeaseSource
    action: LeaseAction
    mac: BootMac
    ip: LeaseIPv4
    hostname: (
        Annotated[str, StringConstraints(max_length=253), AfterValidator(_one_line)] | None
    ) = None
    user_class: (
        Annotated[str, StringConstraints(max_length=64), AfterValidator(_one_line)] | None
    ) = None
    arch: int | None = Field(default=None, ge=0, le=65535)
    at: AwareDatetime | None = Field(
        default=None, description="when the server saw it, with its UTC offset (…Z)"
    )


class Accepted(BaseModel):
    accepted: bool
    duplicate: bool = False
    machine_id: int | None = None


class PreviewQuery(_In):
    buildarch: Buildarch | None = None
    platform: Platform | None = None


class PreviewProblem(BaseModel):
    field: str | None = Field(description="the profile's field that failed (cmdline, initrds[1] …)")
    line: int | None = Field(description="the line in that field's template, when known")
    message: str

    def describe(self) -> str:
        where = f"{self.field}, line {self.line}" if self.field and self.line else self.field
        return f"{where}: {self.message}" if where else self.message


class PreviewOut(BaseModel):
    machine_id: int | None
    step: str
    profile: str | None
    rule: str | None
    reason: str
    script: str
    problem: PreviewProblem | None = Field(
        default=None,
        description="why the script failed to render (step error: the machine boots from disk)",
    )


class ConfigPreviewQuery(_In):
    profile: Name | None = Field(
        default=None, description="render with this profile (default: what it boots now)"
    )


class ConfigPreviewOut(BaseModel):
    machine_id: int
    step: str = Field(description="decision step that chose the profile, or 'query'")
    profile: str | None
    reason: str
    instance_id: str
    meta_data: str
    user_data: str | None
    vendor_data: str | None
    network_config: str
    metadata: dict[str, Any] = Field(description="the JSON document (metadata.json)")
    redacted: list[str] = Field(
        default=[], description="secret documents withheld (read-scope tokens)"
    )


# --- apply (the inventory as code) ----------------------------------------------------


class ApplyIn(_In):
    document: Annotated[str, StringConstraints(max_length=256 * 1024 * 1024)] = Field(
        description="the desired state: YAML as `bootbrain export` writes it"
    )
    dry_run: bool = Field(default=False, description="plan only: change nothing")
    prune: bool = Field(default=False, description="also delete what the document does not name")
    versions: dict[str, int] | None = Field(
        default=None,
        description="the `versions` of a dry run you reviewed: if a planned object changed "
        "since, nothing is applied (409)",
    )


class FieldChangeOut(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class ChangeOut(BaseModel):
    action: str = Field(description="create, update or delete")
    kind: str
    key: str
    line: int | None = Field(description="the document's line of the object (None: a delete)")
    fields: list[FieldChangeOut] = Field(description="what an update changes (secrets hidden)")


class ApplyOut(BaseModel):
    applied: bool
    changes: list[ChangeOut]
    counts: dict[str, int]
    versions: dict[str, int] = Field(
        description="each planned object's version the plan was made against (0: absent)"
    )
    diff: str = Field(description="the plan as text")


# --- lists ------------------------------------------------------------------------


class PageQuery(_In):
    limit: int = Field(default=100, ge=1, le=1000)
    after: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="cursor: the last id you saw"
    )


class MachineQuery(PageQuery):
    mac: Mac | None = None
    uuid: Uuid | None = None
    serial: Text | None = None
    hostname: Hostname | None = None
    tag: Tag | None = None
    state: State | None = None
    profile: Name | None = None


class EventQuery(PageQuery):
    machine_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z_.]{1,32}$")] | None = None
    mac: Mac | None = None
    since: AwareDatetime | None = Field(
        default=None, description="a date and time with its UTC offset (2026-01-01T00:00:00Z)"
    )


class BootsQuery(_In):
    limit: int = Field(default=10, ge=1, le=100, description="the last N boot attempts")


class StuckQuery(_In):
    stuck: bool = Field(default=True, description="only attempts flagged stuck (the one filter)")
    limit: int = Field(default=100, ge=1, le=1000)


class BootStageOut(BaseModel):
    stage: str = Field(
        description="lease, bootstrap, decision, kernel, initrd, asset, document or completion"
    )
    at: datetime
    after_start_s: float = Field(description="seconds since the attempt's first stage")
    detail: str
    data: dict[str, Any] = {}


class BootAttemptOut(BaseModel):
    machine_id: int
    boot_id: str | None = Field(description="the per-boot record (none for a local boot)")
    mac: str | None
    ip: str | None
    step: str
    profile: str | None
    rule: str | None
    reason: str
    status: str = Field(
        description="complete, local (handed to the disk), failed (conflict or error), "
        "in_progress, stuck, or superseded (a later attempt began)"
    )
    started_at: datetime
    decided_at: datetime
    last_stage: str
    last_stage_at: datetime
    duration_s: float = Field(description="first stage to last stage")
    stuck_after_s: int
    summary: str = Field(description="how far it got, in a sentence")
    not_seen: list[str] = Field(
        default=[],
        description="the profile's kernel or initrd, with no fetch on record (kernel and "
        "initrd fetches are seen only in an ingested nginx assets log)",
    )
    stages: list[BootStageOut]


class BootAttemptPage(BaseModel):
    items: list[BootAttemptOut]


class MachinePage(BaseModel):
    items: list[MachineOut]
    next_after: int | None = Field(description="pass as ?after= for the next page")


class NetworkPage(BaseModel):
    items: list[NetworkOut]
    next_after: int | None


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    next_after: int | None


class RulePage(BaseModel):
    items: list[RuleOut]
    next_after: int | None


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int | None


class TokenPage(BaseModel):
    items: list[TokenOut]
    next_after: int | None


class FieldProblem(BaseModel):
    field: str
    message: str
    line: int | None = None


class Problem(BaseModel):
    """RFC 9457 problem details; ``errors`` names each offending field."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] = []
    holder: int | None = Field(default=None, description="machine id holding a conflicting key")


# --- BMC power control ----------------------------------------------------------------


class BmcIn(BaseModel):
    """A machine's BMC. ``password`` is write-only: it is never in an answer."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ipmi", "redfish"]
    address: str = Field(min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=255, repr=False)
    system_id: str | None = Field(default=None, max_length=128)
    verify_tls: bool = True


class BmcOut(BaseModel):
    machine_id: int
    kind: str
    address: str
    port: int
    username: str
    system_id: str | None
    verify_tls: bool
    password_set: bool = True
    updated_at: datetime


class PowerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["on", "off", "cycle", "network-boot-once"]


class PowerOut(BaseModel):
    machine_id: int
    bmc: str
    power: Literal["on", "off"]
    action: str | None = None
    boot_device: str | None = None
    boot_confirmed: bool | None = None


class ReinstallIn(BaseModel):
    """Reinstall now: the one-shot next boot (as ``PUT …/next-boot``), then the BMC."""

    model_config = ConfigDict(extra="forbid")

    profile: Name
    expires_in: int | None = Field(
        default=None, ge=60, le=366 * 86400, description="seconds until the action lapses"
    )
    complete_state: State | None = Field(
        default=None, description="state after the booted OS reports completion"
    )
    power_on: bool = Field(default=True, description="power on a machine that is off")

    def next_boot(self) -> NextBootIn:
        return NextBootIn(
            profile=self.profile, expires_in=self.expires_in, complete_state=self.complete_state
        )


class ReinstallStepOut(BaseModel):
    step: str
    at: datetime
    detail: str


class ReinstallOut(BaseModel):
    machine_id: int
    hostname: str | None
    status: Literal["done", "left-off", "failed", "skipped"]
    bmc: str | None = None
    power: Literal["on", "off"] | None = None
    boot_confirmed: bool | None = None
    detail: str = ""
    steps: list[ReinstallStepOut] = []


class ReinstallsIn(ReinstallIn):
    """Many machines: exactly one selector, at most ``concurrency`` BMC sequences at a
    time, none started after ``max_failures`` failures."""

    hostnames: Annotated[list[str], Field(max_length=1000)] | None = None
    tag: Tag | None = None
    rule: Name | None = None
    concurrency: int = Field(default=4, ge=1, le=32)
    max_failures: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_selector(self) -> ReinstallsIn:
        given = [k for k in ("hostnames", "tag", "rule") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("selector: give exactly one of hostnames, tag, rule")
        return self


class ReinstallsOut(BaseModel):
    counts: dict[str, int]
    stopped: str | None = Field(
        default=None, description="why machines were skipped (failures, time budget)"
    )
    items: list[ReinstallOut]
