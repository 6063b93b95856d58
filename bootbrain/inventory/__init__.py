"""The inventory: every SQL statement bootbrain makes, behind service functions.

Each function owns its transaction and raises the domain errors of
:mod:`bootbrain.errors`; none knows about HTTP, Flask or the DHCP servers (the
integrations read the inventory through the functions listed here, and
:mod:`bootbrain.services` wires the two together). The modules:

* :mod:`~bootbrain.inventory.machines` — machines, their one-shot next boot and the
  reservations they hand out;
* :mod:`~bootbrain.inventory.catalog` — networks, profiles and rules
  (:mod:`~bootbrain.inventory.checks`: the boot core's save-time checks, as field errors);
* :mod:`~bootbrain.inventory.groups` — groups (variables by group);
* :mod:`~bootbrain.inventory.tokens` — API tokens and authentication;
* :mod:`~bootbrain.inventory.lookup` — the ``/ipxe`` hot path's reads;
* :mod:`~bootbrain.inventory.discovery` — registering unknown machines, capped;
* :mod:`~bootbrain.inventory.events` — the event log and the event writer's batches;
* :mod:`~bootbrain.inventory.boots` — per-boot records, documents by token, completion;
* :mod:`~bootbrain.inventory.leases` — DHCP lease events from the hooks;
* :mod:`~bootbrain.inventory.transfer` — import, export and the demo inventory;
* :mod:`~bootbrain.inventory.apply` — ``bootbrain apply``: the export's YAML as a desired state;
* :mod:`~bootbrain.inventory.retention` — ``bootbrain prune``;
* :mod:`~bootbrain.inventory.sessions` — the dashboard's logins;
  :mod:`~bootbrain.inventory.fleet` — its fleet summary and machine search;
* :mod:`~bootbrain.inventory.keahosts` — Kea's own hosts table (its PostgreSQL host
  backend), kept equal to the reservations;
* :mod:`~bootbrain.inventory.base` — what they share.
"""

from .boots import (
    BootConfig,
    boot_config_for_token,
    complete_boot,
    config_source,
    preview_config_source,
)
from .catalog import (
    add_network,
    add_profile,
    add_rule,
    create_network,
    create_profile,
    create_rule,
    delete_network,
    delete_profile,
    delete_rule,
    get_network,
    get_profile,
    get_rule,
    list_networks,
    list_profiles,
    list_rules,
    update_network,
    update_profile,
    update_rule,
)
from .changes import ChangeWaiter, reservations_version
from .events import list_events, write_batch
from .keahosts import HostsChange, KeaHost, kea_hosts, sync_kea_hosts
from .machines import (
    Reservation,
    add_machine,
    all_reservations,
    cancel_next_boot,
    create_machine,
    delete_machine,
    get_machine,
    list_machines,
    os_config_of,
    os_nic,
    reservation_of,
    set_next_boot,
    update_machine,
)
from .retention import PRUNE_CHUNK, Pruned, prune
from .tokens import Principal, authenticate, create_token, list_tokens, revoke_token, token_count

__all__ = [
    "PRUNE_CHUNK",
    "BootConfig",
    "ChangeWaiter",
    "HostsChange",
    "KeaHost",
    "Principal",
    "Pruned",
    "Reservation",
    "add_machine",
    "add_network",
    "add_profile",
    "add_rule",
    "all_reservations",
    "authenticate",
    "boot_config_for_token",
    "cancel_next_boot",
    "complete_boot",
    "config_source",
    "create_machine",
    "create_network",
    "create_profile",
    "create_rule",
    "create_token",
    "delete_machine",
    "delete_network",
    "delete_profile",
    "delete_rule",
    "get_machine",
    "get_network",
    "get_profile",
    "get_rule",
    "kea_hosts",
    "list_events",
    "list_machines",
    "list_networks",
    "list_profiles",
    "list_rules",
    "list_tokens",
    "os_config_of",
    "os_nic",
    "preview_config_source",
    "prune",
    "reservation_of",
    "reservations_version",
    "revoke_token",
    "set_next_boot",
    "sync_kea_hosts",
    "token_count",
    "update_machine",
    "update_network",
    "update_profile",
    "update_rule",
    "write_batch",
]
