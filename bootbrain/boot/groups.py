"""Groups: which apply to a machine, in which order, and where each variable comes from.

A group is independent of the profile choice (:mod:`bootbrain.boot.decide` picks the
profile; groups only add variables), so "rack A shares an NTP server" holds whatever
profile a machine boots.

A group applies when every selector it sets matches: ``manufacturer`` and ``product``
as a rule compares them (what the machine reports in this boot, else the
inventory's), ``state`` and ``network`` (the name of the machine's static network)
by equality, and all its ``tags`` and ``labels`` (``key=value``) are on the machine.
A group without selectors applies to every machine. A machine not in the inventory
has no state, network, tags or labels, so only groups without those apply to it.

Merge order: the profile's values, then each applying group's from the least to the
most specific (fewest selectors first, each tag and label counting one; equal ones
by name), then the machine's. Later wins for a template variable and for a metadata
key (RFC 7396 merge patch, as between profile and machine); SSH keys are combined in
that order without repeats; tags for the booted OS are combined (sorted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .types import Facts, GroupView, MachineView, ProfileView


def specificity(group: GroupView) -> int:
    """How many selectors the group sets; each tag and each label counts as one."""
    fields = (group.manufacturer, group.product, group.state, group.network)
    return sum(1 for value in fields if value) + len(set(group.tags)) + len(set(group.labels))


def group_matches(group: GroupView, machine: MachineView | None, facts: Facts | None) -> bool:
    """Whether every selector the group sets matches this machine (and boot)."""
    manufacturer = (facts.manufacturer if facts else None) or (
        machine.manufacturer if machine else None
    )
    product = (facts.product if facts else None) or (machine.product if machine else None)
    if group.manufacturer and group.manufacturer != manufacturer:
        return False
    if group.product and group.product != product:
        return False
    if machine is None:
        return not (group.state or group.network or group.tags or group.labels)
    if group.state and group.state != machine.state:
        return False
    if group.network and group.network != machine.network:
        return False
    if not set(group.tags) <= set(machine.tags):
        return False
    return set(group.labels) <= set(machine.labels)


def applying(
    groups: Iterable[GroupView], machine: MachineView | None, facts: Facts | None
) -> tuple[GroupView, ...]:
    """The groups that apply, in merge order: least specific first, then by name."""
    matching = [g for g in groups if group_matches(g, machine, facts)]
    return tuple(sorted(matching, key=lambda g: (specificity(g), g.name)))


@dataclass(frozen=True)
class Variable:
    """A merged template variable and who set it (``profile X``, ``group Y``, ``machine``)."""

    name: str
    value: str
    source: str


def variable_sources(
    profile: str | None,
    profile_variables: Mapping[str, str],
    groups: Sequence[GroupView],
    machine_variables: Mapping[str, str],
) -> tuple[Variable, ...]:
    """The merged template variables, sorted by name, each with where it came from."""
    layers: list[tuple[str, Mapping[str, str]]] = [(f"profile {profile}", profile_variables)]
    layers += [(f"group {g.name}", g.config.variables) for g in groups]
    layers.append(("machine", machine_variables))
    merged: dict[str, Variable] = {}
    for source, values in layers:
        for name, value in values.items():
            merged[name] = Variable(name, value, source)
    return tuple(merged[name] for name in sorted(merged))


def merged_variables(
    profile: ProfileView | None, groups: Sequence[GroupView], machine: MachineView | None
) -> dict[str, str]:
    """``vars`` of a boot's templates: :func:`variable_sources` without the sources."""
    sources = variable_sources(
        profile.name if profile else None,
        profile.variables if profile else {},
        groups,
        machine.variables if machine else {},
    )
    return {v.name: v.value for v in sources}


def describe(groups: Sequence[GroupView]) -> str:
    """The explanation's clause, or "" when no group applies."""
    if not groups:
        return ""
    return "; groups applied (least specific first): " + ", ".join(g.name for g in groups)
