"""decide, rule_matches, pick_rule, conflict: the pure boot decision."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bootbrain.boot.decide import (
    conflict,
    decide,
    error,
    pick_rule,
    rule_matches,
    specificity,
)
from bootbrain.boot.types import (
    Decision,
    Facts,
    MachineView,
    NextBootView,
    ProfileView,
    RuleView,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

DISK = ProfileView(name="disk", kind="local")
INSTALL = ProfileView(name="install", kind="linux", kernel="http://x/vmlinuz")
RESCUE = ProfileView(name="rescue", kind="linux", kernel="http://x/rescue")
DEFAULT = ProfileView(name="default", kind="chain", chain_url="http://x/menu.ipxe")


def facts(**kw: str | None) -> Facts:
    base: dict[str, str | None] = dict.fromkeys(
        (
            "uuid",
            "mac",
            "serial",
            "board_serial",
            "manufacturer",
            "product",
            "asset",
            "buildarch",
            "platform",
        )
    )
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def machine(**kw: object) -> MachineView:
    base: dict[str, object] = {
        "id": 7,
        "hostname": "node-7",
        "state": "ready",
        "tags": (),
        "uuid": None,
        "serial": None,
        "manufacturer": None,
        "product": None,
        "asset_tag": None,
        "profile": None,
        "next_boot": None,
        "static": None,
    }
    base.update(kw)
    return MachineView(**base)  # type: ignore[arg-type]


def rule(
    id: int = 1,
    name: str | None = None,
    priority: int = 0,
    manufacturer: str | None = None,
    product: str | None = None,
    buildarch: str | None = None,
    platform: str | None = None,
    tags: tuple[str, ...] = (),
    profile: ProfileView = INSTALL,
) -> RuleView:
    return RuleView(
        id=id,
        name=name or f"r{id}",
        priority=priority,
        manufacturer=manufacturer,
        product=product,
        buildarch=buildarch,
        platform=platform,
        tags=tags,
        profile=profile,
    )


DELL_EFI = facts(
    manufacturer="Dell Inc.", product="PowerEdge R640", buildarch="x86_64", platform="efi"
)


# --- decision order ---------------------------------------------------------------------


def test_active_action_wins_over_everything() -> None:
    m = machine(profile=DISK, next_boot=NextBootView(RESCUE, NOW + timedelta(hours=1), "r1"))
    d = decide(m, [rule()], DELL_EFI, DEFAULT, NOW)
    assert d.step == "action"
    assert d.profile == RESCUE
    assert d.machine_id == 7
    assert d.action_ref == "r1"  # what the boot's completion may consume
    assert "one-shot action: profile 'rescue'" in d.reason


def test_expired_action_is_ignored_and_explained() -> None:
    m = machine(profile=DISK, next_boot=NextBootView(RESCUE, NOW))
    d = decide(m, [], DELL_EFI, None, NOW)
    assert d.step == "assigned"
    assert d.profile == DISK
    assert "one-shot action 'rescue' expired at 2026-11-21T12:00:00+00:00" in d.reason


def test_assigned_profile_wins_over_rules() -> None:
    d = decide(machine(profile=DISK), [rule()], DELL_EFI, DEFAULT, NOW)
    assert d == Decision(
        step="assigned",
        profile=DISK,
        reason="machine 7 is assigned profile 'disk'",
        machine_id=7,
    )


def test_rule_for_unassigned_machine() -> None:
    r = rule(name="dell", manufacturer="Dell Inc.", platform="efi")
    d = decide(machine(), [r], DELL_EFI, DEFAULT, NOW)
    assert d.step == "rule"
    assert d.rule == "dell"
    assert d.profile == INSTALL
    assert d.reason == (
        "machine 7 has no profile; most specific matching rule 'dell' "
        "(manufacturer='Dell Inc.', platform='efi'; priority 0) gives profile 'install'"
    )


def test_rule_for_unknown_machine() -> None:
    d = decide(None, [rule(platform="efi")], DELL_EFI, None, NOW)
    assert d.step == "rule"
    assert d.machine_id is None
    assert d.reason.startswith("unknown machine; most specific matching rule")


def test_default_profile_when_nothing_matches() -> None:
    d = decide(None, [rule(platform="pcbios")], DELL_EFI, DEFAULT, NOW)
    assert d == Decision(
        step="default",
        profile=DEFAULT,
        reason="unknown machine and no rule matches; default profile 'default'",
    )


def test_no_default_means_local_boot() -> None:
    d = decide(machine(), [], DELL_EFI, None, NOW)
    assert d.step == "default"
    assert d.profile is None
    assert (
        d.reason
        == "machine 7 has no profile and no rule matches; no default profile, so local boot"
    )


def test_decide_without_facts_uses_inventory() -> None:
    m = machine(manufacturer="Dell Inc.")
    d = decide(m, [rule(manufacturer="Dell Inc.")], None, None, NOW)
    assert d.step == "rule"


# --- rule matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        ({}, True),
        ({"manufacturer": "Dell Inc."}, True),
        ({"manufacturer": "dell inc."}, False),  # exact match
        ({"product": "PowerEdge R640"}, True),
        ({"product": "PowerEdge"}, False),
        ({"buildarch": "x86_64"}, True),
        ({"buildarch": "i386"}, False),
        ({"platform": "efi"}, True),
        ({"platform": "pcbios"}, False),
        ({"manufacturer": "Dell Inc.", "platform": "pcbios"}, False),
    ],
)
def test_rule_selectors(selectors: dict[str, str], expected: bool) -> None:
    assert rule_matches(rule(**selectors), machine(), DELL_EFI) is expected  # type: ignore[arg-type]


def test_tags_must_all_be_on_the_machine() -> None:
    r = rule(tags=("gpu", "big"))
    assert rule_matches(r, machine(tags=("gpu", "big", "rack-1")), DELL_EFI)
    assert not rule_matches(r, machine(tags=("gpu",)), DELL_EFI)


def test_unknown_machine_matches_only_rules_without_tags() -> None:
    assert rule_matches(rule(), None, DELL_EFI)
    assert not rule_matches(rule(tags=("gpu",)), None, DELL_EFI)


def test_facts_win_over_inventory_for_manufacturer_and_product() -> None:
    m = machine(manufacturer="Old Vendor", product="Old Box")
    assert rule_matches(rule(manufacturer="Dell Inc."), m, DELL_EFI)
    assert not rule_matches(rule(manufacturer="Old Vendor"), m, DELL_EFI)


def test_inventory_used_when_the_machine_reports_nothing() -> None:
    m = machine(manufacturer="Dell Inc.", product="PowerEdge R640")
    assert rule_matches(rule(manufacturer="Dell Inc.", product="PowerEdge R640"), m, facts())


def test_arch_selectors_need_facts() -> None:
    assert not rule_matches(rule(platform="efi"), machine(), None)


# --- specificity and tie-breaks ---------------------------------------------------------


def test_specificity_counts_each_tag() -> None:
    assert specificity(rule()) == 0
    assert specificity(rule(manufacturer="a", platform="efi")) == 2
    assert specificity(rule(tags=("a", "b", "a"))) == 2


def test_most_selectors_wins_over_priority() -> None:
    broad = rule(id=1, priority=100, manufacturer="Dell Inc.")
    narrow = rule(id=2, priority=0, manufacturer="Dell Inc.", platform="efi")
    assert pick_rule([broad, narrow], machine(), DELL_EFI) == narrow


def test_higher_priority_breaks_a_specificity_tie() -> None:
    a = rule(id=1, priority=1, manufacturer="Dell Inc.")
    b = rule(id=2, priority=5, platform="efi")
    assert pick_rule([a, b], machine(), DELL_EFI) == b


def test_lower_id_breaks_a_full_tie() -> None:
    a = rule(id=3, platform="efi")
    b = rule(id=2, platform="efi")
    assert pick_rule([a, b], machine(), DELL_EFI) == b


def test_more_tags_is_more_specific() -> None:
    one = rule(id=1, tags=("gpu",))
    two = rule(id=2, tags=("gpu", "big"))
    assert pick_rule([one, two], machine(tags=("gpu", "big")), DELL_EFI) == two


def test_pick_rule_is_independent_of_order() -> None:
    rules = [
        rule(id=1, platform="efi"),
        rule(id=2, priority=3, platform="efi"),
        rule(id=3, manufacturer="Dell Inc.", platform="efi"),
        rule(id=4, manufacturer="Dell Inc.", platform="efi"),
        rule(id=5, manufacturer="Dell Inc.", platform="pcbios"),
        rule(id=6, tags=("x",)),
    ]
    picks = {pick_rule(list(p), machine(), DELL_EFI) for p in itertools.permutations(rules)}
    assert picks == {rules[2]}


def test_pick_rule_none_when_nothing_matches() -> None:
    assert pick_rule([rule(platform="pcbios")], machine(), DELL_EFI) is None
    assert pick_rule([], machine(), DELL_EFI) is None


def test_non_matching_more_specific_rule_is_skipped() -> None:
    wrong = rule(id=1, manufacturer="HPE", product="DL360", platform="efi")
    right = rule(id=2, platform="efi")
    assert pick_rule([wrong, right], machine(), DELL_EFI) == right


# --- conflict and error -----------------------------------------------------------------


def test_conflict_fails_closed() -> None:
    d = conflict("uuid and MAC point at different machines", [9, 3, 9])
    assert d == Decision(
        step="conflict",
        profile=None,
        reason="identity conflict: uuid and MAC point at different machines "
        "(machines 3, 9); booting from local disk",
    )


def test_error_decision() -> None:
    d = error("database unavailable", machine_id=4)
    assert d.step == "error"
    assert d.profile is None
    assert d.machine_id == 4
    assert d.reason == "database unavailable; booting from local disk"


def test_decide_is_pure() -> None:
    m = machine(next_boot=NextBootView(RESCUE, NOW + timedelta(seconds=1)))
    rules = [rule()]
    first = decide(m, rules, DELL_EFI, DEFAULT, NOW)
    assert decide(m, rules, DELL_EFI, DEFAULT, NOW) == first
    assert rules == [rule()]
    assert m == replace(m)
