"""Groups in the pure core: which apply, their order, the merge, the explanation, and
the script a group's variable reaches (exact lines)."""

from __future__ import annotations

import pytest

from bootbrain.boot import script as ipxe
from bootbrain.boot.decide import decide
from bootbrain.boot.documents import merge
from bootbrain.boot.groups import applying, group_matches, merged_variables, variable_sources
from bootbrain.boot.render import render_decision
from bootbrain.boot.types import Decision, GroupView, OsConfig, ProfileView, RenderContext
from bootbrain.boot.variables import template_variables
from bootbrain.errors import RenderError
from tests.unit.test_decide import NOW, facts, machine
from tests.unit.test_documents import ED, ED2

CTX = RenderContext(base_url="http://10.0.0.1:8080", assets_url="http://10.0.0.1:8080/assets")

INSTALL = ProfileView(
    name="install",
    kind="linux",
    kernel="{{ assets }}/vmlinuz",
    cmdline="ntp={{ vars.ntp }} disk={{ vars.disk }} console={{ vars.console }}",
    variables={"ntp": "pool.example", "disk": "sda", "console": "ttyS0"},
)


def group(name: str, variables: dict[str, str] | None = None, **kw: object) -> GroupView:
    config = OsConfig(variables=variables or {})
    return GroupView(name=name, config=config, **kw)  # type: ignore[arg-type]


RACK_A = group("rack-a", {"ntp": "10.0.0.1"}, network="rack1")
GPU = group("gpu", {"disk": "nvme0n1"}, labels=("rack=a",), tags=("gpu",))
EVERYONE = group("everyone", {"console": "ttyS1"})


def test_selectors_state_network_labels() -> None:
    m = machine(state="ready", network="rack1", labels=("rack=a", "role=web"), tags=("gpu",))
    assert group_matches(group("g", state="ready"), m, None)
    assert not group_matches(group("g", state="deployed"), m, None)
    assert group_matches(group("g", network="rack1"), m, None)
    assert not group_matches(group("g", network="rack2"), m, None)
    assert group_matches(group("g", labels=("rack=a", "role=web")), m, None)
    assert not group_matches(group("g", labels=("rack=a", "role=db")), m, None)
    assert not group_matches(group("g", labels=("rack=b",)), m, None)
    # A machine not in the inventory has no state, network or labels.
    assert not group_matches(group("g", state="ready"), None, facts())
    assert group_matches(group("g", manufacturer="Dell"), None, facts(manufacturer="Dell"))
    assert group_matches(group("g"), None, None)


def test_order_least_specific_first_then_name() -> None:
    m = machine(network="rack1", labels=("rack=a",), tags=("gpu",))
    zeta = group("zeta")
    assert applying([GPU, zeta, RACK_A, EVERYONE], m, None) == (EVERYONE, zeta, RACK_A, GPU)


def test_merge_order_profile_groups_machine() -> None:
    m = machine(network="rack1", labels=("rack=a",), tags=("gpu",), variables={"ntp": "own"})
    groups = applying([GPU, RACK_A, EVERYONE], m, None)
    sources = {
        v.name: (v.value, v.source)
        for v in variable_sources("install", INSTALL.variables, groups, m.variables)
    }
    assert sources == {
        "console": ("ttyS1", "group everyone"),
        "disk": ("nvme0n1", "group gpu"),
        "ntp": ("own", "machine"),
    }
    # The more specific group wins over the less specific one.
    overlap = group("rack-a", {"disk": "sdb"}, network="rack1")
    both = applying([overlap, GPU], m, None)
    assert merged_variables(INSTALL, both, None)["disk"] == "nvme0n1"


def test_lists_combined_metadata_patched() -> None:
    profile = OsConfig(ssh_keys=(ED,), tags=("os:debian",), metadata={"ntp": ["a"], "site": "x"})
    g1 = OsConfig(ssh_keys=(ED2,), tags=("rack:a",), metadata={"ntp": ["b"], "rack": "a"})
    g2 = OsConfig(ssh_keys=(ED,), tags=("rack:a", "gpu"), metadata={"site": None})
    mine = OsConfig(metadata={"rack": "a1"}, variables={"v": "m"})
    merged = merge(profile, mine, [g1, g2])
    assert merged.ssh_keys == (ED, ED2)
    assert merged.tags == ("gpu", "os:debian", "rack:a")
    assert merged.metadata == {"ntp": ["b"], "rack": "a1"}
    assert merged.variables == {"v": "m"}


def test_decision_explains_groups() -> None:
    m = machine(network="rack1", labels=("rack=a",), tags=("gpu",), profile=INSTALL)
    d = decide(m, (), None, None, NOW, [GPU, RACK_A, group("nobody", state="retired")])
    assert d.step == "assigned"
    assert d.groups == (RACK_A, GPU)
    assert d.reason == (
        "machine 7 is assigned profile 'install'; groups applied (least specific first): "
        "rack-a, gpu"
    )
    assert decide(m, (), None, None, NOW).reason == "machine 7 is assigned profile 'install'"


def test_group_variables_reach_the_kernel_line() -> None:
    m = machine(network="rack1", labels=("rack=a",), tags=("gpu",))
    d = Decision("assigned", INSTALL, "test", machine_id=7, groups=(EVERYONE, RACK_A, GPU))
    script = render_decision(d, m, CTX)
    ipxe.check_script(script)
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert kernel == (
        "kernel --name vmlinuz http://10.0.0.1:8080/assets/vmlinuz "
        "ntp=10.0.0.1 disk=nvme0n1 console=ttyS1 || goto bb_kernel_retry"
    )


@pytest.mark.parametrize("value", ["a b", "${x}", "a\nb", "x;y", "{{ 7 }}", "a&b"])
def test_an_unsafe_value_never_reaches_a_script(value: str) -> None:
    """A value that slipped past the API's checks fails the render (local boot)."""
    with pytest.raises(RenderError, match="unsafe template variable 'ntp'"):
        template_variables(None, CTX, {"ntp": value})


def test_a_missing_variable_fails_the_render() -> None:
    from bootbrain.errors import TemplateProblem

    bare = ProfileView(name="bare", kind="linux", kernel="{{ assets }}/k", cmdline="{{ vars.x }}")
    with pytest.raises(TemplateProblem) as e:
        render_decision(Decision("assigned", bare, "t"), None, CTX)
    assert e.value.field == "cmdline"


SCRIPTED = ProfileView(
    name="site-menu",
    kind="ipxe",
    script="echo ntp {{ vars.ntp }} for {{ vars.site }}\n"
    "chain --autofree {{ assets }}/{{ vars.site }}/menu.ipxe?ntp={{ vars.ntp }}",
    variables={"site": "ams1", "ntp": "pool.example"},
)


def group_vars_script() -> str:
    """A group's and the machine's variables in an iPXE profile: golden
    ``tests/golden/group_vars.ipxe`` (a case of ``test_golden.py``)."""
    m = machine(network="rack1", labels=("rack=a",), tags=("gpu",), variables={"site": "ams2"})
    d = Decision("assigned", SCRIPTED, "test", machine_id=7, groups=(EVERYONE, RACK_A))
    return render_decision(d, m, CTX)
