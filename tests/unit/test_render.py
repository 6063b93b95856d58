"""render.py and script.py: scripts, operator templates, stored-value rules, the tokenizer."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from bootbrain.boot import render
from bootbrain.boot import script as ipxe
from bootbrain.boot.render import (
    bootstrap_delays,
    render_bootstrap,
    render_decision,
    render_error,
    validate_profile,
)
from bootbrain.boot.types import (
    Decision,
    MachineView,
    MenuItem,
    MenuView,
    ProfileView,
    RenderContext,
    StaticNet,
)
from bootbrain.boot.validate import check_stored_value, compile_template
from bootbrain.boot.variables import template_variables
from bootbrain.errors import RenderError, TemplateProblem

BASE = "http://10.0.0.1:8080"
CTX = RenderContext(base_url=BASE, assets_url=BASE + "/assets")
TOKEN_CTX = RenderContext(
    base_url=BASE,
    assets_url=BASE + "/assets",
    boot_id="b-1",
    done_url=BASE + "/boot/tok/done",
    metadata_url=BASE + "/boot/tok/",
)
STATIC = StaticNet(
    ip="10.200.0.50",
    prefix=24,
    netmask="255.255.255.0",
    gateway="10.200.0.1",
    dns=("10.200.0.1",),
    domain="lab.example",
    hostname="node-var",
    interface="eth0",
)
LINUX = ProfileView(
    name="debian",
    kind="linux",
    kernel="{{ assets }}/debian/vmlinuz",
    initrds=("{{ assets }}/debian/initrd.img",),
    cmdline="console=ttyS0 {{ ip_config }} net.ifnames=0",
)


def machine(**kw: Any) -> MachineView:
    base: dict[str, Any] = {
        "id": 7,
        "hostname": "node-7",
        "state": "ready",
        "tags": ("gpu",),
        "uuid": "4c4c4544-0042-3610-8052-b4c04f4e3232",
        "serial": "SN-1",
        "manufacturer": "Lab Vendor Inc.",
        "product": "LabBox 9000",
        "asset_tag": None,
        "profile": None,
        "next_boot": None,
        "static": None,
        "macs": ("52:54:00:aa:cc:01",),
    }
    base.update(kw)
    return MachineView(**base)


def assigned(profile: ProfileView | None, step: str = "assigned") -> Decision:
    return Decision(step=step, profile=profile, reason="test", machine_id=7)


def commands(text: str) -> list[list[str]]:
    return [list(c.words) for c in ipxe.tokenize(text).commands]


def kernel_line(text: str) -> list[str]:
    return next(c for c in commands(text) if c[0] == "kernel")


# --- bootstrap --------------------------------------------------------------------------


def test_bootstrap_collects_identity_in_the_checked_forms() -> None:
    text = render_bootstrap(BASE, 3, 2, random.Random(1))
    assert text.startswith("#!ipxe\n")
    url = (
        f"{BASE}/ipxe?uuid=${{uuid}}&mac=${{netX/mac:hexhyp}}&serial=${{serial:hexraw}}"
        "&board-serial=${board-serial:hexraw}&manufacturer=${manufacturer:hexraw}"
        "&product=${product:hexraw}&asset=${asset:hexraw}&buildarch=${buildarch}"
        "&platform=${platform}"
    )
    assert ["set", "bootbrain-url", url] in commands(text)


def test_bootstrap_retries_then_boots_locally() -> None:
    text = render_bootstrap(BASE, 3, 2, random.Random(1))
    cmds = commands(text)
    chains = [c for c in cmds if c[0] == "chain"]
    assert chains == [["chain", "--replace", "--autofree", "${bootbrain-url}"]] * 4
    sleeps = [int(c[1]) for c in cmds if c[0] == "sleep"]
    assert sleeps == bootstrap_delays(3, 2, random.Random(1))
    assert cmds[-1] == ["exit"]


def test_bootstrap_has_no_dhcp_settings() -> None:
    text = render_bootstrap(BASE, 2, 1, random.Random(0))
    for ref in ("next-server", "filename", "net0/", "dhcp"):
        assert ref not in text


def test_bootstrap_delays_grow_and_jitter() -> None:
    delays = bootstrap_delays(6, 2, random.Random(7))
    bases = [2, 4, 8, 16, 32, 60]
    assert all(b <= d <= 2 * b for b, d in zip(bases, delays, strict=True))
    assert bootstrap_delays(6, 2, random.Random(7)) == delays
    other = {tuple(bootstrap_delays(6, 2, random.Random(seed))) for seed in range(20)}
    assert len(other) > 10  # machines get different schedules


def test_bootstrap_delay_cap_respects_a_large_backoff() -> None:
    assert bootstrap_delays(3, 90, random.Random(0))[2] <= 180


@pytest.mark.parametrize(
    "base",
    [
        "http://evil${serial}",
        "http://a b",
        "http://host/#x",
        "ftp://host",
        "http://host/",
        "http://host\n:x",
    ],
)
def test_bootstrap_refuses_an_unsafe_base_url(base: str) -> None:
    with pytest.raises(RenderError):
        render_bootstrap(base, 2, 1, random.Random(0))


def test_bootstrap_refuses_bad_retry_settings() -> None:
    with pytest.raises(RenderError):
        render_bootstrap(BASE, 51, 1, random.Random(0))
    with pytest.raises(RenderError):
        render_bootstrap(BASE, 2, 0, random.Random(0))


def test_bootstrap_with_a_path_prefix_and_ipv6() -> None:
    text = render_bootstrap("http://[fd00::1]:8080/bootbrain", 1, 1, random.Random(0))
    assert "set bootbrain-url http://[fd00::1]:8080/bootbrain/ipxe?uuid=" in text


# --- decision scripts -------------------------------------------------------------------


def test_linux_profile() -> None:
    text = render_decision(assigned(LINUX), machine(), CTX)
    assert text.startswith("#!ipxe\n")
    assert kernel_line(text) == [
        "kernel",
        "--name",
        "vmlinuz",
        f"{BASE}/assets/debian/vmlinuz",
        "initrd=initrd.img",
        "console=ttyS0",
        "net.ifnames=0",
    ]
    assert [
        "initrd",
        "--name",
        "initrd.img",
        f"{BASE}/assets/debian/initrd.img",
    ] in commands(text)
    assert ["boot"] in commands(text)


def test_linux_fetches_are_retried_then_fall_back() -> None:
    text = render_decision(assigned(LINUX), machine(), CTX)
    script = ipxe.check_script(text)
    assert set(script.labels) >= {
        "bb_kernel",
        "bb_kernel_retry",
        "bb_initrd0",
        "bb_initrd0_retry",
        "bb_fallback",
    }
    retry = ["iseq", "${bb_try}", str(render.FETCH_ATTEMPTS)]
    assert commands(text).count(retry) == 2
    assert "kernel --name vmlinuz" in text and "|| goto bb_kernel_retry" in text


def test_image_names_unique_and_safe() -> None:
    profile = ProfileView(
        name="p",
        kind="linux",
        kernel="http://x/boot/linux?arch=1",
        initrds=("http://x/a/initrd", "http://x/b/initrd", "http://x/c/", "${base}/x.img"),
    )
    line = kernel_line(render_decision(assigned(profile), None, CTX))
    assert line[2] == "linux"
    assert line[4:] == ["initrd=initrd", "initrd=initrd1", "initrd=initrd2", "initrd=x.img"]


def test_static_variables_come_first() -> None:
    text = render_decision(assigned(LINUX), machine(static=STATIC), CTX)
    cmds = commands(text)
    assert cmds[:10] == [
        [
            "set",
            "IPXE_BOOT_LINUX_IP_CONFIG",
            "ip=10.200.0.50::10.200.0.1:255.255.255.0:node-var:eth0:none:10.200.0.1",
        ],
        ["set", "IPXE_BOOT_IP", "10.200.0.50"],
        ["set", "IPXE_BOOT_NETMASK", "255.255.255.0"],
        ["set", "IPXE_BOOT_PREFIX", "24"],
        ["set", "IPXE_BOOT_GATEWAY", "10.200.0.1"],
        ["set", "IPXE_BOOT_HOSTNAME", "node-var"],
        ["set", "IPXE_BOOT_INTERFACE", "eth0"],
        ["set", "IPXE_BOOT_DNS", "10.200.0.1"],
        ["clear", "IPXE_BOOT_DNS2"],
        ["set", "IPXE_BOOT_DOMAIN", "lab.example"],
    ]
    assert "ip=10.200.0.50::10.200.0.1:255.255.255.0:node-var:eth0:none:10.200.0.1" in (
        kernel_line(text)
    )


def test_static_with_empty_fields() -> None:
    static = StaticNet(
        ip="10.0.0.5",
        prefix=30,
        netmask="255.255.255.252",
        gateway=None,
        dns=(),
        domain=None,
        hostname=None,
        interface="enp1s0",
    )
    variables = template_variables(machine(hostname=None, static=static), CTX)
    assert variables["ip_config"] == "ip=10.0.0.5:::255.255.255.252::enp1s0:none"
    assert variables["gateway"] == variables["dns"] == variables["domain"] == ""


def test_ipv6_dns_servers_are_left_out_of_ip_config() -> None:
    static = StaticNet(
        "10.0.0.5", 24, "255.255.255.0", None, ("fd00::53", "10.0.0.53"), None, "h", "eth0"
    )
    variables = template_variables(machine(static=static), CTX)
    assert variables["ip_config"] == "ip=10.0.0.5:::255.255.255.0:h:eth0:none:10.0.0.53"
    assert (variables["dns"], variables["dns2"]) == ("10.0.0.53", "")


def test_static_hostname_falls_back_to_the_machines() -> None:
    static = StaticNet(
        "10.0.0.5", 24, "255.255.255.0", None, ("1.1.1.1", "9.9.9.9"), None, None, "eth0"
    )
    variables = template_variables(machine(static=static), CTX)
    assert variables["ip_config"] == "ip=10.0.0.5:::255.255.255.0:node-7:eth0:none:1.1.1.1:9.9.9.9"


@pytest.mark.parametrize(
    "change",
    [
        {"ip": "10.0.0.300"},
        {"netmask": "255.255.0.0"},
        {"gateway": "gw"},
        {"dns": ("1.1.1.1 ; x",)},
        {"hostname": "bad host"},
        {"interface": "eth0:1 x"},
        {"domain": "a b"},
    ],
)
def test_invalid_static_is_a_render_error(change: dict[str, Any]) -> None:
    from dataclasses import replace

    with pytest.raises(RenderError, match="invalid static assignment"):
        render_decision(assigned(LINUX), machine(static=replace(STATIC, **change)), CTX)


def test_no_static_means_no_static_lines() -> None:
    text = render_decision(assigned(LINUX), machine(), CTX)
    assert "IPXE_BOOT_IP" not in text
    assert template_variables(machine(), CTX)["ip_config"] == ""


def test_boot_token_variables() -> None:
    text = render_decision(assigned(LINUX), machine(), TOKEN_CTX)
    cmds = commands(text)
    assert ["set", "IPXE_BOOT_ID", "b-1"] in cmds
    assert ["set", "IPXE_BOOT_DONE_URL", f"{BASE}/boot/tok/done"] in cmds
    assert ["set", "IPXE_BOOT_METADATA_URL", f"{BASE}/boot/tok/"] in cmds


@pytest.mark.parametrize(
    "ctx",
    [
        RenderContext(base_url="http://x y", assets_url="http://x"),
        RenderContext(base_url=BASE, assets_url="http://x/${serial}"),
        RenderContext(base_url=BASE, assets_url=BASE, boot_id="a b"),
        RenderContext(base_url=BASE, assets_url=BASE, done_url=BASE + "/x#y"),
        RenderContext(base_url=BASE, assets_url=BASE, local_method="reboot"),
    ],
)
def test_unsafe_context_is_a_render_error(ctx: RenderContext) -> None:
    with pytest.raises(RenderError):
        render_decision(assigned(LINUX), machine(), ctx)


def test_ipxe_profile_renders_operators_script() -> None:
    profile = ProfileView(
        name="custom",
        kind="ipxe",
        script=(
            "#!ipxe\nset bootimage_url {{ assets }}\n"
            "kernel ${bootimage_url}/custom_os.vmlinuz ${IPXE_BOOT_LINUX_IP_CONFIG}\n"
            "initrd ${bootimage_url}/custom_os.initrd\nboot\n"
        ),
    )
    text = render_decision(assigned(profile), machine(static=STATIC), CTX)
    cmds = commands(text)
    assert ["set", "bootimage_url", f"{BASE}/assets"] in cmds
    assert [
        "kernel",
        "${bootimage_url}/custom_os.vmlinuz",
        "${IPXE_BOOT_LINUX_IP_CONFIG}",
    ] in cmds
    assert text.count("#!ipxe") == 1
    after = cmds.index(["boot"])
    assert cmds[after + 1] == ["goto", "bb_fallback"]


def test_ipxe_script_may_goto_bb_fallback() -> None:
    profile = ProfileView(name="s", kind="ipxe", script="echo hi\ngoto bb_fallback\n")
    assert ["goto", "bb_fallback"] in commands(render_decision(assigned(profile), None, CTX))


def test_chain_profile() -> None:
    profile = ProfileView(name="nbxyz", kind="chain", chain_url="https://boot.netboot.xyz")
    cmds = commands(render_decision(assigned(profile), None, CTX))
    assert ["chain", "--replace", "--autofree", "https://boot.netboot.xyz"] in cmds


@pytest.mark.parametrize(
    ("method", "default", "expected"),
    [
        (None, "exit", [["exit"]]),
        ("exit", "sanboot", [["exit"]]),
        ("sanboot", "exit", [["sanboot", "--no-describe", "--drive", "0x80"], ["exit"]]),
        (None, "sanboot", [["sanboot", "--no-describe", "--drive", "0x80"], ["exit"]]),
    ],
)
def test_local_profile_methods(method: str | None, default: str, expected: list[list[str]]) -> None:
    profile = ProfileView(name="disk", kind="local", local_method=method)
    ctx = RenderContext(base_url=BASE, assets_url=BASE, local_method=default)
    cmds = commands(render_decision(assigned(profile), None, ctx))
    start = cmds.index(["echo", "bootbrain:", "disk,", "booting", "from", "local", "disk"]) + 1
    assert cmds[start : start + len(expected)] == expected


def test_no_profile_is_local_boot() -> None:
    text = render_decision(assigned(None, "default"), None, CTX)
    assert commands(text) == [["echo", "bootbrain:", "booting", "from", "local", "disk"], ["exit"]]


def test_no_profile_uses_the_configured_method() -> None:
    ctx = RenderContext(base_url=BASE, assets_url=BASE, local_method="sanboot")
    cmds = commands(render_decision(assigned(None, "default"), None, ctx))
    assert cmds[-2:] == [["sanboot", "--no-describe", "--drive", "0x80"], ["exit"]]


def menu_profile(default: str | None = "install", timeout: int = 5) -> ProfileView:
    return ProfileView(
        name="boot-menu",
        kind="menu",
        menu=MenuView(
            items=(
                MenuItem("install", "Install Debian 12", LINUX),
                MenuItem(
                    "rescue",
                    "Rescue (netboot.xyz)",
                    ProfileView("nbxyz", "chain", chain_url="https://boot.netboot.xyz"),
                ),
            ),
            default=default,
            timeout=timeout,
        ),
    )


def test_menu_default_and_timeout_set_by_the_server() -> None:
    text = render_decision(assigned(menu_profile()), machine(), CTX)
    cmds = commands(text)
    assert ["menu", "bootbrain:", "boot-menu"] in cmds
    assert ["item", "bb_item0", "Install", "Debian", "12"] in cmds
    assert ["item", "bb_item1", "Rescue", "(netboot.xyz)"] in cmds
    assert ["item", "bb_fallback", "Boot", "from", "local", "disk"] in cmds
    assert [
        "choose",
        "--timeout",
        "5000",
        "--default",
        "bb_item0",
        "bb_choice",
    ] in cmds
    assert ["goto", "${bb_choice}"] in cmds
    labels = ipxe.check_script(text).labels
    assert {"bb_item0", "bb_item1", "bb_item0_kernel", "bb_fallback"} <= set(labels)


def test_menu_without_default_defaults_to_local_and_zero_waits() -> None:
    cmds = commands(render_decision(assigned(menu_profile(None, 0)), machine(), CTX))
    assert ["choose", "--default", "bb_fallback", "bb_choice"] in cmds


def test_menu_inside_menu_is_refused() -> None:
    inner = menu_profile()
    outer = ProfileView(
        name="outer", kind="menu", menu=MenuView((MenuItem("x", "X", inner),), None, 1)
    )
    with pytest.raises(RenderError):
        render_decision(assigned(outer), None, CTX)
    with pytest.raises(TemplateProblem, match="no menus inside menus"):
        validate_profile(outer)


def test_menu_items_with_colliding_labels_are_refused() -> None:
    a = ProfileView(name="a", kind="ipxe", script=":again\necho a\ngoto again")
    b = ProfileView(name="b", kind="ipxe", script=":again\necho b\ngoto again")
    menu = ProfileView(
        name="m",
        kind="menu",
        menu=MenuView((MenuItem("a", "A", a), MenuItem("b", "B", b)), "a", 3),
    )
    with pytest.raises(RenderError, match="already defined"):
        render_decision(assigned(menu), None, CTX)
    with pytest.raises(TemplateProblem, match="already defined"):
        validate_profile(menu)


def test_conflict_script_is_fixed_text_and_local_boot() -> None:
    decision = Decision("conflict", None, "serial 'X${evil}' and MAC disagree")
    text = render_decision(decision, machine(static=STATIC), TOKEN_CTX)
    assert "evil" not in text
    assert "IPXE_BOOT" not in text
    assert commands(text)[-1] == ["exit"]
    assert "identity conflict" in text


def test_error_decision_is_local_boot() -> None:
    text = render_decision(Decision("error", None, "boom"), None, CTX)
    assert "internal error" in text and commands(text)[-1] == ["exit"]


def test_unknown_step_or_kind_is_a_render_error() -> None:
    with pytest.raises(RenderError):
        render_decision(Decision("bogus", None, "x"), None, CTX)
    with pytest.raises(RenderError):
        render_decision(assigned(ProfileView("p", "pxelinux")), None, CTX)


def test_unsafe_profile_name_is_a_render_error() -> None:
    with pytest.raises(RenderError):
        render_decision(assigned(ProfileView("a b", "local")), None, CTX)


# --- operator templates at render time --------------------------------------------------


def test_machine_strings_cannot_be_written_out() -> None:
    profile = ProfileView(
        name="p", kind="linux", kernel="http://x/k", cmdline="s={{ machine.serial }}"
    )
    with pytest.raises(TemplateProblem) as e:
        render_decision(assigned(profile), machine(), CTX)
    assert e.value.field == "cmdline"
    assert "never written into a script" in e.value.message


@pytest.mark.parametrize(
    "expression",
    [
        "machine.serial",
        "machine.serial ~ ''",
        "machine.serial|string",
        "machine.serial|lower",
        "'%s'|format(machine.serial)",
        "'{}'.format(machine.serial)",
        "[machine.serial]|join",
        "machine.serial|urlencode",
        "machine.serial|replace('S', 'T')",
        "machine.product.upper()",
        "machine.serial._value",
        "machine.serial.__class__",
        "machine.serial|list",
    ],
)
def test_machine_strings_do_not_leak_through_filters(expression: str) -> None:
    profile = ProfileView(name="p", kind="ipxe", script="echo {{ " + expression + " }}")
    with pytest.raises(TemplateProblem):
        render_decision(assigned(profile), machine(), CTX)


def test_machine_strings_can_be_compared() -> None:
    script = (
        "{% if machine.product == 'LabBox 9000' and 'Lab' in machine.manufacturer %}"
        "echo labbox\n{% endif %}"
        "{% if machine.product.startswith('Lab') and machine.serial.lower() == 'sn-1' %}"
        "echo prefix\n{% endif %}"
        "{% if machine.asset_tag is none %}echo no-asset\n{% endif %}"
        "echo {{ machine.serial|length }} {{ machine.id }} {{ machine.uuid }} {{ machine.macs[0] }}"
    )
    cmds = commands(
        render_decision(assigned(ProfileView("p", "ipxe", script=script)), machine(), CTX)
    )
    assert ["echo", "labbox"] in cmds
    assert ["echo", "prefix"] in cmds
    assert ["echo", "no-asset"] in cmds
    assert [
        "echo",
        "4",
        "7",
        "4c4c4544-0042-3610-8052-b4c04f4e3232",
        "52:54:00:aa:cc:01",
    ] in cmds


def test_unknown_machine_is_none() -> None:
    script = "{% if machine %}echo known{% else %}echo unknown{% endif %}"
    cmds = commands(render_decision(assigned(ProfileView("p", "ipxe", script=script)), None, CTX))
    assert ["echo", "unknown"] in cmds


def test_undefined_variable_at_render_names_field_and_line() -> None:
    profile = ProfileView("p", "ipxe", script="echo a\necho {{ nope }}")
    with pytest.raises(TemplateProblem) as e:
        render_decision(assigned(profile), None, CTX)
    assert (e.value.field, e.value.line) == ("script", 2)
    assert "'nope' is undefined" in e.value.message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a b", "splits or removes words"),
        ("x\nreboot", "adds or joins lines"),
        ("x || reboot", "separator"),
        ("x ; reboot", "separator"),
        ("#x", "splits or removes words"),
        ("${serial}", "creates a ${…} expansion"),
        ("x\\", "joins lines"),
    ],
)
def test_hostname_value_cannot_change_a_script(value: str, why: str) -> None:
    # The inventory validates hostnames; this shows the renderer does not rely on it.
    profile = ProfileView("p", "ipxe", script="echo {{ machine.hostname }}\necho done")
    with pytest.raises(TemplateProblem) as e:
        render_decision(assigned(profile), machine(hostname=value), CTX)
    assert why in e.value.message


def test_backslash_inside_a_line_is_harmless() -> None:
    profile = ProfileView("p", "ipxe", script="echo {{ machine.hostname }} done")
    cmds = commands(render_decision(assigned(profile), machine(hostname="x\\"), CTX))
    assert ["echo", "x\\", "done"] in cmds


def test_value_at_line_start_cannot_become_a_label() -> None:
    profile = ProfileView("p", "ipxe", script="{{ machine.hostname }}\necho x")
    with pytest.raises(TemplateProblem, match="label"):
        render_decision(assigned(profile), machine(hostname=":evil"), CTX)


def test_value_next_to_a_dollar_cannot_form_an_expansion() -> None:
    profile = ProfileView("p", "ipxe", script="echo ${{ '{' }}{{ machine.hostname }}}")
    with pytest.raises(TemplateProblem):
        render_decision(assigned(profile), machine(hostname="serial"), CTX)


def test_set_block_values_are_refused() -> None:
    profile = ProfileView("p", "ipxe", script="{% set x %}{{ base_url }}{% endset %}echo {{ x }}")
    with pytest.raises(TemplateProblem, match="set"):
        render_decision(assigned(profile), None, CTX)


def test_sandbox_blocks_attribute_escapes() -> None:
    profile = ProfileView("p", "ipxe", script="echo {{ ''.__class__.__mro__ }}")
    with pytest.raises(TemplateProblem):
        render_decision(assigned(profile), None, CTX)


def test_lists_cannot_be_written_whole() -> None:
    profile = ProfileView("p", "ipxe", script="echo {{ machine.tags }}")
    with pytest.raises(TemplateProblem, match="one string at a time"):
        render_decision(assigned(profile), machine(), CTX)


def test_booleans_and_none_render_plainly() -> None:
    profile = ProfileView("p", "ipxe", script="echo {{ 'gpu' in machine.tags }} [{{ none }}]")
    assert ["echo", "true", "[]"] in commands(render_decision(assigned(profile), machine(), CTX))


# --- compile_template -------------------------------------------------------------------


def test_compile_template_accepts_the_variables() -> None:
    compile_template(
        "console=ttyS0 {{ ip_config }} {{ ip }} {{ netmask }} {{ prefix }} {{ gateway }} "
        "{{ hostname }} {{ interface }} {{ dns }} {{ dns2 }} {{ domain }} {{ base_url }} "
        "{{ assets }} {{ boot_id }} {{ done_url }} {{ metadata_url }} {{ machine.id }} "
        "{{ machine.state }} {{ machine.tags|join(',') }} ${IPXE_BOOT_LINUX_IP_CONFIG}",
        "cmdline",
    )


def test_compile_template_syntax_error_line() -> None:
    with pytest.raises(TemplateProblem) as e:
        compile_template("echo a\n{% if %}\necho b", "script")
    assert (e.value.field, e.value.line) == ("script", 2)


def test_compile_template_unknown_variable() -> None:
    with pytest.raises(TemplateProblem) as e:
        compile_template("{{ assets }}/{{ kernal }}", "kernel")
    assert "'kernal' is undefined" in e.value.message


@pytest.mark.parametrize(
    ("field", "source", "message"),
    [
        ("kernel", "{{ assets }}/a {{ 'b' }}", "one word"),
        ("kernel", "{{ '' }}", "renders empty"),
        ("kernel", "-n{{ assets }}", "cannot start with '-'"),
        ("chain_url", "http://x/${serial}", "expands a string the machine reports"),
        ("cmdline", "a || b", "would end the kernel line"),
        ("cmdline", "a #b", "'#'"),
        ("cmdline", ":x", "':'"),
        ("cmdline", "x=${product:string}", "machine reports"),
        ("cmdline", "x=${a${b}}", "plain reference"),
        ("script", ":bb_mine\necho", "brain's own"),
        ("script", "goto nowhere", "no such label"),
        ("script", ":x echo", "command after label"),
        ("script", "  :x\necho", "whitespace before its colon"),
        ("script", ":x\n:x", "already defined"),
        ("script", "{{ '' }}", "renders empty"),
        ("script", "echo ${serial}", "machine reports"),
    ],
)
def test_compile_template_refuses_wrong_shapes(field: str, source: str, message: str) -> None:
    with pytest.raises(TemplateProblem) as e:
        compile_template(source, field)
    assert message in e.value.message
    assert e.value.field == field


def test_compile_template_accepts_hexraw_references() -> None:
    compile_template("{{ base_url }}/x?s=${serial:hexraw}", "chain_url")


def test_compile_template_unknown_field() -> None:
    with pytest.raises(ValueError, match="not a template field"):
        compile_template("x", "hostname")


def test_template_problem_carries_field_line_message() -> None:
    e = TemplateProblem("script", 3, "bad")
    assert (e.field, e.line, e.message, str(e)) == ("script", 3, "bad", "script, line 3: bad")


# --- check_stored_value -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "debian-12.x_y"),
        ("kernel", "{{ assets }}/vmlinuz"),
        ("initrds.0", "http://x/initrd.img"),
        ("chain_url", "https://boot.netboot.xyz"),
        ("cmdline", "console=ttyS0 {{ ip_config }} quiet"),
        ("script", "#!ipxe\necho hi\n\tboot\n"),
        ("menu_key", "rescue-1"),
        ("menu_label", "Install Debian 12 (bookworm) [auto]"),
        ("local_method", "sanboot"),
        ("kind", "menu"),
        ("hostname", "node-1"),
        ("interface", "enp1s0f0"),
        ("domain", "lab.example.org"),
        ("tag", "rack:a-1"),
        ("base_url", "http://10.0.0.1:8080"),
        ("assets_url", "https://cdn.example/boot/assets"),
    ],
)
def test_check_stored_value_accepts(field: str, value: str) -> None:
    check_stored_value(field, value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "a b"),
        ("name", "-x"),
        ("kernel", "http://x/a b"),
        ("kernel", " "),
        ("kernel", "http://x/\nk"),
        ("initrd", "x" * 2049),
        ("cmdline", "a\nb"),
        ("cmdline", "a\x1b[2J"),
        ("cmdline", "quiet \\"),
        ("script", "echo a\r\necho b"),
        ("script", "echo a \\\necho b"),
        ("script", "echo \x00"),
        ("script", "echo \ue000"),
        ("menu_key", "Rescue"),
        ("menu_label", "Install ${serial}"),
        ("menu_label", "Rack #3"),
        ("menu_label", "a || b"),
        ("menu_label", " padded"),
        ("menu_label", ""),
        ("local_method", "reboot"),
        ("kind", "pxelinux"),
        ("hostname", "Node_1"),
        ("interface", "eth0 eth1"),
        ("domain", "a..b"),
        ("tag", "-x"),
        ("base_url", "http://x/"),
        ("base_url", "http://x?y=1"),
    ],
)
def test_check_stored_value_refuses(field: str, value: str) -> None:
    with pytest.raises(TemplateProblem) as e:
        check_stored_value(field, value)
    assert e.value.field == field


def test_check_stored_value_script_line_numbers() -> None:
    with pytest.raises(TemplateProblem) as e:
        check_stored_value("script", "echo\necho\necho \\")
    assert e.value.line == 3


def test_check_stored_value_unknown_field_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no rule"):
        check_stored_value("colour", "red")


def test_check_stored_value_needs_a_string() -> None:
    with pytest.raises(TemplateProblem):
        check_stored_value("name", 5)  # type: ignore[arg-type]


# --- validate_profile -------------------------------------------------------------------


def test_validate_profile_accepts_each_kind() -> None:
    validate_profile(LINUX)
    validate_profile(ProfileView("s", "ipxe", script="echo hi"))
    validate_profile(ProfileView("c", "chain", chain_url="{{ base_url }}/x.ipxe"))
    validate_profile(ProfileView("l", "local", local_method="exit"))
    validate_profile(menu_profile())


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (ProfileView("l", "linux"), "kernel"),
        (ProfileView("l", "linux", kernel="k", initrds=("a b",)), "initrds[0]"),
        (ProfileView("l", "linux", kernel="k", cmdline="{{ x }}"), "cmdline"),
        (ProfileView("s", "ipxe"), "script"),
        (ProfileView("c", "chain"), "chain_url"),
        (ProfileView("l", "local", local_method="pxe"), "local_method"),
        (ProfileView("m", "menu"), "menu"),
        (ProfileView("m", "menu", menu=MenuView((), None, 1)), "menu"),
        (
            ProfileView("m", "menu", menu=MenuView((MenuItem("a", "A", LINUX),), "b", 1)),
            "menu.default",
        ),
        (
            ProfileView(
                "m",
                "menu",
                menu=MenuView((MenuItem("a", "A", LINUX), MenuItem("a", "B", LINUX)), None, 1),
            ),
            "menu.items[1].key",
        ),
        (
            ProfileView("m", "menu", menu=MenuView((MenuItem("a", "A;", LINUX),), None, 1)),
            "menu.items[0].label",
        ),
        (
            ProfileView("m", "menu", menu=MenuView((MenuItem("a", "A", LINUX),), None, -1)),
            "menu.timeout",
        ),
        (
            ProfileView(
                "m",
                "menu",
                menu=MenuView((MenuItem("a", "A", ProfileView("x", "chain")),), None, 1),
            ),
            "menu.items[0].profile.chain_url",
        ),
        (ProfileView("bad name", "local"), "name"),
        (ProfileView("k", "floppy"), "kind"),
    ],
)
def test_validate_profile_names_the_field(profile: ProfileView, field: str) -> None:
    with pytest.raises(TemplateProblem) as e:
        validate_profile(profile)
    assert e.value.field == field


# --- render_error -----------------------------------------------------------------------


def test_render_error_with_retry() -> None:
    text = render_error("database unavailable", 15)
    cmds = commands(text)
    assert cmds[0] == ["echo", "bootbrain:", "database", "unavailable"]
    assert ["sleep", "15"] in cmds
    assert ["chain", "--replace", "--autofree", "boot.ipxe"] in cmds
    assert ["iseq", "${bb_errors}", str(render.ERROR_RETRY_LIMIT)] in cmds
    assert cmds[-1] == ["exit"]
    ipxe.check_script(text)


def test_render_error_without_retry_boots_locally() -> None:
    text = render_error("request too long", None)
    assert commands(text) == [
        ["echo", "bootbrain:", "request", "too", "long"],
        ["echo", "bootbrain:", "booting", "from", "local", "disk"],
        ["exit"],
    ]


@pytest.mark.parametrize(
    "message", ["serial X${manufacturer}Y", "a\nreboot", "a || reboot", "", "x" * 200, None]
)
def test_render_error_never_echoes_unsafe_text(message: Any) -> None:
    text = render_error(message, None)
    assert commands(text)[0] == ["echo", "bootbrain:", "internal", "error"]


@pytest.mark.parametrize("retry", [0, -5, "10", None])
def test_render_error_bad_retry_means_local_boot(retry: Any) -> None:
    assert "sleep" not in render_error("x", retry)


def test_render_error_retry_is_capped() -> None:
    assert ["sleep", "3600"] in commands(render_error("x", 10**9))


# --- the tokenizer ----------------------------------------------------------------------


def test_tokenizer_lines_words_labels() -> None:
    script = ipxe.tokenize("#!ipxe\n:start\n  kernel  a\tb \nboot\n")
    assert script.labels == ("start",)
    assert [c.words for c in script.commands] == [("kernel", "a", "b"), ("boot",)]


def test_tokenizer_separators_and_comments() -> None:
    line = ipxe.tokenize("a x || b && c ; d #e || f").lines[0]
    assert [(c.words, c.separator) for c in line.commands] == [
        (("a", "x"), "||"),
        (("b",), "&&"),
        (("c",), ";"),
        (("d",), None),
    ]
    assert line.comment == "#e || f"


def test_tokenizer_hash_inside_a_word_is_not_a_comment() -> None:
    assert ipxe.tokenize("echo a#b").commands[0].words == ("echo", "a#b")


def test_tokenizer_separator_must_be_a_whole_word() -> None:
    assert ipxe.tokenize("echo a||b").commands[0].words == ("echo", "a||b")


def test_tokenizer_trailing_empty_command() -> None:
    line = ipxe.tokenize("chain x ||").lines[0]
    assert [c.words for c in line.commands] == [("chain", "x"), ()]


def test_tokenizer_continuation_joins_without_space() -> None:
    script = ipxe.tokenize("echo a\\\nb\necho c\r\n")
    assert [c.words for c in script.commands] == [("echo", "ab"), ("echo", "c")]
    assert script.lines[0].joined == 1
    assert script.lines[1].number == 3


def test_tokenizer_drops_a_continuation_at_the_end() -> None:
    script = ipxe.tokenize("echo a\necho b\\")
    assert script.dangling_continuation
    assert [c.words for c in script.commands] == [("echo", "a")]


def test_tokenizer_nul_ends_the_line() -> None:
    line = ipxe.tokenize("echo a\x00|| reboot").lines[0]
    assert line.truncated and [c.words for c in line.commands] == [("echo", "a")]


def test_tokenizer_label_followed_by_a_command() -> None:
    line = ipxe.tokenize(":x echo hi").lines[0]
    assert line.label == "x" and line.commands[0].words == ("echo", "hi")


def test_tokenizer_whitespace_set_is_ipxes() -> None:
    words = ipxe.tokenize("a\x0bb\x0cc d\u00a0e").commands[0].words
    assert words == ("a", "b", "c", "d\u00a0e")


def test_tokenizer_never_raises_on_empty() -> None:
    assert ipxe.tokenize("").lines[0].commands == ()


def test_references() -> None:
    assert ipxe.references("${a}x${netX/mac:hexhyp}") == ("a", "netX/mac:hexhyp")
    assert ipxe.reference_problems("${serial:hexraw}") == []
    assert ipxe.reference_problems("${smbios/1.4.0}")
    assert ipxe.reference_problems("${x")
    assert ipxe.reference_problems("$x") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("echo", "must start with '#!ipxe'"),
        ("#!ipxe\necho \x1b", "control character"),
        ("#!ipxe\necho a\r\n", "control character"),
        ("#!ipxe\necho a\\\nb", "continuation"),
        ("#!ipxe\necho a\\", "ends inside a backslash continuation"),
        ("#!ipxe\n:\n", "empty label"),
        ("#!ipxe\n:a\n:a\n", "already defined"),
        ("#!ipxe\ngoto b\n", "no such label"),
        ("#!ipxe\necho ${manufacturer}\n", "machine reports"),
    ],
)
def test_check_script_refuses(text: str, problem: str) -> None:
    with pytest.raises(ipxe.ScriptError) as e:
        ipxe.check_script(text)
    assert any(problem in p for p in e.value.problems)


def test_check_script_dynamic_goto_is_allowed() -> None:
    ipxe.check_script("#!ipxe\ngoto ${target}\n")


def test_every_output_starts_with_magic() -> None:
    outputs = [
        render_bootstrap(BASE, 1, 1, random.Random(0)),
        render_decision(assigned(LINUX), machine(), CTX),
        render_error("x", None),
    ]
    assert all(re.match(r"#!ipxe\n", o) for o in outputs)
