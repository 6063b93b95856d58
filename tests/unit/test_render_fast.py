"""The fast paths of rendering decide exactly as the straightforward checks did.

Rendering caches and short-cuts the tokenizer and the checks (bootbrain.boot.script,
bootbrain.boot.render). Each test here pits the code against a verbatim copy of the
implementation it replaced (the ``ref_`` functions below) on hostile input: the same
lines, words, problems and messages, the same refusals, the same values.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bootbrain import errors as bberrors
from bootbrain import vocabulary
from bootbrain.boot import sandbox, variables
from bootbrain.boot import script as ipxe
from bootbrain.boot.render import render_bootstrap, render_decision, render_error
from bootbrain.boot.sandbox import MachineText, ScriptText
from bootbrain.boot.script import Command, Line, Script, ScriptError
from bootbrain.boot.types import MachineView, StaticNet
from bootbrain.errors import RenderError
from bootbrain.vocabulary import DOMAIN_RE, HOSTNAME_RE, INTERFACE_RE

PROPERTY = settings(
    max_examples=int(os.environ.get("BOOTBRAIN_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- the replaced implementations, verbatim ---------------------------------------------


def ref_physical_lines(text: str) -> Iterator[tuple[int, str, int, bool]]:
    pos = 0
    number = 1
    start_number = 1
    parts: list[str] = []
    joined = 0
    length = len(text)
    while True:
        eol = text.find("\n", pos)
        fragment = text[pos:] if eol < 0 else text[pos:eol]
        pos = length if eol < 0 else eol + 1
        line = "".join(parts) + fragment
        if line.endswith("\r"):
            line = line[:-1]
        if line.endswith("\\"):
            parts = [line[:-1]]
            joined += 1
            number += 1
            if pos >= length:
                yield start_number, "", joined, True
                return
            continue
        yield start_number, line, joined, False
        parts = []
        joined = 0
        number += 1
        start_number = number
        if pos >= length:
            return


_REF_WHITESPACE_RUN = re.compile(r"[ \t\n\r\v\f]+")


def ref_words(command: str) -> list[str]:
    return [w for w in _REF_WHITESPACE_RUN.split(command) if w]


def ref_split_line(number: int, raw: str, joined: int = 0) -> Line:
    truncated = "\x00" in raw
    line = raw.split("\x00", 1)[0]
    rest = line.lstrip(ipxe.WHITESPACE)
    label: str | None = None
    indented = False
    if rest.startswith(":"):
        indented = rest != line
        body = rest[1:]
        end = 0
        while end < len(body) and body[end] not in ipxe.WHITESPACE:
            end += 1
        label = body[:end]
        rest = body[end + 1 :] if end < len(body) else ""
    else:
        rest = line
    commands: list[Command] = []
    comment: str | None = None
    current: list[str] = []
    words = ref_words(rest)
    for i, word in enumerate(words):
        if word.startswith("#"):
            comment = " ".join(words[i:])
            break
        if word in ipxe.SEPARATORS:
            commands.append(Command(tuple(current), word))
            current = []
        else:
            current.append(word)
    if current or commands:
        commands.append(Command(tuple(current), None))
    return Line(
        number=number,
        text=line,
        label=label,
        commands=tuple(commands),
        comment=comment,
        joined=joined,
        indented_label=indented,
        truncated=truncated,
    )


def ref_tokenize(text: str) -> Script:
    lines: list[Line] = []
    dangling = False
    for number, raw, joined, is_dangling in ref_physical_lines(text):
        if is_dangling:
            dangling = True
            break
        lines.append(ref_split_line(number, raw, joined))
    return Script(tuple(lines), dangling_continuation=dangling)


def ref_reference_problems(word: str) -> list[str]:
    problems: list[str] = []
    if word.count("${") != len(ipxe.REFERENCE_RE.findall(word)):
        problems.append(
            f"{ipxe._show(word)}: every '${{' must start a plain reference like ${{name}} "
            "or ${scope/name:type} (nested or unterminated references are refused)"
        )
    for m in ipxe.REFERENCE_RE.finditer(word):
        name = m.group(1).rsplit("/", 1)[-1]
        scope = m.group(1).split("/", 1)[0] if "/" in m.group(1) else ""
        setting_type = m.group(2)
        machine_string = name in ipxe.MACHINE_STRING_SETTINGS or scope == "smbios"
        if machine_string and setting_type not in ipxe.INERT_TYPES:
            problems.append(
                f"{m.group(0)} expands a string the machine reports; iPXE would run "
                "whatever it contains (use :hexraw)"
            )
    return problems


_REF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def ref_check_script(
    text: str, *, require_magic: bool = True, known_labels: Iterable[str] = ()
) -> Script:
    problems: list[str] = []
    if require_magic and not text.startswith(ipxe.MAGIC + "\n"):
        problems.append("a script must start with '#!ipxe' and a newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append("text that is not valid Unicode (a lone surrogate)")
    control = _REF_CONTROL.search(text)
    if control:
        number = text.count("\n", 0, control.start()) + 1
        problems.append(f"line {number}: control character {control.group(0)!r}")
    script = ref_tokenize(text)
    if script.dangling_continuation:
        problems.append("the script ends inside a backslash continuation")
    seen: dict[str, int] = {}
    for line in script.lines:
        where = f"line {line.number}"
        if line.joined:
            problems.append(f"{where}: backslash continuation")
        if line.label is not None:
            if line.indented_label:
                problems.append(f"{where}: label with whitespace before its colon")
            if not line.label:
                problems.append(f"{where}: empty label")
            if line.commands:
                problems.append(
                    f"{where}: command after label :{line.label} (put it on its own line)"
                )
            if line.label in seen:
                problems.append(
                    f"{where}: label :{line.label} already defined on line {seen[line.label]}"
                )
            seen.setdefault(line.label, line.number)
        for command in line.commands:
            for word in command.words:
                problems.extend(f"{where}: {p}" for p in ref_reference_problems(word))
    labels = set(seen) | set(known_labels)
    for line in script.lines:
        for command in line.commands:
            words = command.words
            static_goto = len(words) == 2 and words[0] == "goto" and "${" not in words[1]
            if static_goto and words[1] not in labels:
                problems.append(f"line {line.number}: goto {words[1]}: no such label")
    if problems:
        raise ScriptError(problems)
    return script


_REF_PLACEHOLDER_RE = re.compile("\ue000([0-9]+)\ue001")


def ref_substitute(text: str, values: Sequence[str]) -> str:
    return _REF_PLACEHOLDER_RE.sub(lambda m: values[int(m.group(1))], text)


def ref_same_structure(skeleton: str, values: Sequence[str], final: str) -> str | None:
    if "\ue000" in final or "\ue001" in final:
        return "the template altered a value's placeholder (a {% filter %} block?)"
    intended = skeleton.split("\n")
    actual = final.split("\n")
    if len(intended) != len(actual):
        return "a value adds or joins lines"
    for number, (want_text, got_text) in enumerate(zip(intended, actual, strict=True), start=1):
        if "\ue000" not in want_text:
            continue
        if got_text.endswith("\\") and not want_text.endswith("\\"):
            return f"line {number}: a value ends the line with a backslash (joins lines)"
        want = ref_split_line(number, want_text)
        got = ref_split_line(number, got_text)
        label = None if want.label is None else ref_substitute(want.label, values)
        if label != got.label:
            return f"line {number}: a value changes a label"
        if len(want.commands) != len(got.commands) or any(
            a.separator != b.separator for a, b in zip(want.commands, got.commands, strict=True)
        ):
            return f"line {number}: a value adds a command separator or a comment"
        for a, b in zip(want.commands, got.commands, strict=True):
            words = tuple(ref_substitute(w, values) for w in a.words)
            if words != b.words:
                return f"line {number}: a value splits or removes words"
            if any(w.count("${") != v.count("${") for w, v in zip(a.words, b.words, strict=True)):
                return f"line {number}: a value creates a ${{…}} expansion"
    return None


def ref_finalize(value: object) -> object:
    if type(value) is ScriptText:
        return str(value)
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | str):
        text = str(value)
    elif isinstance(value, MachineText):
        raise sandbox._UnsafeValueError(MachineText.REFUSAL)
    else:
        raise sandbox._UnsafeValueError(
            f"cannot write a {type(value).__name__} into a script; write one string at a time"
        )
    if "\ue000" in text or "\ue001" in text:
        raise sandbox._UnsafeValueError(
            "values captured with {% set %}…{% endset %}, {% filter %} or a macro cannot be "
            "written out; write each value with {{ … }} where it goes"
        )
    if _REF_CONTROL.search(text):
        raise sandbox._UnsafeValueError("a value contains control characters")
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise sandbox._UnsafeValueError("a value is not valid Unicode")
    capture = sandbox._CAPTURE.get()
    if capture is None or not text:
        return text
    capture.append(text)
    return f"\ue000{len(capture) - 1}\ue001"


def ref_static_values(static: StaticNet, machine: MachineView | None) -> dict[str, str]:
    try:
        ip = ipaddress.IPv4Address(static.ip)
        network = ipaddress.IPv4Network(f"{ip}/{int(static.prefix)}", strict=False)
        netmask = ipaddress.IPv4Address(static.netmask)
        if netmask != network.netmask:
            raise ValueError("netmask does not match prefix")
        gateway = str(ipaddress.IPv4Address(static.gateway)) if static.gateway else ""
        servers = [ipaddress.ip_address(d) for d in static.dns]
        dns = [str(d) for d in servers if d.version == 4]
    except (ValueError, TypeError) as e:
        raise RenderError(f"invalid static assignment: {e}") from None
    hostname = static.hostname or (machine.hostname if machine else None) or ""
    if hostname and not HOSTNAME_RE.fullmatch(hostname):
        raise RenderError("invalid static assignment: hostname")
    if not INTERFACE_RE.fullmatch(static.interface):
        raise RenderError("invalid static assignment: interface")
    domain = static.domain or ""
    if domain and not DOMAIN_RE.fullmatch(domain):
        raise RenderError("invalid static assignment: domain")
    dns0 = dns[0] if dns else ""
    dns1 = dns[1] if len(dns) > 1 else ""
    fields = [str(ip), "", gateway, str(netmask), hostname, static.interface, "none", dns0, dns1]
    while fields[-1] == "" and len(fields) > 7:
        fields.pop()
    return {
        "ip_config": "ip=" + ":".join(fields),
        "ip": str(ip),
        "netmask": str(netmask),
        "prefix": str(network.prefixlen),
        "gateway": gateway,
        "hostname": hostname,
        "interface": static.interface,
        "dns": dns0,
        "dns2": dns1,
        "domain": domain,
    }


# --- hostile input ------------------------------------------------------------------------

#: Pieces of lines: every character the tokenizer or the checks treat specially, and
#: the words they look for (labels, gotos, references, separators, comments).
PIECES = [
    "\n", "\r", "\r\n", "\\", "\\\n", "\\\r\n", "\\\r", ":", ":a", " :a", ":b", ":", "#",
    " #", "#x", "||", " || ", "&&", " && ", ";", " ; ", "${", "}", "${a}", "${serial}",
    "${serial:hexraw}", "${smbios/product}", "${netX/mac:hexhyp}", "${a${b}}", "$", "{",
    "\x00", "\t", " ", "  ", "\x0b", "\x0c", "\x1b", "\x1c", "\x1f", "\x7f", "\x85", "\xa0",
    "\u2003", "\ue000", "\ue001", "\udcff", "é", "a", "b", "x", "0", "-", "goto a",
    "goto b", "goto ${x}", "goto", "echo", "#!ipxe\n", "exit",
]  # fmt: skip
hostile = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=24).map(
    "".join
)
#: Mostly well-formed scripts, so that label and goto checks are reached too.
SCRIPT_LINES = [
    ":a", ":b", ":c", "goto a", "goto b", "goto c", "goto ${x}", "echo hi", "echo ${serial}",
    "echo ${serial:hexraw}", "kernel x || goto a", "a && b ; c # d", ":a echo", " :b", ":",
    "chain x\\", "", "  ", "iseq ${x} 3 && goto a || sleep 1", "set x:int32 0",
]  # fmt: skip
script_lines = st.sampled_from(SCRIPT_LINES)
scripts = st.tuples(
    st.booleans(),
    st.lists(st.one_of(script_lines, hostile), max_size=12),
    st.sampled_from(["\n", "", "\r\n", "\\", "\\\n"]),
).map(lambda t: ("#!ipxe\n" if t[0] else "") + "\n".join(t[1]) + t[2])


def outcome(check: Any, text: str, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", check(text, **kw)
    except ScriptError as e:
        return "refused", e.problems


# --- the tokenizer and check_script -------------------------------------------------------


@PROPERTY
@given(st.one_of(hostile, scripts))
def test_tokenize_reads_as_before(text: str) -> None:
    assert ipxe.tokenize(text) == ref_tokenize(text)
    lines, dangling = ipxe.logical_lines(text)
    reference = list(ref_physical_lines(text))
    assert dangling == any(d for *_, d in reference)
    assert lines == [(n, raw, joined) for n, raw, joined, d in reference if not d]
    for number, raw, joined, _ in reference:
        assert ipxe.split_line(number, raw, joined) == ref_split_line(number, raw, joined)
        assert ipxe._words(raw) == ref_words(raw)


@PROPERTY
@given(
    st.one_of(hostile, scripts),
    st.booleans(),
    st.sampled_from([(), ("a",), ("bb_fallback", "c")]),
)
def test_check_script_decides_as_before(
    text: str, require_magic: bool, known: tuple[str, ...]
) -> None:
    kw = {"require_magic": require_magic, "known_labels": known}
    expected = outcome(ref_check_script, text, **kw)
    assert outcome(ipxe.check_script, text, **kw) == expected
    # and again, from the caches
    assert outcome(ipxe.check_script, text, **kw) == expected
    assert outcome(ipxe.validate_script, text, **kw) == (
        ("ok", None) if expected[0] == "ok" else expected
    )


@PROPERTY
@given(hostile)
def test_reference_problems_as_before(word: str) -> None:
    assert ipxe.reference_problems(word) == ref_reference_problems(word)


def test_check_script_known_labels_may_be_an_iterator() -> None:
    text = "#!ipxe\ngoto a\ngoto b\n"
    assert outcome(ipxe.check_script, text, known_labels=iter(["a", "b"]))[0] == "ok"
    assert outcome(ipxe.validate_script, text, known_labels=iter(["a"])) == (
        "refused",
        ("line 3: goto b: no such label",),
    )


def test_long_lines_are_checked_without_the_caches() -> None:
    long = "echo " + "x" * ipxe.CACHED_LINE_LENGTH
    text = f"#!ipxe\n{long} ${{serial}}\n:a\n:a\ngoto b\n"
    assert outcome(ipxe.check_script, text) == outcome(ref_check_script, text)
    assert ipxe.tokenize(text) == ref_tokenize(text)


# --- placeholders ---------------------------------------------------------------------------

#: Values: inert ones (the usual: URLs, addresses, names) and hostile ones.
INERT = ["a", "x-1", "http://10.0.0.1:8080/b?c=d", "ip=1.2.3.4::1.2.3.1:255.0.0.0:h:eth0:none"]
values_st = st.lists(st.one_of(st.sampled_from(INERT), hostile), min_size=1, max_size=4)
#: Skeleton pieces: literal text around placeholders, where values could do harm.
SKELETON = [
    "set x ", " ", ":", "#", "$", "${", "{", "}", "|", "||", "&", ";", "\\", "\n", "\r", "\t",
    "goto ", "echo ", "a", "=", "\x00",
]  # fmt: skip


@st.composite
def skeletons(draw: st.DrawFn) -> tuple[str, list[str]]:
    values = draw(values_st)
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(SKELETON),
                st.integers(0, len(values) - 1).map(lambda i: f"\ue000{i}\ue001"),
            ),
            max_size=16,
        )
    )
    return "".join(parts), values


@PROPERTY
@given(skeletons())
def test_same_structure_decides_as_before(case: tuple[str, list[str]]) -> None:
    skeleton, values = case
    final = ref_substitute(skeleton, values)
    assert sandbox._substitute(skeleton, values) == final
    assert sandbox._same_structure(skeleton, values, final) == ref_same_structure(
        skeleton, values, final
    )


def _outcome(check: Any) -> str | None:
    try:
        check()
    except ScriptError as e:
        return str(e)
    return None


@PROPERTY
@given(skeletons())
# A label made of a value: the skeleton's goto has no target, the final one has.
@example(("\ue0000\ue001:\ngoto x\n:\ue0000\ue001\n", ["x"]))
# Two labels made of equal values: distinct in the skeleton, repeated in the final.
@example((":\ue0000\ue001\n:\ue0001\ue001\n", ["x", "x"]))
def test_a_checked_skeleton_decides_as_the_final_text(case: tuple[str, list[str]]) -> None:
    # The short cut of sandbox.render_shipped: once the values keep every line's
    # reading, checking the skeleton (once) stands for checking each final text.
    skeleton, values = case
    skeleton = "#!ipxe\n" + skeleton
    surrogate = re.compile("[\ud800-\udfff]")
    # _finalize refuses these, and empty values are never placeholders:
    assume(
        not any(
            not v or vocabulary.CONTROL_BUT_TAB_LF_RE.search(v) or surrogate.search(v)
            for v in values
        )
    )
    final = ref_substitute(skeleton, values)
    assume(ref_same_structure(skeleton, values, final) is None)  # else refused before a check

    def fast() -> None:
        if not sandbox._skeleton_decides(skeleton):
            ipxe.validate_script(final)

    assert _outcome(fast) == _outcome(lambda: ipxe.validate_script(final))


#: Values _inert accepts: no character iPXE's reading (or the placeholders) gives a
#: meaning to, and not starting with ":" (a label).
inert_value = st.one_of(
    st.sampled_from(INERT),
    st.text(
        alphabet=st.characters(
            blacklist_characters=" \t\n\r\v\f\x00#|&;${\\\ue000\ue001",
            blacklist_categories=("Cs",),
        ),
        min_size=1,
        max_size=12,
    ).filter(lambda v: not v.startswith(":")),
)


@PROPERTY
@given(st.lists(inert_value, min_size=1, max_size=4))
def test_inert_values_never_change_a_reading(values: list[str]) -> None:
    # The claim behind the short cut: an inert value in any place of any line reads
    # as the placeholder did.
    assert all(sandbox._inert(v) for v in values)  # the strategy makes what it is meant to
    rng = random.Random(repr(values))
    for _ in range(20):
        skeleton = "".join(
            rng.choice([*SKELETON, *(f"\ue000{i}\ue001" for i in range(len(values)))])
            for _ in range(rng.randrange(12))
        )
        final = ref_substitute(skeleton, values)
        assert ref_same_structure(skeleton, values, final) is None


@pytest.mark.parametrize(
    ("value", "inert"),
    [
        ("a", True),
        ("http://h:80/p?q=1", True),
        ("", False),
        (":a", False),
        ("a b", False),
        ("a\tb", False),
        ("a\n", False),
        ("#", False),
        ("a|", False),
        ("&", False),
        (";", False),
        ("$", False),
        ("{", False),
        ("a\\", False),
        ("\x00", False),
        ("\ue000", False),
        ("\x0b", False),
    ],
)
def test_inert(value: str, inert: bool) -> None:
    assert sandbox._inert(value) is inert


class Weird:
    pass


finalize_values = st.one_of(
    hostile,
    hostile.map(ScriptText),
    hostile.map(MachineText),
    st.integers(),
    st.booleans(),
    st.none(),
    st.just(Weird()),
    st.just(["a"]),
    st.builds(lambda: jinja2.StrictUndefined(name="nope")),
    st.builds(lambda: jinja2.Undefined(name="lenient")),
)


@PROPERTY
@given(finalize_values, st.booleans())
def test_finalize_as_before(value: object, capturing: bool) -> None:
    def run(fn: Any) -> tuple[Any, ...]:
        capture: list[str] | None = [] if capturing else None
        token = sandbox._CAPTURE.set(capture)
        try:
            result = fn(value)
            return ("ok", result, type(result), capture)
        except Exception as e:  # the exception is what is compared
            return ("raised", type(e), str(e), capture)
        finally:
            sandbox._CAPTURE.reset(token)

    assert run(sandbox._finalize) == run(ref_finalize)


# --- static values --------------------------------------------------------------------------

ADDRESSES = [
    "10.0.0.1", "10.0.0.0", "192.0.2.10", "255.255.255.0", "255.0.0.0", "255.255.255.255",
    "0.0.0.0", "010.0.0.1", "1.2.3", "1.2.3.4/24", "1.2.3.4/", "256.1.1.1", "::1", "2001:db8::1",
    "", " 1.2.3.4", "x", "9.9.9.9",
]  # fmt: skip


@PROPERTY
@given(
    st.sampled_from(ADDRESSES),
    st.one_of(st.integers(-2, 34), st.sampled_from(["24", "x", "-1", "", 24.0])),
    st.sampled_from(ADDRESSES),
    st.one_of(st.none(), st.sampled_from(ADDRESSES)),
    st.lists(st.sampled_from(ADDRESSES), max_size=3).map(tuple),
    st.sampled_from([None, "lab.example", "BAD_"]),
    st.sampled_from([None, "node-1", "bad host"]),
    st.sampled_from(["eth0", "bad iface"]),
)
def test_static_values_as_before(
    ip: str,
    prefix: Any,
    netmask: str,
    gateway: str | None,
    dns: tuple[str, ...],
    domain: str | None,
    hostname: str | None,
    interface: str,
) -> None:
    static = StaticNet(
        ip=ip,
        prefix=prefix,
        netmask=netmask,
        gateway=gateway,
        dns=dns,
        domain=domain,
        hostname=hostname,
        interface=interface,
    )

    def run(fn: Any) -> tuple[str, Any]:
        try:
            return "ok", fn(static, None)
        except RenderError as e:
            return "refused", str(e)

    assert run(variables.static_values) == run(ref_static_values)
    assert run(variables.static_values) == run(ref_static_values)  # from the caches


# --- whole renders ----------------------------------------------------------------------------


def _clear_caches() -> None:
    for fn in (
        ipxe._parse_line_cached,
        ipxe._report_line_cached,
        sandbox._check_rendered_cached,
        variables._prefix_netmask,
        variables._ipv4_cached,
        variables._ip_cached,
        sandbox._skeleton_decides,
        sandbox._plain_names,
        sandbox._render_plain,
    ):
        fn.cache_clear()


def test_cold_and_warm_caches_render_the_same() -> None:
    from tests.unit.test_golden import CASES

    warm = {name: case() for name, case in CASES.items()}
    again = {name: case() for name, case in CASES.items()}
    _clear_caches()
    cold = {name: case() for name, case in CASES.items()}
    assert warm == again == cold
    for text in cold.values():
        ref_check_script(text)  # what the final check was, on the exact output


def test_hot_path_renders_pass_the_original_checks() -> None:
    rng = random.Random(7)
    script = render_bootstrap("http://10.0.0.1:8080", 6, 2, rng)
    ref_check_script(script)
    ref_check_script(render_error("boot server inventory unavailable", 15))
    from tests.unit.test_golden import DEBIAN, STATIC, TOKEN_CTX, decision, machine

    for n in range(1, 40):
        static = StaticNet(
            ip=f"10.200.{n}.{n}",
            prefix=16,
            netmask="255.255.0.0",
            gateway="10.200.0.1",
            dns=STATIC.dns,
            domain=STATIC.domain,
            hostname=f"node-{n}",
            interface="eth0",
        )
        text = render_decision(decision(DEBIAN), machine(static), TOKEN_CTX)
        assert ref_check_script(text) == ipxe.check_script(text)
        assert f"set IPXE_BOOT_IP 10.200.{n}.{n}\n" in text


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("{{ assets }}/vmlinuz", ("assets",)),
        ("{{ base_url }}/{{ assets }}", ("assets", "base_url")),
        ("console=ttyS0", ()),
        ("{{ assets|lower }}/vmlinuz", None),
        ("{{ mirrors|random }}/vmlinuz", None),  # must not be remembered
        ("{{ machine.hostname }}", None),
        ("{% if x %}a{% endif %}", None),
        ("{{ lipsum() }}", None),
        ("{{ broken", None),
    ],
)
def test_plain_templates_are_only_text_and_variables(
    source: str, names: tuple[str, ...] | None
) -> None:
    assert sandbox._plain_names(source) == names


def test_a_remembered_render_keeps_each_value_type_apart() -> None:
    # ScriptText("a b") == "a b" and hashes alike, but only the str is a value that
    # splits the command line's words, which is refused.
    source = "{{ x }}"
    assert sandbox.render_operator("cmdline", source, {"x": ScriptText("a b")}) == "a b"
    with pytest.raises(bberrors.TemplateProblem, match="splits or removes words"):
        sandbox.render_operator("cmdline", source, {"x": "a b"})
    with pytest.raises(bberrors.TemplateProblem, match="splits or removes words"):
        sandbox.render_operator("cmdline", source, {"x": "a b"})  # not remembered


@PROPERTY
@given(st.lists(st.one_of(st.sampled_from(INERT), hostile), min_size=2, max_size=2))
def test_remembered_operator_renders_match_fresh_ones(values: list[str]) -> None:
    source = "{{ a }}/boot/{{ b }}"
    variables = {"a": values[0], "b": values[1]}

    def outcome(render_it: Any) -> str:
        try:
            return "ok: " + render_it()
        except (bberrors.TemplateProblem, RenderError) as e:
            return f"refused: {e}"

    fresh = outcome(lambda: sandbox._render_operator_text("kernel", source, variables))
    assert outcome(lambda: sandbox.render_operator("kernel", source, variables)) == fresh
    assert outcome(lambda: sandbox.render_operator("kernel", source, variables)) == fresh
