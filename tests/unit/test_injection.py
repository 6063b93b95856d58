"""Property tests (hypothesis): hostile strings cannot change what a script does.

Every value is drawn from a mix of iPXE's special characters (newline, CR, trailing
backslash, leading colon, #, ||, &&, ;, ${…}, NUL, control characters, Jinja
delimiters, the renderer's own placeholder characters, lone surrogates) and ordinary
text. Two properties:

* machine-reported values (every query parameter of /ipxe, as raw bytes) never raise
  in parse_facts and never reach the script text at all;
* every stored field the API would accept (check_stored_value, the identity
  validators, compile_template) renders to exactly the intended commands, checked
  with the tokenizer; anything else is refused with TemplateProblem or RenderError,
  never emitted.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootbrain.boot import script as ipxe
from bootbrain.boot.decide import decide
from bootbrain.boot.facts import KNOWN_PARAMETERS, parse_facts
from bootbrain.boot.render import render_bootstrap, render_decision
from bootbrain.boot.types import (
    Decision,
    Facts,
    MachineView,
    MenuItem,
    MenuView,
    ProfileView,
    RenderContext,
    RuleView,
    StaticNet,
)
from bootbrain.boot.validate import MENU_TEXT_RE, check_stored_value, compile_template
from bootbrain.boot.variables import BASE_URL_RE
from bootbrain.errors import RenderError, TemplateProblem
from bootbrain.identity import IdentityError, canonical_hostname
from bootbrain.vocabulary import HOSTNAME_RE, INTERFACE_RE, NAME_RE, TAG_RE

#: 200 examples keep the suite fast; BOOTBRAIN_HYPOTHESIS_EXAMPLES=5000 for a deeper run.
PROPERTY = settings(
    max_examples=int(os.environ.get("BOOTBRAIN_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NASTY = [
    "\n", "\r", "\r\n", "\\", "\\\n", ":", ":x ", "#", " #", "||", " || ", "&&", " && ",
    ";", " ; ", "${", "}", "${serial}", "${manufacturer:string}", "$", "{", "{{", "}}",
    "{%", "%}", "{#", "\x00", "\t", " ", "\x0b", "\x0c", "\x1b[2J", "\x7f", "\ue000",
    "\ue0010\ue001", "\udcff", "é", "ℵ", "a", "Z", "0", "-", "--name", ".", "/", "=",
    "%", "?", "&", "goto bb_fallback", "exit", "#!ipxe\n", "chain http://evil/",
]  # fmt: skip
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=3)), max_size=14).map(
    "".join
)
nasty_bytes = st.one_of(
    st.binary(max_size=40),
    nasty_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
)

BASE = "http://10.0.0.1:8080"
CTX = RenderContext(
    base_url=BASE,
    assets_url=BASE + "/assets",
    boot_id="b1",
    done_url=BASE + "/boot/t/done",
    metadata_url=BASE + "/boot/t/",
)
STATIC = StaticNet(
    "10.0.0.5", 24, "255.255.255.0", "10.0.0.1", ("10.0.0.53",), "lab.example", "n1", "eth0"
)
NOW = datetime(2026, 11, 21, tzinfo=UTC)


def machine(**kw: Any) -> MachineView:
    base: dict[str, Any] = {
        "id": 3,
        "hostname": "n1",
        "state": "ready",
        "tags": ("gpu",),
        "uuid": None,
        "serial": None,
        "manufacturer": None,
        "product": None,
        "asset_tag": None,
        "profile": None,
        "next_boot": None,
        "static": STATIC,
    }
    base.update(kw)
    return MachineView(**base)


def shape(text: str) -> list[tuple[str | None, list[tuple[str | None, str | None]]]]:
    """Labels, command names and separators: what a script does, minus argument values."""
    return [
        (line.label, [(c.words[0] if c.words else None, c.separator) for c in line.commands])
        for line in ipxe.tokenize(text).lines
        if line.label is not None or line.commands
    ]


def ipxe_words(text: str) -> list[str]:
    return [w for w in re.split(f"[{re.escape(ipxe.WHITESPACE)}]+", text) if w]


def no_jinja(text: str) -> str:
    """The same hostile text, but without Jinja delimiters (so it renders as itself)."""
    return re.sub(r"\{(?=[{%#])", "(", text)


def refused(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except TemplateProblem:
        return True
    return False


# --- machine-reported values ------------------------------------------------------------


def query_from(values: dict[str, bytes], encode: bool) -> bytes:
    parts = []
    for name, raw in values.items():
        value = raw.hex().encode() if encode else quote_from_bytes(raw, safe="").encode()
        parts.append(name.encode() + b"=" + value)
    return b"&".join(parts)


@PROPERTY
@given(st.binary(max_size=400))
def test_parse_facts_never_raises_on_any_bytes(raw: bytes) -> None:
    facts = parse_facts(raw)
    assert isinstance(facts, Facts)
    assert all(isinstance(p, str) for p in facts.problems)


param_names = st.one_of(st.sampled_from(sorted(KNOWN_PARAMETERS)), st.text(max_size=8))


@PROPERTY
@given(
    st.lists(st.tuples(param_names, nasty_bytes), max_size=12),
    st.booleans(),
)
def test_parse_facts_never_raises_on_hostile_parameters(
    pairs: list[tuple[str, bytes]], hexed: bool
) -> None:
    query = b"&".join(
        quote_from_bytes(n.encode("utf-8", "surrogatepass")).encode()
        + b"="
        + (v.hex().encode() if hexed else v)
        for n, v in pairs
    )
    facts = parse_facts(query)
    for value in (facts.serial, facts.board_serial, facts.manufacturer, facts.product, facts.asset):
        assert value is None or (value == value.strip() and "\x00" not in value)
        assert value is None or len(value) <= 128
    assert facts.mac is None or re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", facts.mac)
    assert facts.uuid is None or re.fullmatch(r"[0-9a-f-]{36}", facts.uuid)
    assert len(facts.problems) <= 13


# Templates that use the machine but do not branch on its strings: the script must be
# the same whatever the machine claims.
PROFILES = [
    ProfileView(
        "lin",
        "linux",
        kernel="{{ assets }}/vmlinuz",
        initrds=("{{ assets }}/initrd.img",),
        cmdline="console=ttyS0 {{ ip_config }} host={{ machine.hostname }} id={{ machine.id }}",
    ),
    ProfileView(
        "scr",
        "ipxe",
        script=(
            "#!ipxe\necho {{ machine.id }} {{ machine.state }} {{ machine.tags|join(',') }}\n"
            "{% if machine.serial == 'never-claimed' %}echo matched\n{% endif %}"
            "kernel {{ assets }}/k ${IPXE_BOOT_LINUX_IP_CONFIG}\nboot\n"
        ),
    ),
    ProfileView(
        "men",
        "menu",
        menu=MenuView(
            (
                MenuItem("a", "Install", ProfileView("c", "chain", chain_url="{{ base_url }}/x")),
                MenuItem("b", "Local", ProfileView("l", "local", local_method="sanboot")),
            ),
            "a",
            5,
        ),
    ),
]
RULES = [
    RuleView(1, "by-vendor", 0, "Lab", None, None, None, (), PROFILES[0]),
    RuleView(2, "efi", 0, None, None, None, "efi", (), PROFILES[1]),
    RuleView(3, "any", -1, None, None, None, None, (), PROFILES[2]),
]


@PROPERTY
@given(
    st.fixed_dictionaries(
        {
            "serial": nasty_bytes,
            "board-serial": nasty_bytes,
            "manufacturer": st.one_of(st.just(b"Lab"), nasty_bytes),
            "product": nasty_bytes,
            "asset": nasty_bytes,
        }
    ),
    st.fixed_dictionaries(
        {"uuid": nasty_bytes, "mac": nasty_bytes, "buildarch": nasty_bytes, "platform": nasty_bytes}
    ),
    st.sampled_from(PROFILES),
)
def test_machine_values_never_reach_the_script(
    hexed: dict[str, bytes], plain: dict[str, bytes], assigned: ProfileView
) -> None:
    query = query_from(hexed, encode=True) + b"&" + query_from(plain, encode=False)
    facts = parse_facts(query)
    claimed = machine(
        uuid=facts.uuid,
        serial=facts.serial,
        manufacturer=facts.manufacturer,
        product=facts.product,
        asset_tag=facts.asset,
        macs=(facts.mac,) if facts.mac else (),
    )
    # What the machine boots may depend on its claims (rules); the text may not.
    decided = decide(claimed, RULES, facts, None, NOW)
    bland = replace(claimed, serial="S", manufacturer="M", product="P", asset_tag="A")
    assert render_decision(decided, claimed, CTX) == render_decision(decided, bland, CTX)
    with_profile = replace(claimed, profile=assigned)
    bland_profile = replace(bland, profile=assigned)
    decided = decide(with_profile, RULES, facts, None, NOW)
    assert render_decision(decided, with_profile, CTX) == render_decision(
        decided, bland_profile, CTX
    )


@PROPERTY
@given(nasty_text, nasty_text)
def test_conflict_and_error_reasons_never_reach_the_script(reason: str, other: str) -> None:
    for step in ("conflict", "error"):
        a = render_decision(Decision(step, None, reason), None, CTX)
        b = render_decision(Decision(step, None, other), None, CTX)
        assert a == b


# --- stored fields ----------------------------------------------------------------------


BENIGN_LINUX = ProfileView(
    "lin", "linux", kernel="http://x/vmlinuz", initrds=("http://x/initrd",), cmdline="quiet"
)


def accepted(field: str, value: str, template: bool) -> bool:
    if refused(check_stored_value, field, value):
        return False
    return not (template and refused(compile_template, value, field))


@PROPERTY
@given(st.sampled_from(["kernel", "initrds.0", "chain_url"]), nasty_text, st.booleans())
def test_url_fields_render_as_exactly_one_argument(
    field: str, raw: str, with_variable: bool
) -> None:
    source = ("{{ assets }}/" if with_variable else "") + no_jinja(raw)
    if not accepted(field, source, template=True):
        return
    url = (BASE + "/assets/" if with_variable else "") + no_jinja(raw).strip(ipxe.WHITESPACE)
    if field == "chain_url":
        profile = ProfileView("c", "chain", chain_url=source)
        benign = ProfileView("c", "chain", chain_url="http://x/y")
        text = render_decision(Decision("assigned", profile, ""), machine(), CTX)
        assert ["chain", "--replace", "--autofree", url] in [
            list(c.words) for c in ipxe.tokenize(text).commands
        ]
    else:
        if field == "kernel":
            profile = replace(BENIGN_LINUX, kernel=source)
        else:
            profile = replace(BENIGN_LINUX, initrds=(source,))
        benign = BENIGN_LINUX
        text = render_decision(Decision("assigned", profile, ""), machine(), CTX)
        command = "kernel" if field == "kernel" else "initrd"
        words = next(c.words for c in ipxe.tokenize(text).commands if c.words[0] == command)
        assert words[3] == url
        assert len(words) == (6 if command == "kernel" else 4)
    expected = render_decision(Decision("assigned", benign, ""), machine(), CTX)
    assert shape(text) == shape(expected)


@PROPERTY
@given(nasty_text, st.booleans())
def test_cmdline_renders_as_exactly_its_words(raw: str, with_variable: bool) -> None:
    source = no_jinja(raw) + (" {{ ip_config }}" if with_variable else "")
    if not accepted("cmdline", source, template=True):
        return
    profile = replace(BENIGN_LINUX, cmdline=source)
    text = render_decision(Decision("assigned", profile, ""), machine(), CTX)
    words = next(c.words for c in ipxe.tokenize(text).commands if c.words[0] == "kernel")
    expected = ipxe_words(no_jinja(raw))
    if with_variable:
        expected.append("ip=10.0.0.5::10.0.0.1:255.255.255.0:n1:eth0:none:10.0.0.53")
    assert list(words[5:]) == expected
    benign = render_decision(Decision("assigned", BENIGN_LINUX, ""), machine(), CTX)
    assert shape(text) == shape(benign)


@PROPERTY
@given(nasty_text)
def test_script_renders_exactly_the_operators_commands(raw: str) -> None:
    source = no_jinja(raw)
    if not accepted("script", source, template=True):
        return
    text = render_decision(
        Decision("assigned", ProfileView("s", "ipxe", script=source), ""), None, CTX
    )
    body = source.split("\n")
    if body and body[0].strip() in ("#!ipxe", "#!gpxe"):
        body = body[1:]
    operator = shape("\n".join(body).rstrip(ipxe.WHITESPACE))
    marker = render_decision(
        Decision("assigned", ProfileView("s", "ipxe", script="echo MARK"), ""), None, CTX
    )
    around = shape(marker)
    at = around.index((None, [("echo", None)]))
    assert shape(text) == around[:at] + operator + around[at + 1 :]


@PROPERTY
@given(st.one_of(nasty_text, st.from_regex(MENU_TEXT_RE, fullmatch=True)))
def test_menu_label_renders_as_its_words(label: str) -> None:
    if refused(check_stored_value, "menu_label", label):
        return

    def menu(text: str) -> ProfileView:
        item = MenuItem("a", text, ProfileView("l", "local"))
        return ProfileView("m", "menu", menu=MenuView((item,), "a", 3))

    text = render_decision(Decision("assigned", menu(label), ""), None, CTX)
    assert ["item", "bb_item0", *ipxe_words(label)] in [
        list(c.words) for c in ipxe.tokenize(text).commands
    ]
    benign = menu("X")
    assert shape(text) == shape(render_decision(Decision("assigned", benign, ""), None, CTX))


@PROPERTY
@given(st.one_of(nasty_text, st.from_regex(NAME_RE, fullmatch=True)))
def test_profile_name_renders_as_one_word(name: str) -> None:
    if refused(check_stored_value, "name", name):
        return
    text = render_decision(Decision("assigned", ProfileView(name, "local"), ""), None, CTX)
    assert ["echo", "bootbrain:", name + ",", "booting", "from", "local", "disk"] in [
        list(c.words) for c in ipxe.tokenize(text).commands
    ]


@PROPERTY
@given(
    st.one_of(nasty_text, st.from_regex(HOSTNAME_RE, fullmatch=True)),
    st.one_of(nasty_text, st.from_regex(INTERFACE_RE, fullmatch=True)),
    st.one_of(nasty_text, st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)),
    st.lists(st.one_of(nasty_text, st.from_regex(TAG_RE, fullmatch=True)), max_size=3),
)
def test_static_and_machine_fields_render_as_single_words(
    hostname: str, interface: str, domain: str, tags: list[str]
) -> None:
    try:
        hostname = canonical_hostname(hostname)
    except IdentityError:
        return
    for field, value in [("hostname", hostname), ("interface", interface), ("domain", domain)] + [
        ("tag", t) for t in tags
    ]:
        if refused(check_stored_value, field, value):
            return
    static = replace(STATIC, hostname=hostname, interface=interface, domain=domain)
    script = (
        "echo {{ hostname }} {{ interface }} {{ domain }}"
        "{% for t in machine.tags %} {{ t }}{% endfor %}"
    )
    profile = ProfileView("s", "ipxe", script=script)
    m = machine(hostname=hostname, tags=tuple(tags), static=static)
    text = render_decision(Decision("assigned", profile, ""), m, CTX)
    cmds = [list(c.words) for c in ipxe.tokenize(text).commands]
    assert ["set", "IPXE_BOOT_HOSTNAME", hostname] in cmds
    assert ["set", "IPXE_BOOT_INTERFACE", interface] in cmds
    assert ["set", "IPXE_BOOT_DOMAIN", domain] in cmds
    assert ["echo", hostname, interface, domain, *tags] in cmds
    benign = render_decision(
        Decision("assigned", profile, ""), machine(tags=("x",) * len(tags)), CTX
    )
    assert shape(text) == shape(benign)


@PROPERTY
@given(nasty_text, st.sampled_from(["hostname", "state"]))
def test_unvalidated_inventory_values_are_refused_or_one_word(value: str, attr: str) -> None:
    # Even if a value bypassed the API's validation, the renderer keeps the script intact.
    profile = ProfileView("s", "ipxe", script="echo [{{ machine." + attr + " }}]\necho end")
    try:
        text = render_decision(
            Decision("assigned", profile, ""), machine(**{attr: value}, static=None), CTX
        )
    except (TemplateProblem, RenderError):
        return
    cmds = [list(c.words) for c in ipxe.tokenize(text).commands]
    assert ["echo", f"[{value}]"] in cmds
    benign = render_decision(Decision("assigned", profile, ""), machine(static=None), CTX)
    assert shape(text) == shape(benign)


@PROPERTY
@given(
    st.one_of(nasty_text.map(lambda s: "http://" + s), st.from_regex(BASE_URL_RE, fullmatch=True))
)
def test_bootstrap_base_url_is_refused_or_exact(base: str) -> None:
    try:
        text = render_bootstrap(base, 2, 1, random.Random(0))
    except RenderError:
        assert not BASE_URL_RE.fullmatch(base)
        return
    cmds = [list(c.words) for c in ipxe.tokenize(text).commands]
    assert cmds[0][:2] == ["set", "bootbrain-url"] and len(cmds[0]) == 3
    assert cmds[0][2].startswith(base + "/ipxe?uuid=${uuid}&")
    assert shape(text) == shape(render_bootstrap(BASE, 2, 1, random.Random(0)))


@PROPERTY
@given(nasty_text)
def test_tokenizer_and_checker_never_crash(text: str) -> None:
    script = ipxe.tokenize(text)
    assert all(isinstance(c.words, tuple) for c in script.commands)
    try:
        ipxe.check_script(text)
    except ipxe.ScriptError as e:
        assert e.problems


@PROPERTY
@given(nasty_text)
def test_error_script_message_is_fixed_or_safe(message: str) -> None:
    from bootbrain.boot.render import render_error

    text = render_error(message, 5)
    ipxe.check_script(text)
    assert shape(text) == shape(render_error("x", 5))


def test_expired_action_example_still_renders() -> None:
    # A sanity anchor for the properties above: a full decision with every feature.
    m = machine(
        next_boot=None, profile=PROFILES[2], serial="X${manufacturer}Y", product="a || reboot"
    )
    d = decide(m, RULES, parse_facts(b""), None, NOW + timedelta(days=1))
    text = render_decision(d, m, CTX)
    assert "reboot" not in text and "manufacturer" not in text
