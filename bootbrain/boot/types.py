"""The boot core's value types: frozen dataclasses, no ORM, no Flask.

The inventory layer builds these from database rows; :mod:`bootbrain.boot.decide` and
:mod:`bootbrain.boot.render` only ever see these, so the core is testable without a
database and cannot lazily load anything on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Facts:
    """What the booting machine *claims* about itself, in canonical form.

    Never trusted and never copied into a script; see :mod:`bootbrain.boot.facts`.
    """

    uuid: str | None
    mac: str | None
    serial: str | None
    board_serial: str | None
    manufacturer: str | None
    product: str | None
    asset: str | None
    buildarch: str | None
    platform: str | None
    #: What was malformed or ignored in the query, for the event log.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class MenuItem:
    key: str
    label: str
    profile: ProfileView


@dataclass(frozen=True)
class MenuView:
    items: tuple[MenuItem, ...]
    #: Key of the item chosen when the timeout expires; None: boot from local disk.
    default: str | None
    #: Seconds; 0 waits for someone at the console.
    timeout: int


@dataclass(frozen=True)
class ProfileView:
    name: str
    kind: str  # linux | ipxe | chain | local | menu
    kernel: str | None = None
    initrds: tuple[str, ...] = ()
    cmdline: str | None = None
    script: str | None = None
    chain_url: str | None = None
    local_method: str | None = None  # exit | sanboot
    menu: MenuView | None = None
    complete_state: str | None = None
    #: Template variables (``{{ vars.NAME }}``); groups and the machine override them.
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class StaticNet:
    """A machine's static network configuration (validated at write time by the API)."""

    ip: str
    prefix: int
    netmask: str
    gateway: str | None
    dns: tuple[str, ...]
    domain: str | None
    hostname: str | None
    interface: str


@dataclass(frozen=True)
class OsConfig:
    """What a machine or a profile gives the booted OS (see :mod:`bootbrain.boot.documents`).

    Validated when written; ``user_data``/``vendor_data`` are Jinja templates.
    """

    ssh_keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: None: not set (a machine then takes its profile's).
    user_data: str | None = None
    vendor_data: str | None = None
    #: A profile's Ignition config template (:mod:`bootbrain.boot.ignition`); machines
    #: have none and take their profile's.
    ignition: str | None = None
    #: Template variables, name → one safe word.
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ConfigSource:
    """Everything the booted OS's documents are built from, for one boot."""

    machine: MachineView | None
    machine_config: OsConfig | None
    profile_name: str | None
    profile_config: OsConfig | None
    #: The interface the booted OS configures (``machine.static.interface`` when there
    #: is a static assignment) and the MAC of its NIC, to match it by.
    interface: str = "eth0"
    mac: str | None = None
    #: The groups that apply to the machine, least specific first.
    groups: tuple[GroupView, ...] = ()


@dataclass(frozen=True)
class NextBootView:
    profile: ProfileView
    expires_at: datetime
    #: Which setting of the action this is (``next_boot.ref``).
    ref: str | None = None


@dataclass(frozen=True)
class MachineView:
    id: int
    hostname: str | None
    state: str
    tags: tuple[str, ...]
    uuid: str | None
    serial: str | None
    manufacturer: str | None
    product: str | None
    asset_tag: str | None
    profile: ProfileView | None
    next_boot: NextBootView | None
    static: StaticNet | None
    macs: tuple[str, ...] = ()
    #: The name of the machine's static network (a group selector).
    network: str | None = None
    #: ``key=value`` labels (group selectors).
    labels: tuple[str, ...] = ()
    #: The machine's own template variables.
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class GroupView:
    """A group: selectors and the variables it gives the machines they match."""

    name: str
    manufacturer: str | None = None
    product: str | None = None
    state: str | None = None
    network: str | None = None
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    config: OsConfig = field(default_factory=lambda: OsConfig(), hash=False)


@dataclass(frozen=True)
class RuleView:
    id: int
    name: str
    priority: int
    manufacturer: str | None
    product: str | None
    buildarch: str | None
    platform: str | None
    tags: tuple[str, ...]
    profile: ProfileView


@dataclass(frozen=True)
class Decision:
    #: "action" | "assigned" | "rule" | "default" | "conflict" | "error"
    step: str
    #: None: boot from local disk with the configured method.
    profile: ProfileView | None
    #: Why, in a sentence for the operator (event log, boot preview). Never put in a script.
    reason: str
    rule: str | None = None
    machine_id: int | None = None
    #: Step "action": the ref of the action decided by (what its completion consumes).
    action_ref: str | None = None
    #: The groups that apply to the machine, least specific first (their variables
    #: are merged between the profile's and the machine's).
    groups: tuple[GroupView, ...] = ()


@dataclass(frozen=True)
class RenderLimits:
    """What one script's render may cost (:mod:`bootbrain.boot.sandbox` enforces it).

    A template cheap for the sample machine can be costly for a real one (its loops
    run over that machine's values); beyond these the render fails closed."""

    #: CPU seconds of the rendering thread (not wall time: a loaded host does not
    #: fail a good template).
    seconds: float = 0.5
    #: Characters of the whole script, and of any one value a template makes.
    max_bytes: int = 262_144
    #: Loop iterations, calls and arithmetic operations, all templates together.
    steps: int = 1_000_000


@dataclass(frozen=True)
class RenderContext:
    #: e.g. "http://10.0.0.1:8080" (no trailing slash).
    base_url: str
    #: e.g. base_url + "/assets".
    assets_url: str
    #: Set when this boot carries a per-boot token.
    boot_id: str | None = None
    #: POST here to report completion: f"{base_url}/boot/{token}/done".
    done_url: str | None = None
    #: f"{base_url}/boot/{token}/" (metadata for the booted OS).
    metadata_url: str | None = None
    #: Local-boot method when the profile names none: "exit" or "sanboot".
    local_method: str = "exit"
    limits: RenderLimits = field(default_factory=RenderLimits)
