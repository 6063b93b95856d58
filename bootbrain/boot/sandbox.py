"""The safe template engine, and the checks that keep a rendered script exactly the
script its author wrote (BRIEF "Injection").

Every template — the shipped ones in ``bootbrain/templates/ipxe/`` and the operator's
(a profile's kernel and initrd URLs, cmdline, chain URL and ``ipxe`` script) — is
rendered here, by Jinja2's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``
and autoescape off. How a script is kept to exactly the intended commands:

* Values the machine reports never reach script text: the machine-reported strings
  template variables expose are :class:`MachineText`, which compares but refuses to be
  written out (:mod:`bootbrain.boot.variables`).
* Each ``{{ value }}`` first renders as an opaque placeholder word, and the real text
  is substituted afterwards. The text with placeholders (the shape the template's
  author wrote) and the final text are both tokenized with iPXE's rules
  (:mod:`bootbrain.boot.script`) and must give the same lines, labels, commands and
  words, and no new ``${…}``. So a value with a space, newline, ``#``, ``||``,
  ``&&``, ``;``, trailing ``\\`` or leading ``:`` cannot change a script; the render
  is refused instead. Values with control characters are refused outright.
* Each operator value is then checked for the shape its field needs (a URL is one
  word, a cmdline one line of one command, a script passes
  :func:`~bootbrain.boot.script.check_script` with no ``bb_`` labels of its own), and
  each finished shipped script is checked again: ``#!ipxe`` first, no control
  characters, unique labels, every ``goto`` target present, no raw expansion of SMBIOS
  strings. A failure raises :class:`~bootbrain.errors.RenderError` (shipped) or
  :class:`~bootbrain.errors.TemplateProblem` (the operator's); nothing is returned.

The checks are cached where their answer depends only on text that recurs in every
render of a template (a skeleton, a kernel URL), so a boot storm pays for them once
per profile.

Every render is bounded (:class:`~bootbrain.boot.types.RenderLimits`, for all the
templates of one script together, see :func:`bounded`): each loop iteration, call and
intercepted operator (``+ * ** // %``) takes a step, the thread's CPU time is checked
every few steps, the output is counted as it is produced, and an operator, call or
filter that would make a value larger than ``max_bytes`` (``'x' * 10**9``,
``10 ** 10 ** 9``, ``center(10**9)``, ``'%999999999d' % 1``) is refused before it
runs. The render then fails with :class:`~bootbrain.errors.RenderLimitError`; no
signal or thread is involved, so this works in any worker. (Text a macro or
``{% set %}`` block captures is measured when it is complete.)
"""

from __future__ import annotations

import contextvars
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from functools import lru_cache
from typing import Any, Final

import jinja2
from jinja2 import StrictUndefined, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from bootbrain.errors import RenderError, RenderLimitError, ScriptError, TemplateProblem
from bootbrain.vocabulary import CONTROL_BUT_TAB_LF_RE

from . import script as ipxe
from .types import RenderLimits

__all__ = [
    "RESERVED_PREFIX",
    "TEMPLATE_FIELDS",
    "URL_FIELDS",
    "MachineText",
    "ScriptText",
    "base_field",
    "bounded",
    "compile_source",
    "control_character",
    "render_operator",
    "render_shipped",
    "render_text",
]


#: Labels and settings the brain's scripts use; operators' scripts may not define them.
RESERVED_PREFIX: Final = "bb_"

#: Operator fields that are Jinja templates.
TEMPLATE_FIELDS: Final = ("kernel", "initrd", "cmdline", "script", "chain_url")

URL_FIELDS: Final = ("kernel", "initrd", "chain_url")


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


# --- the render budget ------------------------------------------------------------------


class _LimitExceededError(Exception):
    """Raised inside a render; becomes :class:`RenderLimitError` naming the field."""


#: Steps between two looks at the thread's CPU clock.
_CLOCK_EVERY: Final = 64

#: Bits an integer a template computes may have (``**`` and ``*`` are refused beyond).
MAX_INT_BITS: Final = 4096


class _Budget:
    __slots__ = ("deadline", "limits", "steps", "until_clock")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.steps = limits.steps
        self.until_clock = _CLOCK_EVERY
        #: Set at the first look at the clock: a render of fewer steps never reads it.
        self.deadline: float | None = None

    def tick(self) -> None:
        self.steps -= 1
        self.until_clock -= 1
        if self.until_clock <= 0:
            self.until_clock = _CLOCK_EVERY
            if self.steps <= 0:
                raise _LimitExceededError(
                    f"the render took more than {self.limits.steps} steps "
                    "(loop iterations, calls, operators)"
                )
            now = time.thread_time()
            if self.deadline is None:
                self.deadline = now + self.limits.seconds
            elif now > self.deadline:
                raise _LimitExceededError(
                    f"the render took more than {self.limits.seconds:g} s of CPU time"
                )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "bootbrain_render_budget", default=None
)


class bounded:  # noqa: N801 - used as a function: ``with bounded(limits):``
    """Every render inside shares one budget of ``limits`` (a whole script's
    templates); a render outside any gets its own, of the default limits."""

    __slots__ = ("_limits", "_token")

    def __init__(self, limits: RenderLimits) -> None:
        self._limits = limits

    def __enter__(self) -> None:
        self._token = _BUDGET.set(_Budget(self._limits))

    def __exit__(self, *exc: object) -> None:
        _BUDGET.reset(self._token)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _max_bytes() -> int:
    budget = _BUDGET.get()
    return (budget.limits if budget is not None else RenderLimits()).max_bytes


def _too_large(what: str) -> _LimitExceededError:
    return _LimitExceededError(f"{what} would be larger than {_max_bytes()} characters")


def _size(value: Any, limit: int) -> int:
    """Characters of ``value`` and of what it holds (a list of one long string repeated
    is as large as the text it writes out), counting up to just past ``limit``."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple | dict | set | frozenset):
        total = len(value)
        for item in value.items() if isinstance(value, dict) else value:
            if total > limit:
                break
            total += _size(item, limit - total)
        return total
    return 0


def _check_size(value: Any) -> Any:
    limit = _max_bytes()
    if _size(value, limit) > limit:
        raise _too_large("a value")
    return value


_PERCENT_SPEC_RE: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]*)(?:\.(\*|[0-9]*))?")
_BRACE_SPEC_RE: Final = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _check_format(fmt: str, percent: bool) -> None:
    """A format string's widths and precisions (``%9999999d``, ``{:9999999}``); a
    width taken from the arguments (``%*d``, ``{:{w}}``) is refused."""
    limit = _max_bytes()
    if percent:
        numbers = [n for m in _PERCENT_SPEC_RE.finditer(fmt) for n in m.groups() if n]
    else:
        if re.search(r"\{[^{}]*:[^{}]*\{", fmt):
            raise _LimitExceededError("a format width taken from the arguments is not allowed")
        numbers = [n for m in _BRACE_SPEC_RE.finditer(fmt) for n in re.findall("[0-9]+", m[1])]
    if "*" in numbers:
        raise _LimitExceededError("a format width taken from the arguments is not allowed")
    if any(len(n) > 12 or int(n) > limit for n in numbers):
        raise _too_large("a formatted value")


def _check_arguments(args: Iterable[Any]) -> None:
    """No argument of a str method or filter asks for more than a value may hold (a
    width, a count)."""
    limit = _max_bytes()
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > limit:
            raise _too_large(f"a value made with an argument of {min(abs(arg), 10**12)}")


def _sized(arg: Any) -> int:
    return len(arg) if isinstance(arg, Sized) else 0


def _estimate(name: str, text: Any, args: Sequence[Any]) -> int:
    """How large the result of the str method or filter ``name`` on ``text`` can be,
    where that is a product of the sizes of its arguments (each bounded already)."""
    if name == "join":
        if isinstance(text, str):
            items, sep = (args[0] if args else ()), text
        else:
            items, sep = text, (args[0] if args else "")
        if isinstance(items, list | tuple):
            return len(items) * _sized(sep) + _size(items, _max_bytes())
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            count = text.count(old) if old else len(text) + 1
            return len(text) + count * len(new)
    return 0


def _checked_str_method(
    method: Any, args: Sequence[Any], kwargs: Mapping[str, Any], run: Callable[[], Any]
) -> Any:
    name = method.__name__
    if name == "join" and args and not isinstance(args[0], list | tuple):
        items = list(args[0])  # measured before the join, not after
        args = (items, *args[1:])
        return _checked_str_method(method, args, kwargs, lambda: method(items, *args[1:]))
    _check_arguments(args)
    _check_arguments(kwargs.values())
    if _estimate(name, method.__self__, args) > _max_bytes():
        raise _too_large(f"the result of {name}")
    return _check_size(run())


def _counted(value: Iterable[Any]) -> Iterator[Any]:
    """What each ``{% for %}`` iterates over: a step per item."""
    budget = _BUDGET.get()
    for item in value:
        if budget is not None:
            budget.tick()
        yield item


def _binop_size(op: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before computing it."""
    limit = _max_bytes()
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "**" and ints and right > 0 and abs(left) > 1:
        if right > MAX_INT_BITS or right * math.log2(abs(left)) > MAX_INT_BITS:
            raise _LimitExceededError(f"a power would be larger than {MAX_INT_BITS} bits")
    elif op == "*":
        for seq, n in ((left, right), (right, left)):
            repeated = isinstance(seq, str | list | tuple) and isinstance(n, int) and n > 0
            if repeated and _size(seq, limit) * n > limit:
                raise _too_large("a repeated value")
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _LimitExceededError(f"a product would be larger than {MAX_INT_BITS} bits")
    elif op == "+":
        sequences = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        if sequences and _size(left, limit) + _size(right, limit) > limit:
            raise _too_large("a joined value")
    elif op == "%" and isinstance(left, str):
        _check_format(left, percent=True)


class _Bound(NodeTransformer):
    """Each ``{% for %}`` iterates through :func:`_counted`; each ``~`` result is
    measured (both as filters this environment always has)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - Jinja's visitor names
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "bb_counted", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Filter(node, "bb_sized", [], [], None, None, lineno=node.lineno)


class _CheckedNamespace(Namespace):
    """``namespace()`` whose attributes are measured when set (``ns.x = ns.x ~ ns.x``
    in a loop doubles a value each step)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _check_size(value)
        super().__setitem__(name, value)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "//", "%"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        bounded_tree: nodes.Template = _Bound().visit(tree)
        return bounded_tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _binop_size(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map``: Jinja wraps them when they are looked up."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, percent=False)
            return str(_check_size(wrapped(*args, **kwargs)))

        return checked

    def call(
        __self,  # noqa: N805 - Jinja's signature: keyword arguments may be named "self"
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _tick()
        if isinstance(getattr(__obj, "__self__", None), str):
            return _checked_str_method(
                __obj,
                args,
                kwargs,
                lambda: ImmutableSandboxedEnvironment.call(
                    __self, __context, __obj, *args, **kwargs
                ),
            )
        return _check_size(
            ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        )


def _checked_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    pass_arg = getattr(func, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if name == "join" and len(args) > skip and not isinstance(args[skip], list | tuple):
            args = (*args[:skip], list(args[skip]), *args[skip + 1 :])
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        if name == "format":
            if isinstance(value, str):
                _check_format(value, percent=True)
        else:
            _check_arguments(rest)
            _check_arguments(kwargs.values())
            if _estimate(name, value, rest) > _max_bytes():
                raise _too_large(f"the result of |{name}")
        return _check_size(func(*args, **kwargs))

    if pass_arg is not None:
        checked.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return checked


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
    if CONTROL_BUT_TAB_LF_RE.search(text):
        raise _UnsafeValueError("a value contains control characters")
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise _UnsafeValueError("a value is not valid Unicode")
    capture = _CAPTURE.get()
    if capture is None or not text:
        return text
    capture.append(text)
    return f"\ue000{len(capture) - 1}\ue001"


def _environment(loader: jinja2.BaseLoader | None, operator: bool) -> ImmutableSandboxedEnvironment:
    kind = _Environment if operator else ImmutableSandboxedEnvironment
    env = kind(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=False,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    if not operator:
        return env
    env.filters = {name: _checked_filter(name, f) for name, f in env.filters.items()}
    env.filters["bb_counted"] = _counted
    env.filters["bb_sized"] = _check_size
    env.globals["namespace"] = _CheckedNamespace
    env.globals.pop("lipsum", None)  # n paragraphs of filler: nothing a boot needs
    return env


_OPERATOR_ENV: Final = _environment(None, operator=True)

#: The brain's own templates: sandboxed too, without the operator's step counting.
_SHIPPED_ENV: Final = _environment(jinja2.PackageLoader("bootbrain", "templates/ipxe"), False)


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
    template: jinja2.Template, variables: Mapping[str, Any], shipped: bool = False
) -> tuple[str, list[str], str]:
    """(skeleton, values, final) for one render, within the render budget. A shipped
    template's own loops are over the brain's lists; only its size is measured."""
    capture: list[str] = []
    token = _CAPTURE.set(capture)
    try:
        skeleton = template.render(variables) if shipped else _generate(template, variables)
    finally:
        _CAPTURE.reset(token)
    final = _substitute(skeleton, capture)
    if len(final) > _max_bytes():
        raise _LimitExceededError(f"the rendered text is longer than {_max_bytes()} characters")
    return skeleton, capture, final


def _generate(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    """``template.render``, its output measured as it is made (a loop of text stops at
    the limit, not after building all of it)."""
    if _BUDGET.get() is not None:
        return _generate_bounded(template, variables)
    with bounded(RenderLimits()):
        return _generate_bounded(template, variables)


def _generate_bounded(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    limit = _max_bytes()
    size = 0
    parts = []
    for part in template.generate(variables):
        size += len(part)
        if size > limit:
            raise _LimitExceededError(f"the rendered text is longer than {limit} characters")
        parts.append(part)
    return "".join(parts)


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


def compile_source(source: str, field: str) -> jinja2.Template:
    try:
        return _compile_cached(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateProblem(field, e.lineno, e.message or "syntax error") from None


def _template_failure(field: str, e: Exception) -> TemplateProblem:
    """Any failure inside an operator's template is theirs to fix: say where."""
    return TemplateProblem(field, _template_line(e, "<template>"), str(e) or type(e).__name__)


def control_character(line: str) -> str | None:
    """The first control character in ``line`` (tab allowed), named for an operator."""
    m = CONTROL_BUT_TAB_LF_RE.search(line)
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


def render_operator(field: str, source: str, variables: Mapping[str, Any]) -> str:
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
    template = compile_source(source, field)
    try:
        skeleton, values, final = _render_captured(template, variables)
    except TemplateProblem:
        raise
    except _LimitExceededError as e:
        raise RenderLimitError(field, _template_line(e, "<template>"), str(e)) from None
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
    template = compile_source(source, field)
    try:
        return _generate(template, variables)
    except TemplateProblem:
        raise
    except _LimitExceededError as e:
        raise RenderLimitError(field, _template_line(e, "<template>"), str(e)) from None
    except Exception as e:
        raise _template_failure(field, e) from None


_FIELD_ALIASES: Final = {"initrds": "initrd", "label": "menu_label", "key": "menu_key"}


def base_field(field: str) -> str:
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
    base = base_field(field)
    if base in URL_FIELDS:
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
    except ScriptError as e:
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


def render_shipped(name: str, variables: Mapping[str, Any]) -> str:
    template = _shipped_template(name)
    try:
        skeleton, values, final = _render_captured(template, variables, shipped=True)
    except TemplateProblem:
        raise
    except _LimitExceededError as e:  # the operator's values, put together, are too much
        raise RenderLimitError("script", None, str(e)) from None
    except Exception as e:
        raise RenderError(f"{name}: {e}") from e
    why = _same_structure(skeleton, values, final)
    if why:
        raise RenderError(f"{name}: {why}")
    try:
        if not _skeleton_decides(skeleton):
            ipxe.validate_script(final)
    except ScriptError as e:
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


def check_template_text(value: str, limit: int) -> str:
    """A stored template's text: at most ``limit`` characters, no control character on
    any line; raises ValueError."""
    if len(value) > limit:
        raise ValueError(f"longer than {limit} characters")
    for number, line in enumerate(value.split("\n"), start=1):
        what = control_character(line)
        if what:
            raise ValueError(f"line {number}: control character {what}")
    return value
