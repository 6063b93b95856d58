"""Issue 16, case 2: a template's render is bounded in time and size, and fails closed.

A template cheap for the sample machine (what a save renders) can be costly for a real
one; each case here used to run for seconds, or build hundreds of megabytes, or serve
a multi-megabyte script."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bootbrain.boot.render import render_decision, validate_profile
from bootbrain.boot.types import Decision, MachineView, ProfileView, RenderContext, RenderLimits
from bootbrain.errors import RenderLimitError, TemplateProblem

BASE = "http://10.0.0.1:8080"
CTX = RenderContext(base_url=BASE, assets_url=BASE + "/assets")

#: Cheap for the sample machine (node-1), some 10^10 loop iterations for any other.
COSTLY = (
    "{% if machine.hostname != 'node-1' %}{% for a in range(100000) %}"
    "{% for b in range(100000) %}{% endfor %}{% endfor %}{% endif %}echo ok\n"
)


def machine(hostname: str = "node-7") -> MachineView:
    return MachineView(
        id=7,
        hostname=hostname,
        state="ready",
        tags=("gpu", "rack1"),
        uuid=None,
        serial=None,
        manufacturer=None,
        product=None,
        asset_tag=None,
        profile=None,
        next_boot=None,
        static=None,
    )


def script_profile(script: str) -> ProfileView:
    return ProfileView(name="p", kind="ipxe", script=script)


def cmdline_profile(cmdline: str) -> ProfileView:
    return ProfileView(name="p", kind="linux", kernel="{{ assets }}/k", cmdline=cmdline)


def render(profile: ProfileView, ctx: RenderContext = CTX) -> str:
    return render_decision(Decision("assigned", profile, "test", machine_id=7), machine(), ctx)


def refused(profile: ProfileView, ctx: RenderContext = CTX) -> tuple[RenderLimitError, float]:
    start = time.monotonic()
    with pytest.raises(RenderLimitError) as e:
        render(profile, ctx)
    return e.value, time.monotonic() - start


def test_a_template_cheap_for_the_sample_machine_is_stopped_for_a_real_one() -> None:
    validate_profile(script_profile(COSTLY))  # saved: the sample machine skips the loops
    e, took = refused(script_profile(COSTLY))
    assert e.field == "script"
    assert "steps" in e.message or "CPU time" in e.message
    assert took < 2


def test_the_cpu_time_bound_stops_a_render_the_step_bound_allows() -> None:
    # Few steps, each slow and small: summing 100000 numbers is one filter call, CPU in C.
    slow = "{% for i in range(1000) %}{{ range(100000)|sum }}{% endfor %}"
    ctx = RenderContext(base_url=BASE, assets_url=BASE + "/assets", limits=RenderLimits(0.2))
    e, took = refused(cmdline_profile(slow), ctx)
    assert "CPU time" in e.message
    assert took < 2


def test_a_script_longer_than_the_limit_is_not_served() -> None:
    big = "{% for i in range(100000) %}echo {{ i }} {{ i }} {{ i }}\n{% endfor %}"  # 3 MB
    e, _ = refused(script_profile(big))
    assert "longer than 262144 characters" in e.message
    small = RenderContext(
        base_url=BASE, assets_url=BASE + "/assets", limits=RenderLimits(max_bytes=4096)
    )
    e, _ = refused(script_profile("{% for i in range(1000) %}echo {{ i }}\n{% endfor %}"), small)
    assert "longer than 4096" in e.message
    assert render(script_profile("{% for i in range(3) %}echo {{ i }}\n{% endfor %}"))


@pytest.mark.parametrize(
    "expression",
    [
        "10 ** (10 ** 9)",  # ** used to be evaluated unbounded
        "(10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000)",
        "'x' * 10 ** 9",
        "(['x' * 200000] * 100000)|join",
        "'a'|center(10 ** 9)",
        "'a'.ljust(10 ** 9)",
        "'%999999999d' % 1",
        "'%999999999d'|format(1)",
        "'{:999999999}'.format(1)",
        "'{:{w}}'.format(1, w=10 ** 9)",
        "('a' * 60000)|replace('a', 'a' * 60000)",
        "range(100000)|join('x' * 60000)",
    ],
)
def test_an_expression_too_large_is_refused_before_it_is_computed(expression: str) -> None:
    start = time.monotonic()
    e, _ = refused(cmdline_profile("x={{ " + expression + " }}"))
    assert e.field == "cmdline"
    assert time.monotonic() - start < 1


@pytest.mark.parametrize(
    "template",
    [
        "{% set ns = namespace(x='a') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}"
        "{% endfor %}x={{ ns.x|length }}",
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}"
        "{{ d('a', 40) }}",
    ],
)
def test_a_value_doubled_step_by_step_is_stopped(template: str) -> None:
    e, took = refused(cmdline_profile(template))
    assert "larger than" in e.message
    assert took < 1


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("x={{ 2 ** 100 }}", f"x={2**100}"),
        ("x={{ '%02d'|format(7) }}-{{ '{}-{}'.format(1, 2) }}", "x=07-1-2"),
        ("x={{ machine.tags|join(',') }}", "x=gpu,rack1"),
        ("x={{ 'ab' * 3 }}{{ 'c' ~ 'd' }}", "x=abababcd"),
        ("{% for t in machine.tags %}t{{ loop.index }}={{ t }} {% endfor %}", "t1=gpu t2=rack1"),
    ],
)
def test_ordinary_templates_render_as_before(template: str, expected: str) -> None:
    script = render(cmdline_profile(template))
    kernel = next(ln for ln in script.splitlines() if ln.startswith("kernel "))
    assert f"/assets/k {expected} || goto" in kernel, kernel


def test_the_budget_is_for_the_whole_script() -> None:
    """Each field alone is within the steps; the script's fields together are not."""
    loop = "{% for i in range(600) %}{% endfor %}{{ assets }}/{{ n }}"
    profile = ProfileView(
        name="p", kind="linux", kernel=loop.replace("{{ n }}", "k"),
        initrds=tuple(loop.replace("{{ n }}", f"i{n}") for n in range(3)),
    )  # fmt: skip
    few = RenderContext(
        base_url=BASE, assets_url=BASE + "/assets", limits=RenderLimits(steps=2000)
    )
    render(profile, RenderContext(base_url=BASE, assets_url=BASE + "/assets"))
    with pytest.raises(RenderLimitError):
        render(profile, few)


def test_a_limit_error_is_a_template_problem_naming_the_field() -> None:
    kw: dict[str, Any] = {"kernel": "{{ assets }}/{{ 'k' * 10 ** 9 }}"}
    with pytest.raises(TemplateProblem) as e:
        render(ProfileView(name="p", kind="linux", **kw))
    assert e.value.field == "kernel"
