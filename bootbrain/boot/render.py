"""Render iPXE scripts: the bootstrap, each decision, and error scripts.

Everything is rendered by Jinja2's ``ImmutableSandboxedEnvironment`` with
``StrictUndefined`` and autoescape off: the shipped templates in
``bootbrain/templates/ipxe/`` and the operator's templates (a profile's kernel URL,
initrd URLs, cmdline, chain URL and ``ipxe`` script).

How a script is kept to exactly the intended commands (BRIEF "Injection"):

* Values the machine reports never reach script text. The bootstrap sends them as
  hex; ``/ipxe`` scripts are built from the inventory and the settings only, and the
  machine-reported strings in ``machine`` (serial, manufacturer, product, asset tag)
  refuse to be written out (see "Template variables").
* Each ``{{ value }}`` first renders as an opaque placeholder word, and the real
  text is substituted afterwards. The text with placeholders (the shape the
  template's author wrote) and the final text are both tokenized with iPXE's rules
  (:mod:`bootbrain.boot.script`) and must give the same lines, labels, commands and
  words, and no new ``${…}``. So a value with a space, newline, ``#``, ``||``,
  ``&&``, ``;``, trailing ``\\`` or leading ``:`` cannot change a script; the render
  is refused instead. Values with control characters are refused outright.
* The finished script is checked again (:func:`bootbrain.boot.script.check_script`):
  ``#!ipxe`` first, no control characters, unique labels, every ``goto`` target
  present, no raw expansion of SMBIOS strings. A script that fails is never returned:
  :class:`RenderError` is raised (the caller answers with :func:`render_error`).

Template variables (operator templates; all strings unless noted)
-----------------------------------------------------------------
``ip_config``
    The Linux ``ip=`` parameter for a machine with a static assignment,
    ``ip=<ip>::<gateway>:<netmask>:<hostname>:<interface>:none:<dns0>:<dns1>``
    (empty fields stay empty; trailing empty DNS fields are left out). ``""`` for a
    machine without one, so ``{{ ip_config }}`` in a cmdline is harmless under DHCP.
``ip``, ``netmask``, ``prefix``, ``gateway``, ``interface``, ``dns``, ``dns2``, ``domain``
    The static assignment's parts (``dns``/``dns2``: the first and second IPv4 DNS
    servers; IPv6 ones cannot go in ``ip=`` and are left out); ``""`` when absent.
``hostname``
    The static assignment's hostname, else the machine's hostname, else ``""``.
``machine``
    None for a machine not in the inventory (use ``{% if machine %}``), else an object
    with ``id`` (int), ``hostname`` (or None), ``state``, ``tags`` (tuple), ``uuid``
    (or None; canonical, hex and hyphens only), ``macs`` (tuple, canonical), and the
    machine-reported ``serial``, ``manufacturer``, ``product``, ``asset_tag``. Those
    four are free text the machine chose, so they can be compared and tested
    (``machine.product == "R640"``, ``"R6" in machine.product``,
    ``machine.product.startswith("R6")``, ``.lower()``) but never written into a
    script, not even filtered: ``{{ machine.serial }}`` fails the render.
``base_url``, ``assets``
    The brain's base URL and the assets URL (kernels and initrds), no trailing slash.
``boot_id``, ``done_url``, ``metadata_url``
    This boot's id, completion-callback URL (POST to it when the OS is up) and
    metadata URL; ``""`` when this boot carries no token.

A value of None renders as ``""``; ``true``/``false`` for booleans.

iPXE variables set by ``/ipxe`` scripts (for the operator's iPXE scripts and cmdlines)
----------------------------------------------------------------------------------
For a machine with a static assignment, first: ``IPXE_BOOT_LINUX_IP_CONFIG``,
``IPXE_BOOT_IP``, ``IPXE_BOOT_NETMASK``, ``IPXE_BOOT_PREFIX``, ``IPXE_BOOT_GATEWAY``,
``IPXE_BOOT_HOSTNAME``, ``IPXE_BOOT_INTERFACE``, ``IPXE_BOOT_DNS``, ``IPXE_BOOT_DNS2``,
``IPXE_BOOT_DOMAIN`` (the same values as above; an absent one is ``clear``-ed so
``isset`` and ``${…}`` see it as empty). Then, when the boot carries a token:
``IPXE_BOOT_ID``, ``IPXE_BOOT_DONE_URL``, ``IPXE_BOOT_METADATA_URL``.

Names starting ``bb_`` (and the bootstrap's ``bootbrain-url``) are the brain's own
labels and settings: an operator's script may ``goto bb_fallback`` to boot from
local disk, but may not define ``bb_`` labels.

What each profile kind renders
------------------------------
``linux``
    ``kernel --name <n> <url> initrd=<name>… <cmdline>``, then ``initrd --name <name>
    <url>`` for each initrd, then ``boot``. Image names are the URL's file name when
    it is a plain unique name (else ``kernel``/``initrdN``), and every initrd is named
    on the kernel line (the EFI stub finds initrds by name); the cmdline's words are
    joined by single spaces. Each fetch is tried :data:`FETCH_ATTEMPTS` times with
    1 s, 2 s… pauses; then local boot.
``ipxe``
    The operator's script (a leading ``#!ipxe`` line dropped), then local boot if it
    falls off its end.
``chain``
    ``chain --replace --autofree <url>``; local boot if the fetch fails.
``local``
    ``exit``, or ``sanboot --no-describe --drive 0x80`` falling back to ``exit``.
``menu``
    ``menu``/``item``/``choose`` with the server's default and timeout (0 = wait for a
    person); each item's profile follows inline under its own label, plus a "Boot
    from local disk" item, which is also the default when none is set. Escape boots
    from local disk. Items cannot be menus.
"""

from __future__ import annotations

import contextvars
import ipaddress
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import jinja2
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bootbrain.identity import HOSTNAME_RE, INTERFACE_RE, TAG_RE

from . import script as ipxe
from .types import (
    Decision,
    MachineView,
    MenuView,
    ProfileView,
    RenderContext,
    StaticNet,
)

#: Tries per kernel/initrd fetch before falling back to local boot.
FETCH_ATTEMPTS: Final = 3
#: Error scripts that retry give up (local boot) after this many in one iPXE session.
ERROR_RETRY_LIMIT: Final = 10
#: Cap on the bootstrap's base delay; the drawn jitter adds up to as much again.
BOOTSTRAP_MAX_BASE_DELAY: Final = 60
LOCAL_METHODS: Final = ("exit", "sanboot")
DECISION_STEPS: Final = ("action", "assigned", "rule", "default", "conflict", "error")
PROFILE_KINDS: Final = ("linux", "ipxe", "chain", "local", "menu")
#: Labels and settings the brain's scripts use; operators' scripts may not define them.
RESERVED_PREFIX: Final = "bb_"

#: Operator fields that are Jinja templates.
TEMPLATE_FIELDS: Final = ("kernel", "initrd", "cmdline", "script", "chain_url")
_URL_FIELDS: Final = ("kernel", "initrd", "chain_url")
_MAX_LENGTH: Final = {
    "kernel": 2048,
    "initrd": 2048,
    "chain_url": 2048,
    "cmdline": 4096,
    "script": 65536,
}

NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MENU_KEY_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: Menu item text: printable ASCII without iPXE's special characters.
MENU_TEXT_RE: Final = re.compile(r"[A-Za-z0-9 !\"'()*+,./:<=>?@\[\]^_~-]{1,80}")
DOMAIN_RE: Final = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
#: Base URLs this brain is reached at (settings, or a request's Host header).
BASE_URL_RE: Final = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%+-]+)*"
)
BOOT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Words of a token URL (done/metadata): a base URL plus a path of safe characters.
TOKEN_URL_RE: Final = re.compile(BASE_URL_RE.pattern + r"(?:/[A-Za-z0-9._~%+-]*)*")
_SAFE_MESSAGE_RE: Final = re.compile(r"[A-Za-z0-9 ,.:()'/-]{1,120}")
_IMAGE_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TemplateProblem(ValueError):  # noqa: N818 - the name is the API layer's contract
    """An operator value or template that cannot be used (the API answers 422)."""

    def __init__(self, field: str, line: int | None, message: str) -> None:
        where = f"{field}, line {line}" if line else field
        super().__init__(f"{where}: {message}")
        self.field = field
        self.line = line
        self.message = message


class RenderError(RuntimeError):
    """The rendered script would not be exactly what was intended; nothing is emitted."""


class ScriptText(str):
    """A fragment that has already been checked and is written out as it is."""


class MachineText:
    """A string the machine reported: comparable and testable, never written out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MachineText):
            return self._value == other._value
        return isinstance(other, str) and self._value == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._value)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item in self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    REFUSAL: Final = (
        "a string the machine reports is never written into a script; "
        "compare it instead (==, in, startswith)"
    )

    def __str__(self) -> str:
        raise _UnsafeValueError(self.REFUSAL)

    def __repr__(self) -> str:
        return "<machine-reported text>"

    def __format__(self, spec: str) -> str:
        return str(self)

    def startswith(self, prefix: str) -> bool:
        return isinstance(prefix, str) and self._value.startswith(prefix)

    def endswith(self, suffix: str) -> bool:
        return isinstance(suffix, str) and self._value.endswith(suffix)

    def lower(self) -> MachineText:
        return MachineText(self._value.lower())

    def upper(self) -> MachineText:
        return MachineText(self._value.upper())

    def strip(self) -> MachineText:
        return MachineText(self._value.strip())


class _UnsafeValueError(Exception):
    pass


# --- template environment ------------------------------------------------------------

_PLACEHOLDER_RE: Final = re.compile("\ue000([0-9]+)\ue001")
_CAPTURE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "bootbrain_render_capture", default=None
)


def _finalize(value: object) -> object:
    """Turn each ``{{ value }}`` into a placeholder word, remembering the real text."""
    if type(value) is ScriptText:
        return str(value)
    text: str
    if type(value) is str:  # what the chain below makes of a str, taken first (usual)
        text = value
    else:
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises UndefinedError naming the variable
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | str):
            text = str(value)
        elif isinstance(value, MachineText):
            raise _UnsafeValueError(MachineText.REFUSAL)
        else:
            raise _UnsafeValueError(
                f"cannot write a {type(value).__name__} into a script; write one string at a time"
            )
    if "\ue000" in text or "\ue001" in text:
        raise _UnsafeValueError(
            "values captured with {% set %}…{% endset %}, {% filter %} or a macro cannot be "
            "written out; write each value with {{ … }} where it goes"
        )
    if _CONTROL_RE.search(text):
        raise _UnsafeValueError("a value contains control characters")
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise _UnsafeValueError("a value is not valid Unicode")
    capture = _CAPTURE.get()
    if capture is None or not text:
        return text
    capture.append(text)
    return f"\ue000{len(capture) - 1}\ue001"


def _environment(loader: jinja2.BaseLoader | None) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=False,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    return env


_OPERATOR_ENV: Final = _environment(None)
_SHIPPED_ENV: Final = _environment(jinja2.PackageLoader("bootbrain", "templates/ipxe"))


def _flat_globals(template: jinja2.Template) -> jinja2.Template:
    """``template`` with its globals (a ChainMap over the environment's) as one dict.

    The same names and values (neither environment's globals change after it is
    made); Jinja copies them into every render's context, which is quicker from a
    dict than from a ChainMap.
    """
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=16)
def _shipped_template(name: str) -> jinja2.Template:
    # The included template too: {% include %} finds it in the environment's cache.
    _flat_globals(_SHIPPED_ENV.get_template("_profile.ipxe.j2"))
    return _flat_globals(_SHIPPED_ENV.get_template(name))


def _substitute(text: str, values: Sequence[str]) -> str:
    if "\ue000" not in text:  # no placeholder: nothing to replace
        return text
    return _PLACEHOLDER_RE.sub(lambda m: values[int(m.group(1))], text)


#: The characters that mean something to iPXE's reading of a line
#: (:func:`bootbrain.boot.script.parse_line`) or to the ``${`` count below: whitespace
#: (word and line breaks), NUL (end of line), ``#`` (comment), ``|``, ``&``, ``;``
#: (separators), ``$`` and ``{`` (expansions), ``\\`` (continuation), and the
#: placeholder marks. Every other character is an ordinary word character.
_READING_RE: Final = re.compile("[ \t\n\r\v\f\x00#|&;${\\\\\ue000\ue001]")


def _inert(value: str) -> bool:
    """Whether ``value``, put in place of a placeholder, reads as the placeholder did.

    A non-empty value without any of :data:`_READING_RE`'s characters, not starting
    with ``:``, changes no line's reading: the whitespace is where it was (so the same
    words, none emptied), no word starts with ``#`` or is a separator that did not
    already (a placeholder word starts with U+E000 and is no separator, and the
    value's first character is neither ``#`` nor part of one), a line starts with
    ``:`` (a label) exactly when it did, no line ends with a backslash that did not,
    and no ``${`` is added (the value has neither ``$`` nor ``{``). So the values are
    just substituted into the label and the words: :func:`_same_structure` finds
    nothing for them.
    """
    return bool(value) and value[0] != ":" and _READING_RE.search(value) is None


def _same_structure(skeleton: str, values: Sequence[str], final: str) -> str | None:
    """Why ``final`` does not read as ``skeleton`` with its values in place, or None.

    ``final`` is ``skeleton`` with each placeholder replaced by its value (as
    :func:`_render_captured` returns them). Values cannot hold CR or NUL
    (``_finalize`` refuses them), so a value can only change the line structure by a
    newline (more lines) or a trailing backslash (a continuation); lines without a
    placeholder are then identical in both texts and only the others need
    tokenizing. When every value is :func:`_inert` none of them does, and the lines
    are not tokenized at all. (:func:`~bootbrain.boot.script.parse_line` is cached: a
    skeleton line recurs in every render of its template.)
    """
    if "\ue000" in final or "\ue001" in final:
        return "the template altered a value's placeholder (a {% filter %} block?)"
    if all(_inert(value) for value in values):
        return None
    intended = skeleton.split("\n")
    actual = final.split("\n")
    if len(intended) != len(actual):
        return "a value adds or joins lines"
    for number, (want_text, got_text) in enumerate(zip(intended, actual, strict=True), start=1):
        if "\ue000" not in want_text:
            continue
        if got_text.endswith("\\") and not want_text.endswith("\\"):
            return f"line {number}: a value ends the line with a backslash (joins lines)"
        want = ipxe.parse_line(want_text)
        got = ipxe.parse_line(got_text)
        label = None if want.label is None else _substitute(want.label, values)
        if label != got.label:
            return f"line {number}: a value changes a label"
        if len(want.commands) != len(got.commands) or any(
            a.separator != b.separator for a, b in zip(want.commands, got.commands, strict=True)
        ):
            return f"line {number}: a value adds a command separator or a comment"
        for a, b in zip(want.commands, got.commands, strict=True):
            words = tuple(_substitute(w, values) for w in a.words)
            if words != b.words:
                return f"line {number}: a value splits or removes words"
            if any(w.count("${") != v.count("${") for w, v in zip(a.words, b.words, strict=True)):
                return f"line {number}: a value creates a ${{…}} expansion"
    return None


def _render_captured(
    template: jinja2.Template, variables: Mapping[str, Any]
) -> tuple[str, list[str], str]:
    """(skeleton, values, final) for one render."""
    capture: list[str] = []
    token = _CAPTURE.set(capture)
    try:
        skeleton = template.render(variables)
    finally:
        _CAPTURE.reset(token)
    return skeleton, capture, _substitute(skeleton, capture)


def _template_line(exc: BaseException, filename: str) -> int | None:
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    tb = exc.__traceback__
    found: int | None = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


@lru_cache(maxsize=2048)
def _compile_cached(source: str) -> jinja2.Template:
    return _flat_globals(_OPERATOR_ENV.from_string(source))


def _compile(source: str, field: str) -> jinja2.Template:
    try:
        return _compile_cached(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateProblem(field, e.lineno, e.message or "syntax error") from None


def _template_failure(field: str, e: Exception) -> TemplateProblem:
    """Any failure inside an operator's template is theirs to fix: say where."""
    return TemplateProblem(field, _template_line(e, "<template>"), str(e) or type(e).__name__)


def control_character(line: str) -> str | None:
    """The first control character in ``line`` (tab allowed), named for an operator."""
    m = _CONTROL_RE.search(line)
    if m is None:
        return None
    return "CR (use Unix line endings)" if m.group(0) == "\r" else repr(m.group(0))


@lru_cache(maxsize=2048)
def _plain_names(source: str) -> tuple[str, ...] | None:
    """The variables ``source`` writes, when it only writes text and variables
    (``{{ assets }}/vmlinuz``); None for anything else (filters, calls, tests, tags)."""
    try:
        tree = _OPERATOR_ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return None
    names: set[str] = set()
    for node in tree.find_all(jinja2.nodes.Node):
        if isinstance(node, jinja2.nodes.Name) and node.ctx == "load":
            names.add(node.name)
        elif not isinstance(
            node, jinja2.nodes.Template | jinja2.nodes.Output | jinja2.nodes.TemplateData
        ):
            return None
    return tuple(sorted(names))


#: Keys of a plain template's render: only immutable values of these exact types.
_PLAIN_TYPES: Final = (str, ScriptText, int, type(None))


def _render_operator(field: str, source: str, variables: Mapping[str, Any]) -> str:
    """Render one operator template and check its shape for ``field``; the final text.

    A template that only writes variables is a function of their values: most
    kernel and initrd URLs (``{{ assets }}/…``) render the same for every machine, so
    those results are remembered, by the values they read. Failures are not."""
    names = _plain_names(source)
    if names is not None and all(n in variables for n in names):
        # With each value's type: a ScriptText equals (and hashes as) the same str,
        # but is written differently.
        key = tuple((type(variables[n]), variables[n]) for n in names)
        if all(t in _PLAIN_TYPES for t, _ in key):
            return _render_plain(field, source, key)
    return _render_operator_text(field, source, variables)


@lru_cache(maxsize=4096)
def _render_plain(field: str, source: str, key: tuple[Any, ...]) -> str:
    names = _plain_names(source)
    assert names is not None
    values = (value for _, value in key)
    return _render_operator_text(field, source, dict(zip(names, values, strict=True)))


def _render_operator_text(field: str, source: str, variables: Mapping[str, Any]) -> str:
    template = _compile(source, field)
    try:
        skeleton, values, final = _render_captured(template, variables)
    except TemplateProblem:
        raise
    except Exception as e:
        raise _template_failure(field, e) from None
    why = _same_structure(skeleton, values, final)
    if why:
        raise TemplateProblem(field, None, why)
    return _check_rendered(field, final)


def render_text(field: str, source: str, variables: Mapping[str, Any]) -> str:
    """Render an operator template that is not an iPXE script (user-data, vendor-data).

    The same sandbox, strict undefined and value checks as every operator template
    (machine-reported strings, lists, dicts and control characters other than tab and
    newline are refused as values); only the iPXE shape checks do not apply — the
    caller checks the document's own format. Raises :class:`TemplateProblem` with the
    template line when known.
    """
    template = _compile(source, field)
    try:
        return template.render(variables)
    except TemplateProblem:
        raise
    except Exception as e:
        raise _template_failure(field, e) from None


_FIELD_ALIASES: Final = {"initrds": "initrd", "label": "menu_label", "key": "menu_key"}


def _base_field(field: str) -> str:
    """The rule a field follows: ``menu.items[0].profile.initrds[1]`` and ``initrds.1``
    follow ``initrd``; ``menu.items.2.label`` follows ``menu_label``."""
    parts = [p for p in re.split(r"[.\[\]]", field) if p and not p.isdigit()]
    last = parts[-1] if parts else field
    return _FIELD_ALIASES.get(last, last)


def _check_rendered(field: str, text: str) -> str:
    """``text`` as ``field``'s rendered value, or :class:`TemplateProblem`.

    A pure function of its arguments (it only tokenizes ``text``) returning an
    immutable string, so the results for short texts are remembered: a kernel or
    initrd URL renders the same for every machine. Failures are not remembered.
    """
    if len(text) <= ipxe.CACHED_LINE_LENGTH:
        return _check_rendered_cached(field, text)
    return _check_rendered_text(field, text)


def _check_rendered_text(field: str, text: str) -> str:
    base = _base_field(field)
    if base in _URL_FIELDS:
        url = text.strip(ipxe.WHITESPACE)  # iPXE's whitespace, not Unicode's (\x85 is a character)
        parsed = ipxe.tokenize(url)
        if not url:
            raise TemplateProblem(field, None, "renders empty")
        if (
            len(parsed.lines) != 1
            or parsed.lines[0].label is not None
            or parsed.lines[0].comment is not None
            or len(parsed.lines[0].commands) != 1
            or parsed.lines[0].commands[0].words != (url,)
        ):
            raise TemplateProblem(field, None, "a URL renders as one word (no spaces, #, || …)")
        if url.startswith("-"):
            raise TemplateProblem(field, None, "a URL cannot start with '-'")
        _check_references(field, url)
        return url
    if base == "cmdline":
        parsed = ipxe.tokenize(text)
        lines = [ln for ln in parsed.lines if ln.text.strip(ipxe.WHITESPACE)]
        if parsed.dangling_continuation or len(lines) > 1 or any(ln.joined for ln in lines):
            raise TemplateProblem(field, None, "a cmdline renders as one line")
        if not lines:
            return ""
        line = lines[0]
        if line.label is not None:
            raise TemplateProblem(field, None, "a cmdline cannot start with ':'")
        if line.comment is not None:
            raise TemplateProblem(
                field, None, "a word starting with '#' would end the kernel line in iPXE"
            )
        if len(line.commands) != 1:
            raise TemplateProblem(field, None, "'||', '&&' and ';' would end the kernel line")
        words = line.commands[0].words
        for word in words:
            _check_references(field, word)
        return " ".join(words)
    if base == "script":
        return _check_operator_script(field, text)
    raise ValueError(f"not a template field: {field}")


_check_rendered_cached: Final = lru_cache(maxsize=1024)(_check_rendered_text)


def _check_references(field: str, word: str) -> None:
    problems = ipxe.reference_problems(word)
    if problems:
        raise TemplateProblem(field, None, problems[0])


def _check_operator_script(field: str, text: str) -> str:
    lines = text.rstrip(ipxe.WHITESPACE).split("\n")
    dropped = 0
    if lines and lines[0].strip() in (ipxe.MAGIC, "#!gpxe"):
        lines, dropped = lines[1:], 1
    body = "\n".join(lines)
    if not body.strip(ipxe.WHITESPACE):
        raise TemplateProblem(field, None, "the script renders empty")
    try:
        parsed = ipxe.check_script(body, require_magic=False, known_labels=("bb_fallback",))
    except ipxe.ScriptError as e:
        first = e.problems[0]
        m = re.match(r"line ([0-9]+): (.*)", first)
        if m:
            first = f"rendered line {int(m.group(1)) + dropped}: {m.group(2)}"
        raise TemplateProblem(field, None, first) from None
    for line in parsed.lines:
        if line.label is not None and line.label.startswith(RESERVED_PREFIX):
            raise TemplateProblem(
                field,
                None,
                f"rendered line {line.number + dropped}: labels starting "
                f"{RESERVED_PREFIX!r} are the brain's own",
            )
    return ScriptText(body.rstrip(ipxe.WHITESPACE))


# --- stored values ---------------------------------------------------------------------


def _strip_jinja(source: str) -> str:
    return re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", source, flags=re.S)


def check_stored_value(field: str, value: str) -> None:
    """Refuse an operator value that could not be rendered safely (raises TemplateProblem).

    Fields: ``name`` (profile, rule and network names), ``kernel``, ``initrd``,
    ``chain_url``, ``cmdline``, ``script`` (templates: checked as text here; call
    :func:`compile_template` too), ``menu_key``, ``menu_label``, ``local_method``,
    ``kind``, ``hostname``, ``interface``, ``domain``, ``tag``, ``base_url``,
    ``assets_url``.
    """
    if not isinstance(value, str):
        raise TemplateProblem(field, None, "must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TemplateProblem(field, None, "not valid Unicode (a lone surrogate)") from None
    base = _base_field(field)
    if base in TEMPLATE_FIELDS:
        limit = _MAX_LENGTH[base]
        if len(value) > limit:
            raise TemplateProblem(field, None, f"longer than {limit} characters")
        if "\ue000" in value or "\ue001" in value:
            raise TemplateProblem(field, None, "contains reserved characters U+E000/U+E001")
        if base == "script":
            for n, line in enumerate(value.split("\n"), start=1):
                what = control_character(line)
                if what:
                    raise TemplateProblem(field, n, f"control character {what}")
                if line.endswith("\\"):
                    raise TemplateProblem(
                        field, n, "backslash continuation lines are not accepted; join the line"
                    )
            return
        if re.search(r"[\x00-\x08\n-\x1f\x7f]", value):
            raise TemplateProblem(field, None, "must be one line without control characters")
        if base in _URL_FIELDS:
            if not value.strip():
                raise TemplateProblem(field, None, "must not be empty")
            if re.search(r"\s", _strip_jinja(value).strip()):
                raise TemplateProblem(field, None, "a URL has no whitespace")
        if value.rstrip().endswith("\\"):
            raise TemplateProblem(field, None, "must not end with a backslash")
        return
    checks: dict[str, tuple[re.Pattern[str], str]] = {
        "name": (NAME_RE, "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"),
        "menu_key": (MENU_KEY_RE, "1-32 lowercase letters, digits, '_', '-'"),
        "menu_label": (MENU_TEXT_RE, "1-80 printable ASCII characters without $ # { } | & ; \\"),
        "hostname": (HOSTNAME_RE, "one RFC 1123 label"),
        "interface": (INTERFACE_RE, "1-15 of [A-Za-z0-9_.-]"),
        "domain": (DOMAIN_RE, "a lowercase DNS domain name"),
        "tag": (TAG_RE, "1-64 of [A-Za-z0-9_.:-], starting with a letter or digit"),
        "base_url": (BASE_URL_RE, "an http(s) URL without spaces, query or trailing slash"),
        "assets_url": (BASE_URL_RE, "an http(s) URL without spaces, query or trailing slash"),
    }
    if base in ("local_method", "kind"):
        allowed = LOCAL_METHODS if base == "local_method" else PROFILE_KINDS
        if value not in allowed:
            raise TemplateProblem(field, None, "must be one of " + ", ".join(allowed))
        return
    if base not in checks:
        raise ValueError(f"no rule for field {field!r}")
    pattern, description = checks[base]
    if not pattern.fullmatch(value):
        raise TemplateProblem(field, None, f"must be {description}")
    if base == "menu_label" and value != value.strip():
        raise TemplateProblem(field, None, "must not start or end with a space")


def compile_template(source: str, field: str) -> None:
    """Compile an operator template and render it once with sample values.

    Raises :class:`TemplateProblem` (with the line when known) for syntax errors,
    unknown variables, unsafe constructs and output of the wrong shape (a URL that
    is not one word, a cmdline with a separator, a script with a ``bb_`` label …).
    """
    base = _base_field(field)
    if base not in TEMPLATE_FIELDS:
        raise ValueError(f"not a template field: {field}")
    check_stored_value(field, source)
    _compile(source, base)
    _render_operator(field, source, template_variables(_SAMPLE_MACHINE, _SAMPLE_CONTEXT))


def validate_profile(profile: ProfileView, field: str = "") -> None:
    """Check every field of a profile, and render it once (menus with their items).

    For the API on writes; raises :class:`TemplateProblem` naming the field
    (``cmdline``, ``initrds[1]``, ``menu.items[2].profile.kernel`` …).
    """
    prefix = f"{field}." if field else ""
    check_stored_value(prefix + "name", profile.name)
    check_stored_value(prefix + "kind", profile.kind)
    if profile.kind == "linux":
        if not profile.kernel:
            raise TemplateProblem(prefix + "kernel", None, "a linux profile needs a kernel")
        compile_template(profile.kernel, prefix + "kernel")
        for n, initrd in enumerate(profile.initrds):
            compile_template(initrd, f"{prefix}initrds[{n}]")
        if profile.cmdline:
            compile_template(profile.cmdline, prefix + "cmdline")
    elif profile.kind == "ipxe":
        if not profile.script:
            raise TemplateProblem(prefix + "script", None, "an ipxe profile needs a script")
        compile_template(profile.script, prefix + "script")
    elif profile.kind == "chain":
        if not profile.chain_url:
            raise TemplateProblem(prefix + "chain_url", None, "a chain profile needs a URL")
        compile_template(profile.chain_url, prefix + "chain_url")
    elif profile.kind == "local":
        if profile.local_method is not None:
            check_stored_value(prefix + "local_method", profile.local_method)
    elif profile.kind == "menu":
        _check_menu(profile.menu, prefix + "menu")
        for n, item in enumerate(profile.menu.items if profile.menu else ()):
            validate_profile(item.profile, f"{prefix}menu.items[{n}].profile")
    if not field:
        decision = Decision(step="assigned", profile=profile, reason="validation")
        try:
            render_decision(decision, _SAMPLE_MACHINE, _SAMPLE_CONTEXT)
        except RenderError as e:
            raise TemplateProblem(prefix + profile.kind, None, str(e)) from None


def _check_menu(menu: MenuView | None, field: str) -> MenuView:
    if menu is None or not menu.items:
        raise TemplateProblem(field, None, "a menu profile needs at least one item")
    keys: set[str] = set()
    for n, item in enumerate(menu.items):
        check_stored_value(f"{field}.items[{n}].key", item.key)
        check_stored_value(f"{field}.items[{n}].label", item.label)
        if item.key in keys:
            raise TemplateProblem(f"{field}.items[{n}].key", None, "repeated key")
        keys.add(item.key)
        if item.profile.kind == "menu":
            raise TemplateProblem(f"{field}.items[{n}].profile", None, "no menus inside menus")
    if menu.default is not None and menu.default not in keys:
        raise TemplateProblem(f"{field}.default", None, "not the key of an item")
    if not isinstance(menu.timeout, int) or not 0 <= menu.timeout <= 86400:
        raise TemplateProblem(f"{field}.timeout", None, "seconds, 0-86400")
    return menu


# --- variables -------------------------------------------------------------------------


@dataclass(frozen=True)
class _MachineVars:
    id: int
    hostname: str | None
    state: str
    tags: tuple[str, ...]
    uuid: str | None
    macs: tuple[str, ...]
    serial: MachineText | None
    manufacturer: MachineText | None
    product: MachineText | None
    asset_tag: MachineText | None


def _text(value: str | None) -> MachineText | None:
    return None if value is None else MachineText(value)


@lru_cache(maxsize=64)
def _prefix_netmask(prefix: int) -> tuple[ipaddress.IPv4Address, int]:
    """Netmask and prefix length of ``IPv4Network(f"{ip}/{prefix}", strict=False)``.

    They (and the error for a bad prefix) do not depend on the address when it is a
    valid one, as ``static_values``' is, so the network of 0.0.0.0 gives them.
    """
    network = ipaddress.IPv4Network(f"0.0.0.0/{prefix}", strict=False)
    return network.netmask, network.prefixlen


@lru_cache(maxsize=256)
def _ipv4_cached(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


@lru_cache(maxsize=256)
def _ip_cached(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _ipv4(value: str) -> ipaddress.IPv4Address:
    """``IPv4Address(value)``, remembered for strings (gateways, netmasks and DNS
    servers recur across a network's machines; errors are not remembered)."""
    return _ipv4_cached(value) if type(value) is str else ipaddress.IPv4Address(value)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip_address(value)``, remembered for strings like :func:`_ipv4`."""
    return _ip_cached(value) if type(value) is str else ipaddress.ip_address(value)


def static_values(static: StaticNet, machine: MachineView | None) -> dict[str, str]:
    """The static assignment as strings, re-validated: an invalid one is a RenderError.

    The one source of ``IPXE_BOOT_*``, the ``ip_config`` template variables and the
    booted OS's network-config (:mod:`bootbrain.boot.documents`), so they cannot disagree.
    """
    try:
        ip = ipaddress.IPv4Address(static.ip)
        network_mask, network_prefix = _prefix_netmask(int(static.prefix))
        netmask = _ipv4(static.netmask)
        if netmask != network_mask:
            raise ValueError("netmask does not match prefix")
        gateway = str(_ipv4(static.gateway)) if static.gateway else ""
        # ip= is colon-separated, so only IPv4 servers can go in it; IPv6 ones are
        # left out of every variable rather than shifting the fields.
        servers = [_ip(d) for d in static.dns]
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
        "prefix": str(network_prefix),
        "gateway": gateway,
        "hostname": hostname,
        "interface": static.interface,
        "dns": dns0,
        "dns2": dns1,
        "domain": domain,
    }


_STATIC_SETTINGS: Final = (
    ("IPXE_BOOT_LINUX_IP_CONFIG", "ip_config"),
    ("IPXE_BOOT_IP", "ip"),
    ("IPXE_BOOT_NETMASK", "netmask"),
    ("IPXE_BOOT_PREFIX", "prefix"),
    ("IPXE_BOOT_GATEWAY", "gateway"),
    ("IPXE_BOOT_HOSTNAME", "hostname"),
    ("IPXE_BOOT_INTERFACE", "interface"),
    ("IPXE_BOOT_DNS", "dns"),
    ("IPXE_BOOT_DNS2", "dns2"),
    ("IPXE_BOOT_DOMAIN", "domain"),
)


def _check_context(ctx: RenderContext) -> None:
    for name, value, pattern in (
        ("base_url", ctx.base_url, BASE_URL_RE),
        ("assets_url", ctx.assets_url, BASE_URL_RE),
        ("boot_id", ctx.boot_id, BOOT_ID_RE),
        ("done_url", ctx.done_url, TOKEN_URL_RE),
        ("metadata_url", ctx.metadata_url, TOKEN_URL_RE),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise RenderError(f"unsafe {name} in the render context")
    if ctx.local_method not in LOCAL_METHODS:
        raise RenderError("unknown local boot method in the render context")


def template_variables(machine: MachineView | None, ctx: RenderContext) -> dict[str, Any]:
    """The variables operator templates see (documented in this module's docstring)."""
    _check_context(ctx)
    static = dict.fromkeys(
        ("ip_config", "ip", "netmask", "prefix", "gateway", "interface", "dns", "dns2", "domain"),
        "",
    )
    static["hostname"] = (machine.hostname if machine else None) or ""
    if machine is not None and machine.static is not None:
        static.update(static_values(machine.static, machine))
    machine_vars = None
    if machine is not None:
        machine_vars = _MachineVars(
            id=machine.id,
            hostname=machine.hostname,
            state=machine.state,
            tags=tuple(machine.tags),
            uuid=machine.uuid,
            macs=tuple(machine.macs),
            serial=_text(machine.serial),
            manufacturer=_text(machine.manufacturer),
            product=_text(machine.product),
            asset_tag=_text(machine.asset_tag),
        )
    return {
        **static,
        "machine": machine_vars,
        "base_url": ctx.base_url,
        "assets": ctx.assets_url,
        "boot_id": ctx.boot_id or "",
        "done_url": ctx.done_url or "",
        "metadata_url": ctx.metadata_url or "",
    }


# --- rendering -------------------------------------------------------------------------


def _render_shipped(name: str, variables: Mapping[str, Any]) -> str:
    template = _shipped_template(name)
    try:
        skeleton, values, final = _render_captured(template, variables)
    except TemplateProblem:
        raise
    except Exception as e:
        raise RenderError(f"{name}: {e}") from e
    why = _same_structure(skeleton, values, final)
    if why:
        raise RenderError(f"{name}: {why}")
    try:
        if not _skeleton_decides(skeleton):
            ipxe.validate_script(final)
    except ipxe.ScriptError as e:
        raise RenderError(f"{name}: {e}") from None
    return final


@lru_cache(maxsize=512)
def _skeleton_decides(skeleton: str) -> bool:
    """Whether checking ``skeleton`` (raising :class:`ScriptError` as the final text
    would) stands for checking every final text made from it; False: check the final.

    Called once :func:`_same_structure` has found that the values change no line's
    reading, and the values hold no control character or lone surrogate
    (:func:`_finalize`). What :func:`~bootbrain.boot.script.validate_script` finds on a
    line then differs between skeleton and final only through a placeholder in a
    label, in a ``goto`` target, or on a line with a ``${…}`` reference (whose words
    it parses); a skeleton with none of those is checked once. In a boot storm the
    skeleton is the same for every machine of a profile, and the lines that differ
    (their addresses, boot URLs) need no tokenizing per machine.
    """
    for line in skeleton.split("\n"):
        if "\ue000" in line and (
            "${" in line or "goto" in line or line.lstrip(ipxe.WHITESPACE).startswith(":")
        ):
            return False
    ipxe.validate_script(skeleton)  # a failure is raised, and not remembered
    return True


def _local_boot(method: str | None, default: str) -> ScriptText:
    chosen = method or default
    if chosen not in LOCAL_METHODS:
        raise RenderError(f"unknown local boot method {chosen!r}")
    if chosen == "sanboot":
        return ScriptText("sanboot --no-describe --drive 0x80 || exit")
    return ScriptText("exit")


def _image_name(url: str, used: set[str], fallback: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if "$" in name or not _IMAGE_NAME_RE.fullmatch(name) or name in used:
        name = fallback
        n = 1
        while name in used:
            name = f"{fallback}{n}"
            n += 1
    used.add(name)
    return name


def _profile_vars(
    profile: ProfileView,
    prefix: str,
    variables: Mapping[str, Any],
    ctx: RenderContext,
    field: str,
    in_menu: bool,
) -> dict[str, Any]:
    """What _profile.ipxe.j2 needs for one profile; operator templates rendered here."""
    if not NAME_RE.fullmatch(profile.name):
        raise RenderError("unsafe profile name")
    out: dict[str, Any] = {"kind": profile.kind, "name": profile.name}
    if profile.kind == "linux":
        if not profile.kernel:
            raise TemplateProblem(field + "kernel", None, "a linux profile needs a kernel")
        used: set[str] = set()
        kernel_url = _render_operator(field + "kernel", profile.kernel, variables)
        # Names match _IMAGE_NAME_RE: part of the script's text, like the labels.
        kernel_name = ScriptText(_image_name(kernel_url, used, "kernel"))
        initrds = []
        for n, source in enumerate(profile.initrds):
            url = _render_operator(f"{field}initrds[{n}]", source, variables)
            initrds.append((url, ScriptText(_image_name(url, used, "initrd"))))
        cmdline = ""
        if profile.cmdline:
            cmdline = _render_operator(field + "cmdline", profile.cmdline, variables)
        args = " ".join(
            [*(f"initrd={name}" for _, name in initrds), *([cmdline] if cmdline else [])]
        )
        fetches = [
            {
                "label": ScriptText(f"{prefix}_kernel"),
                "command": ScriptText("kernel"),
                "name": kernel_name,
                "url": ScriptText(kernel_url),
                "args": ScriptText(args),
            }
        ]
        fetches += [
            {
                "label": ScriptText(f"{prefix}_initrd{n}"),
                "command": ScriptText("initrd"),
                "name": name,
                "url": ScriptText(url),
                "args": ScriptText(""),
            }
            for n, (url, name) in enumerate(initrds)
        ]
        out["fetches"] = fetches
    elif profile.kind == "ipxe":
        if not profile.script:
            raise TemplateProblem(field + "script", None, "an ipxe profile needs a script")
        out["script"] = _render_operator(field + "script", profile.script, variables)
    elif profile.kind == "chain":
        if not profile.chain_url:
            raise TemplateProblem(field + "chain_url", None, "a chain profile needs a URL")
        out["url"] = ScriptText(_render_operator(field + "chain_url", profile.chain_url, variables))
    elif profile.kind == "local":
        out["local_boot"] = _local_boot(profile.local_method, ctx.local_method)
    elif profile.kind == "menu":
        if in_menu:
            raise RenderError("a menu item cannot be a menu")
        try:
            menu = _check_menu(profile.menu, field + "menu")
        except TemplateProblem as e:
            raise RenderError(str(e)) from None
        items = []
        default = ScriptText("bb_fallback")
        for n, item in enumerate(menu.items):
            label = ScriptText(f"bb_item{n}")
            if item.key == menu.default:
                default = label
            items.append(
                {
                    "label": label,
                    "text": ScriptText(item.label),
                    "profile": _profile_vars(
                        item.profile,
                        label,
                        variables,
                        ctx,
                        f"{field}menu.items[{n}].profile.",
                        in_menu=True,
                    ),
                }
            )
        out["menu_items"] = items
        out["default"] = default
        out["timeout_ms"] = menu.timeout * 1000
        out["title"] = ScriptText(f"bootbrain: {profile.name}")
    else:
        raise RenderError(f"unknown profile kind {profile.kind!r}")
    return out


def render_decision(decision: Decision, machine: MachineView | None, ctx: RenderContext) -> str:
    """The full ``/ipxe`` script for this decision.

    Raises :class:`TemplateProblem` when an operator template fails to render for this
    machine, and :class:`RenderError` when the result would not be exactly the
    intended script; answer the machine with :func:`render_error` in both cases.
    """
    if decision.step not in DECISION_STEPS:
        raise RenderError(f"unknown decision step {decision.step!r}")
    sets: list[tuple[str, str]] = []
    message: ScriptText | None = None
    profile_vars: dict[str, Any] | None = None
    local_boot = _local_boot(None, ctx.local_method)
    if decision.step == "conflict":
        message = ScriptText("identity conflict: these identifiers belong to more than one machine")
    elif decision.step == "error":
        message = ScriptText("internal error while deciding")
    else:
        variables = template_variables(machine, ctx)
        if machine is not None and machine.static is not None:
            sets += [(ScriptText(name), variables[key]) for name, key in _STATIC_SETTINGS]
        sets += [
            (ScriptText(name), value)
            for name, value in (
                ("IPXE_BOOT_ID", ctx.boot_id),
                ("IPXE_BOOT_DONE_URL", ctx.done_url),
                ("IPXE_BOOT_METADATA_URL", ctx.metadata_url),
            )
            if value
        ]
        if decision.profile is not None:
            profile_vars = _profile_vars(decision.profile, "bb", variables, ctx, "", False)
    return _render_shipped(
        "decision.ipxe.j2",
        {
            "step": decision.step,
            "p": profile_vars,
            "sets": sets,
            "message": message,
            "local_boot": local_boot,
            "attempts": ScriptText(str(FETCH_ATTEMPTS)),
        },
    )


def bootstrap_delays(retries: int, backoff: int, rng: random.Random) -> list[int]:
    """Seconds to wait before each retry: doubling from ``backoff``, plus 0-100% jitter."""
    delays = []
    for attempt in range(retries):
        base = min(backoff * 2**attempt, max(backoff, BOOTSTRAP_MAX_BASE_DELAY))
        delays.append(base + rng.randint(0, base))
    return delays


def render_bootstrap(base_url: str, retries: int, backoff: int, rng: random.Random) -> str:
    """``/boot.ipxe``: collect identity, chain to ``/ipxe``, retry, then boot locally.

    This iPXE (2019) has no random source a script can use (``${unixtime}`` exists,
    but there is no arithmetic to turn it into a delay), so the jitter is drawn here,
    per response, from ``rng``: each machine fetches its own copy of the bootstrap.
    """
    if not BASE_URL_RE.fullmatch(base_url):
        raise RenderError("unsafe base URL for the bootstrap")
    if not 0 <= retries <= 50 or backoff < 1:
        raise RenderError("retries must be 0-50 and backoff at least 1 s")
    return _render_shipped(
        "bootstrap.ipxe.j2",
        {"ipxe_url": base_url + "/ipxe", "delays": bootstrap_delays(retries, backoff, rng)},
    )


_GENERIC_MESSAGE: Final = "internal error"


def render_error(message: str, retry_seconds: int | None) -> str:
    """A valid script for any failure: a fixed message, then a retry or local boot.

    ``message`` must be a fixed sentence from the brain's code (letters, digits and
    ``,.:()'/-``); anything else is replaced by "internal error", so this never
    fails. With ``retry_seconds`` the script sleeps and chains ``boot.ipxe``
    (relative to its own URL, so path prefixes work), at most
    :data:`ERROR_RETRY_LIMIT` times per iPXE session; then it boots locally.
    """
    if not isinstance(message, str) or not _SAFE_MESSAGE_RE.fullmatch(message):
        message = _GENERIC_MESSAGE
    retry = retry_seconds if isinstance(retry_seconds, int) and retry_seconds > 0 else None
    if retry is not None:
        retry = min(retry, 3600)
    try:
        return _render_shipped(
            "error.ipxe.j2",
            {"message": ScriptText(message), "retry": retry, "limit": ERROR_RETRY_LIMIT},
        )
    except RenderError:  # pragma: no cover - the shipped template is fixed
        return "#!ipxe\necho bootbrain: internal error\nexit\n"


# --- samples for compile-time checks ---------------------------------------------------

_SAMPLE_CONTEXT: Final = RenderContext(
    base_url="http://bootbrain.invalid",
    assets_url="http://bootbrain.invalid/assets",
    boot_id="sample",
    done_url="http://bootbrain.invalid/boot/sample/done",
    metadata_url="http://bootbrain.invalid/boot/sample/",
)
_SAMPLE_MACHINE: Final = MachineView(
    id=1,
    hostname="node-1",
    state="ready",
    tags=("sample",),
    uuid="4c4c4544-0042-3610-8052-b4c04f4e3232",
    serial="SN-1",
    manufacturer="Vendor",
    product="Box",
    asset_tag="A-1",
    profile=None,
    next_boot=None,
    static=StaticNet(
        ip="192.0.2.10",
        prefix=24,
        netmask="255.255.255.0",
        gateway="192.0.2.1",
        dns=("192.0.2.53", "192.0.2.54"),
        domain="example.org",
        hostname="node-1",
        interface="eth0",
    ),
    macs=("52:54:00:00:00:01",),
)


def sample_variables() -> dict[str, Any]:
    """Template variables of the sample machine used to check templates when saved."""
    return template_variables(_SAMPLE_MACHINE, _SAMPLE_CONTEXT)


__all__ = [
    "ERROR_RETRY_LIMIT",
    "FETCH_ATTEMPTS",
    "TEMPLATE_FIELDS",
    "MachineText",
    "RenderError",
    "ScriptText",
    "TemplateProblem",
    "bootstrap_delays",
    "check_stored_value",
    "compile_template",
    "render_bootstrap",
    "render_decision",
    "render_error",
    "render_text",
    "sample_variables",
    "static_values",
    "template_variables",
    "validate_profile",
]
