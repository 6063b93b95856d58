"""Save-time checks: an operator's value or template is refused when it is written
(the API answers 422 naming the field and line), not when a machine boots.

:func:`check_stored_value` checks a value's text by its field's rule, and
:func:`compile_template` compiles a template in the sandbox and renders it once for a
sample machine (:data:`SAMPLE_MACHINE`).
:func:`~bootbrain.boot.render.validate_profile` runs them all on a profile and
renders it once, as a machine would get it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from bootbrain.errors import TemplateProblem
from bootbrain.vocabulary import (
    CONTROL_BUT_TAB_RE,
    DOMAIN_RE,
    HOSTNAME_RE,
    INTERFACE_RE,
    LOCAL_METHODS,
    MENU_KEY_RE,
    NAME_RE,
    PROFILE_KINDS,
    TAG_RE,
)

from .sandbox import (
    TEMPLATE_FIELDS,
    URL_FIELDS,
    base_field,
    compile_source,
    control_character,
    render_operator,
)
from .types import MachineView, MenuView, RenderContext, StaticNet
from .variables import BASE_URL_RE, template_variables

__all__ = [
    "MENU_TEXT_RE",
    "SAMPLE_CONTEXT",
    "SAMPLE_MACHINE",
    "SampleVars",
    "check_menu",
    "check_stored_value",
    "compile_template",
    "sample_variables",
]


#: Menu item text: printable ASCII without iPXE's special characters.
MENU_TEXT_RE: Final = re.compile(r"[A-Za-z0-9 !\"'()*+,./:<=>?@\[\]^_~-]{1,80}")

_MAX_LENGTH: Final = {
    "kernel": 2048,
    "initrd": 2048,
    "chain_url": 2048,
    "cmdline": 4096,
    "script": 65536,
}


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
    base = base_field(field)
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
        if CONTROL_BUT_TAB_RE.search(value):
            raise TemplateProblem(field, None, "must be one line without control characters")
        if base in URL_FIELDS:
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
    base = base_field(field)
    if base not in TEMPLATE_FIELDS:
        raise ValueError(f"not a template field: {field}")
    check_stored_value(field, source)
    compile_source(source, base)
    render_operator(field, source, sample_variables())


SAMPLE_CONTEXT: Final = RenderContext(
    base_url="http://bootbrain.invalid",
    assets_url="http://bootbrain.invalid/assets",
    boot_id="sample",
    done_url="http://bootbrain.invalid/boot/sample/done",
    metadata_url="http://bootbrain.invalid/boot/sample/",
)

SAMPLE_MACHINE: Final = MachineView(
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


class SampleVars(dict[str, str]):
    """``vars`` when a template is saved: every name has a value, since the groups
    that will give it one may not exist yet. A machine that lacks one at boot gets
    the render's error script (local boot), and the boot preview names the variable."""

    def __missing__(self, key: str) -> str:
        return "sample"


def sample_variables() -> dict[str, Any]:
    """Template variables of the sample machine used to check templates when saved."""
    return {**template_variables(SAMPLE_MACHINE, SAMPLE_CONTEXT), "vars": SampleVars()}


def check_menu(menu: MenuView | None, field: str) -> MenuView:
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
