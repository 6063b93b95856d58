"""The inventory's vocabulary, defined once: states, kinds, scopes, decision steps, and
the patterns every layer checks names and free text against.

Everything else imports from here — the ORM's check constraints, the API's pydantic
types, the boot core's render-time re-checks — so the database, the API and the
scripts cannot come to disagree about what a valid hostname or state is. Each closed
set is a ``Literal`` type (for pydantic and mypy) with the tuple of its values taken
from it. Standard library only: the pure core imports this.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

MachineState = Literal[
    "new", "discovered", "ready", "provisioning", "deployed", "maintenance", "retired"
]
ProfileKind = Literal["linux", "ipxe", "chain", "local", "menu"]
#: ``read``: every GET; ``write``: everything; ``lease``: only posting lease events
#: (the DHCP hooks' token: it can neither read the inventory nor change it).
TokenScope = Literal["read", "write", "lease"]
#: What a request needs of its token; ``None`` (``bootbrain token check``): only that it
#: is valid.
TokenNeed = Literal["read", "write", "lease"]
LocalMethod = Literal["exit", "sanboot"]
#: Which step of the boot decision chose (BRIEF "The decision"); ``conflict`` and
#: ``error`` boot from local disk.
DecisionStep = Literal["action", "assigned", "rule", "default", "conflict", "error"]
#: iPXE's ``${buildarch}`` and ``${platform}`` values that rules may select on.
Buildarch = Literal["i386", "x86_64", "arm32", "arm64", "riscv64"]
Platform = Literal["pcbios", "efi"]
LeaseSource = Literal["dnsmasq", "kea"]
#: dnsmasq's add/old/del and the Kea hook points' commit/renew/release/expire
#: (``bootbrain/integrations/leasehook.py`` keeps its own copy: it imports nothing).
LeaseAction = Literal["add", "old", "del", "commit", "renew", "release", "expire"]

MACHINE_STATES: Final[tuple[str, ...]] = get_args(MachineState)
PROFILE_KINDS: Final[tuple[str, ...]] = get_args(ProfileKind)
TOKEN_SCOPES: Final[tuple[str, ...]] = get_args(TokenScope)
LOCAL_METHODS: Final[tuple[str, ...]] = get_args(LocalMethod)
DECISION_STEPS: Final[tuple[str, ...]] = get_args(DecisionStep)
BUILDARCHES: Final[tuple[str, ...]] = get_args(Buildarch)
PLATFORMS: Final[tuple[str, ...]] = get_args(Platform)
LEASE_SOURCES: Final[tuple[str, ...]] = get_args(LeaseSource)
LEASE_ACTIONS: Final[tuple[str, ...]] = get_args(LeaseAction)
#: Which scopes grant each need: write grants everything, read and lease only themselves.
SCOPE_GRANTS: Final[dict[str, frozenset[str]]] = {
    "read": frozenset({"read", "write"}),
    "write": frozenset({"write"}),
    "lease": frozenset({"lease", "write"}),
}
#: Lease actions that say the machine is on the network now (they move last-seen).
LEASE_ALIVE: Final = frozenset({"add", "old", "commit", "renew"})

# --- names and words (each used with fullmatch) ---------------------------------------

#: Names of networks, profiles, rules and tokens: they appear in scripts' comments,
#: labels and URLs, so letters, digits and ``_.-`` only.
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: One RFC 1123 label, lowercase (hostnames are canonicalised to lowercase first).
HOSTNAME_RE: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
#: A Linux interface name as the booted OS names it (``ip=``'s device field).
INTERFACE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,15}")
TAG_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: A lowercase DNS domain of dot-separated RFC 1123 labels, at most 253 characters.
DOMAIN_RE: Final = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
MENU_KEY_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: A template variable's name (``{{ vars.ntp }}``): an identifier, ASCII only.
VARIABLE_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: A template variable's value: it reaches iPXE scripts and cmdlines, where nothing is
#: quoted, so one word without whitespace, ``$``/``{``/``}`` (iPXE's and Jinja's
#: expansions), ``#``, ``;``, ``&``, ``|``, ``<``, ``>``, quotes or backslashes.
VARIABLE_VALUE_RE: Final = re.compile(r"[A-Za-z0-9._:/@%+=,~?!*\[\]^-]{0,1024}")
#: A machine label, ``key=value``: a key like a name, a value of the same characters
#: (possibly empty).
LABEL_RE: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9_./-]{0,62})=([A-Za-z0-9_.:-]{0,63})")
#: A boot file served by TFTP (and over HTTP): no separators, spaces or DHCP syntax.
BOOTFILE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# --- control characters (each used with search) ----------------------------------------

#: Any control character: one-line fields (names, serials, labels) hold none, not
#: even a tab.
CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
#: Control characters but tab: one line that may be indented or tab-separated (an
#: SSH key line, a template that must stay on one line).
CONTROL_BUT_TAB_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Control characters but tab and newline: multi-line text (scripts, user-data).
CONTROL_BUT_TAB_LF_RE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

#: The routes whose answers iPXE executes: every answer there is a script.
SCRIPT_PATHS: Final = frozenset({"/ipxe", "/boot.ipxe"})
