"""The boot decision: pure, explainable, the same answer for the same inventory.

Order (BRIEF "The decision"):

1. ``action`` — the machine's one-shot next boot, while ``now < expires_at``
   (consumed only by the completion callback, a cancel or expiry — never here);
2. ``assigned`` — the machine's own profile;
3. ``rule`` — the most specific matching rule;
4. ``default`` — the configured default profile, or local boot when there is none.

Groups (:mod:`bootbrain.boot.groups`) do not take part in choosing the profile; the
decision records which apply, and says so in its reason.

A rule matches when every selector it sets matches: ``manufacturer``, ``product``,
``buildarch`` and ``platform`` by exact string equality, and every one of its
``tags`` is on the machine. A rule's manufacturer and product are compared with what
the machine reports in this boot (the facts), falling back to the inventory's
values when the machine reported none (a boot preview has no facts); buildarch and
platform only come from the facts, since they describe how the machine is booting
now (BIOS or UEFI). An unknown machine has no tags, so it only matches rules without
tags.

Most specific wins: the rule with the most selectors set, counting each tag as one
selector (``tags: [gpu, big]`` is more specific than ``tags: [gpu]``); then the higher
``priority``; then the lower ``id``. That is a total order, so the choice never
depends on the order the rules arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from .groups import applying, describe
from .types import Decision, Facts, GroupView, MachineView, ProfileView, RuleView

_EMPTY_FACTS = Facts(None, None, None, None, None, None, None, None, None)


def specificity(rule: RuleView) -> int:
    """How many selectors the rule sets; each tag counts as one."""
    fields = (rule.manufacturer, rule.product, rule.buildarch, rule.platform)
    return sum(1 for value in fields if value) + len(set(rule.tags))


def _claimed(fact: str | None, inventory: str | None) -> str | None:
    return fact if fact else inventory


def rule_matches(rule: RuleView, machine: MachineView | None, facts: Facts | None) -> bool:
    """Whether every selector the rule sets matches this machine and boot."""
    facts = facts or _EMPTY_FACTS
    manufacturer = _claimed(facts.manufacturer, machine.manufacturer if machine else None)
    product = _claimed(facts.product, machine.product if machine else None)
    if rule.manufacturer and rule.manufacturer != manufacturer:
        return False
    if rule.product and rule.product != product:
        return False
    if rule.buildarch and rule.buildarch != facts.buildarch:
        return False
    if rule.platform and rule.platform != facts.platform:
        return False
    if rule.tags:
        if machine is None:
            return False
        if not set(rule.tags) <= set(machine.tags):
            return False
    return True


def _order(rule: RuleView) -> tuple[int, int, int]:
    return (-specificity(rule), -rule.priority, rule.id)


def pick_rule(
    rules: Iterable[RuleView], machine: MachineView | None, facts: Facts | None
) -> RuleView | None:
    """The most specific matching rule (then higher priority, then lower id), or None."""
    matching = [r for r in rules if rule_matches(r, machine, facts)]
    return min(matching, key=_order) if matching else None


def _describe_rule(rule: RuleView) -> str:
    parts = [
        f"{name}={value!r}"
        for name, value in (
            ("manufacturer", rule.manufacturer),
            ("product", rule.product),
            ("buildarch", rule.buildarch),
            ("platform", rule.platform),
        )
        if value
    ]
    if rule.tags:
        parts.append("tags=" + ",".join(sorted(set(rule.tags))))
    selectors = ", ".join(parts) if parts else "no selectors"
    return f"rule {rule.name!r} ({selectors}; priority {rule.priority})"


def decide(
    machine: MachineView | None,
    rules: Sequence[RuleView],
    facts: Facts | None,
    default: ProfileView | None,
    now: datetime,
    groups: Sequence[GroupView] = (),
) -> Decision:
    """What this machine boots now, which step decided, why, and which groups apply
    (their variables are merged into the script's and documents' templates)."""
    decision = _decide(machine, rules, facts, default, now)
    applied = applying(groups, machine, facts)
    if not applied:
        return decision
    return replace(decision, groups=applied, reason=decision.reason + describe(applied))


def _decide(
    machine: MachineView | None,
    rules: Sequence[RuleView],
    facts: Facts | None,
    default: ProfileView | None,
    now: datetime,
) -> Decision:
    machine_id = machine.id if machine else None
    expired_note = ""
    if machine is not None and machine.next_boot is not None:
        action = machine.next_boot
        if now < action.expires_at:
            return Decision(
                step="action",
                profile=action.profile,
                reason=(
                    f"one-shot action: profile {action.profile.name!r} until "
                    f"{action.expires_at.isoformat()} or until the booted system reports done"
                ),
                machine_id=machine_id,
                action_ref=action.ref,
            )
        expired_note = (
            f" (one-shot action {action.profile.name!r} expired at {action.expires_at.isoformat()})"
        )
    if machine is not None and machine.profile is not None:
        return Decision(
            step="assigned",
            profile=machine.profile,
            reason=f"machine {machine.id} is assigned profile {machine.profile.name!r}"
            + expired_note,
            machine_id=machine_id,
        )
    rule = pick_rule(rules, machine, facts)
    if rule is not None:
        who = f"machine {machine.id} has no profile" if machine else "unknown machine"
        return Decision(
            step="rule",
            profile=rule.profile,
            reason=f"{who}; most specific matching {_describe_rule(rule)} "
            f"gives profile {rule.profile.name!r}" + expired_note,
            rule=rule.name,
            machine_id=machine_id,
        )
    who = f"machine {machine.id} has no profile" if machine else "unknown machine"
    if default is not None:
        reason = f"{who} and no rule matches; default profile {default.name!r}"
    else:
        reason = f"{who} and no rule matches; no default profile, so local boot"
    return Decision(
        step="default", profile=default, reason=reason + expired_note, machine_id=machine_id
    )


def conflict(reason: str, machine_ids: Iterable[int]) -> Decision:
    """Fail closed: the identity keys point at different machines. Local boot."""
    ids = sorted(set(machine_ids))
    listed = ", ".join(str(i) for i in ids)
    return Decision(
        step="conflict",
        profile=None,
        reason=f"identity conflict: {reason} (machines {listed}); booting from local disk",
    )


def error(reason: str, machine_id: int | None = None) -> Decision:
    """Something failed while deciding; the machine boots from local disk."""
    return Decision(
        step="error",
        profile=None,
        reason=f"{reason}; booting from local disk",
        machine_id=machine_id,
    )
