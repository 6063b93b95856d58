"""A small iPXE script tokenizer and checker that follows iPXE's own rules.

What iPXE does with a script (``src/image/script.c`` and ``src/core/exec.c``; checked
against the Debian iPXE 1.0.0+git-20190125 this project targets):

* lines end at ``\\n``; one trailing ``\\r`` is dropped; a line ending in ``\\`` is
  joined to the next one with nothing in between (a continuation pending at the end
  of the file is dropped);
* a line is a C string, so anything after a NUL byte is ignored;
* after leading whitespace, ``:name`` makes a label; whatever follows the label on the
  same line is *executed* as a command (so ``:x echo hi`` is not just a label);
* the rest is split into words on whitespace (space, ``\\t``, ``\\n``, ``\\r``, ``\\v``,
  ``\\f``; nothing else, so every other byte is an ordinary character);
* a word starting with ``#`` starts a comment that runs to the end of the line (so
  ``a#b`` is a word, ``a #b || c`` runs only ``a``);
* the words ``||``, ``&&`` and ``;`` separate commands on one line;
* ``${name}`` in a word is expanded when the command runs, after splitting (this iPXE
  expands per word: a value with spaces stays one argument), and expansion repeats
  over the result, so a value containing ``${…}`` is itself expanded on the client.

:func:`tokenize` never raises; :func:`check_script` raises :class:`ScriptError` for
anything iPXE would read differently from how it looks, or that depends on the iPXE
version, or that expands a machine-reported SMBIOS string on the client.

How one line reads, and what the checks find on it alone, depend on its text only;
both are cached (lines up to :data:`CACHED_LINE_LENGTH` characters, 4096 of them),
since every script the brain renders repeats the lines of its templates. What
depends on the other lines (repeated labels, ``goto`` targets, line numbers) is
worked out afresh for each script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import count, repeat
from typing import Final, NamedTuple

from bootbrain.errors import ScriptError
from bootbrain.vocabulary import CONTROL_BUT_TAB_LF_RE

WHITESPACE = " \t\n\r\v\f"
SEPARATORS = ("||", "&&", ";")
MAGIC = "#!ipxe"

#: A ``${…}`` reference this project writes or accepts: ``${name}``,
#: ``${scope/name}``, ``${name:type}``, ``${netX/mac:hexhyp}``.
REFERENCE_RE = re.compile(r"\$\{([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)(?::([a-z0-9]+))?\}")

#: iPXE settings whose value is a string the machine's firmware reports (SMBIOS).
#: Expanded raw they can carry spaces, ``#`` or ``${…}`` into a command; only the
#: hex types are inert.
MACHINE_STRING_SETTINGS = frozenset(
    {"serial", "board-serial", "manufacturer", "product", "asset", "board-product"}
)
INERT_TYPES = frozenset({"hex", "hexraw", "hexhyp"})


#: What a line does: its label and its commands as (words, separator) pairs.
LineShape = tuple[str | None, tuple[tuple[tuple[str, ...], str | None], ...]]


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    #: The separator that ends this command: "||", "&&", ";" or None (end of line).
    separator: str | None = None


@dataclass(frozen=True)
class Line:
    #: 1-based number of the physical line where this logical line starts.
    number: int
    #: The logical line as iPXE sees it (continuations joined, CR and NUL tail dropped).
    text: str
    label: str | None
    commands: tuple[Command, ...]
    comment: str | None = None
    #: Physical lines joined onto this one by trailing backslashes.
    joined: int = 0
    #: The label had whitespace before its colon.
    indented_label: bool = False
    #: Bytes after a NUL were dropped.
    truncated: bool = False

    @property
    def shape(self) -> LineShape:
        """Label and commands: what the line *does*, for comparing two scripts."""
        return self.label, tuple((c.words, c.separator) for c in self.commands)


@dataclass(frozen=True)
class Script:
    lines: tuple[Line, ...]
    #: A continuation was still open at the end of the text (iPXE drops that line).
    dangling_continuation: bool = False

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(line.label for line in self.lines if line.label is not None)

    @property
    def commands(self) -> tuple[Command, ...]:
        return tuple(c for line in self.lines for c in line.commands if c.words)

    @property
    def shape(self) -> tuple[LineShape, ...]:
        """Every line that has a label or a command, in order."""
        return tuple(line.shape for line in self.lines if line.label is not None or line.commands)


def _has_continuation(text: str) -> bool:
    """Whether some line of ``text`` ends in a backslash (before one optional CR)."""
    return "\\" in text and (
        "\\\n" in text or "\\\r\n" in text or text.endswith("\\") or text.endswith("\\\r")
    )


def logical_lines(text: str) -> tuple[list[tuple[int, str, int]], bool]:
    """(first line number, logical line, lines joined) for each line iPXE reads, and
    whether a continuation was still open at the end (iPXE drops that line).

    What :func:`_physical_lines` gives, made faster for the usual text without
    continuations: then each logical line is one physical line, without its CR, and
    a final newline does not start another line.
    """
    if not _has_continuation(text):
        fragments = text.split("\n")
        if len(fragments) > 1 and not fragments[-1]:
            fragments.pop()
        if "\r" in text:
            fragments = [f[:-1] if f.endswith("\r") else f for f in fragments]
        return list(zip(count(1), fragments, repeat(0))), False
    lines: list[tuple[int, str, int]] = []
    for number, raw, joined, dangling in _physical_lines(text):
        if dangling:
            return lines, True
        lines.append((number, raw, joined))
    return lines, False


def _physical_lines(text: str) -> Iterator[tuple[int, str, int, bool]]:
    """(first line number, logical line, lines joined, dangling) following process_script."""
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


_WORD_RE = re.compile(r"[^ \t\n\r\v\f]+")


def _words(command: str) -> list[str]:
    # iPXE's isspace() is exactly these six characters; str.split() would also split
    # on \x1c-\x1f, \x85 and Unicode spaces, which iPXE keeps inside words. So
    # str.split() (fast) only for ASCII text without \x1c-\x1f, else the maximal runs
    # of other characters (what splitting on whitespace runs leaves).
    if command.isascii() and not (
        "\x1c" in command or "\x1d" in command or "\x1e" in command or "\x1f" in command
    ):
        return command.split()
    return _WORD_RE.findall(command)


class LineParts(NamedTuple):
    """A logical line's reading, which depends on its text only (see :func:`parse_line`)."""

    text: str
    label: str | None
    commands: tuple[Command, ...]
    comment: str | None
    indented_label: bool
    truncated: bool


def split_line(number: int, raw: str, joined: int = 0) -> Line:
    """One logical line (continuations already joined, trailing CR dropped)."""
    parts = parse_line(raw)
    return Line(
        number=number,
        text=parts.text,
        label=parts.label,
        commands=parts.commands,
        comment=parts.comment,
        joined=joined,
        indented_label=parts.indented_label,
        truncated=parts.truncated,
    )


#: Lines up to this long are remembered (bounds the caches' memory, 4096 lines each).
CACHED_LINE_LENGTH: Final = 4096


def parse_line(raw: str) -> LineParts:
    """How iPXE reads one logical line: :func:`split_line` without the line's place.

    A pure function of ``raw`` whose results are immutable, so it is cached: the lines
    of the shipped templates recur in every script the brain renders.
    """
    if len(raw) <= CACHED_LINE_LENGTH:
        return _parse_line_cached(raw)
    return _parse_line(raw)


def _parse_line(raw: str) -> LineParts:
    truncated = "\x00" in raw
    line = raw.split("\x00", 1)[0]
    rest = line.lstrip(WHITESPACE)
    label: str | None = None
    indented = False
    if rest.startswith(":"):
        indented = rest != line
        body = rest[1:]
        end = 0
        while end < len(body) and body[end] not in WHITESPACE:
            end += 1
        label = body[:end]
        rest = body[end + 1 :] if end < len(body) else ""
    else:
        rest = line
    words = _words(rest)
    if not ("#" in rest or "|" in rest or "&" in rest or ";" in rest):
        # No word can start a comment or be a separator: one command of every word
        # (what the loop below makes of such a line).
        single = (Command(tuple(words), None),) if words else ()
        return LineParts(line, label, single, None, indented, truncated)
    commands: list[Command] = []
    comment: str | None = None
    current: list[str] = []
    for i, word in enumerate(words):
        if word.startswith("#"):
            comment = " ".join(words[i:])
            break
        if word in SEPARATORS:
            commands.append(Command(tuple(current), word))
            current = []
        else:
            current.append(word)
    if current or commands:
        commands.append(Command(tuple(current), None))
    return LineParts(line, label, tuple(commands), comment, indented, truncated)


_parse_line_cached = lru_cache(maxsize=4096)(_parse_line)


def tokenize(text: str) -> Script:
    """Lines, labels and commands as iPXE would read ``text``. Never raises."""
    lines, dangling = logical_lines(text)
    return Script(
        tuple(split_line(number, raw, joined) for number, raw, joined in lines),
        dangling_continuation=dangling,
    )


def references(word: str) -> tuple[str, ...]:
    """The ``${…}`` references in a word, as written (``netX/mac:hexhyp``)."""
    return tuple(m.group(0)[2:-1] for m in REFERENCE_RE.finditer(word))


def reference_problems(word: str) -> list[str]:
    """Why the ``${…}`` uses in ``word`` are not ones this project allows."""
    if "${" not in word:  # nothing to count and no reference to match
        return []
    problems: list[str] = []
    if word.count("${") != len(REFERENCE_RE.findall(word)):
        problems.append(
            f"{_show(word)}: every '${{' must start a plain reference like ${{name}} "
            "or ${scope/name:type} (nested or unterminated references are refused)"
        )
    for m in REFERENCE_RE.finditer(word):
        name = m.group(1).rsplit("/", 1)[-1]
        scope = m.group(1).split("/", 1)[0] if "/" in m.group(1) else ""
        setting_type = m.group(2)
        machine_string = name in MACHINE_STRING_SETTINGS or scope == "smbios"
        if machine_string and setting_type not in INERT_TYPES:
            problems.append(
                f"{m.group(0)} expands a string the machine reports; iPXE would run "
                "whatever it contains (use :hexraw)"
            )
    return problems


def _show(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return ascii(shown)


_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])


def check_script(
    text: str, *, require_magic: bool = True, known_labels: Iterable[str] = ()
) -> Script:
    """Tokenize ``text`` and refuse anything ambiguous. Returns the tokenized script.

    Refused: a missing ``#!ipxe`` first line; NUL, CR and other control characters
    (escape sequences reach the console); backslash continuations; labels that are
    indented, empty, repeated or followed by a command on the same line; a ``goto``
    to a label the script does not define (or ``known_labels`` names: labels of the
    script a fragment will be part of); and ``${…}`` uses outside
    :func:`reference_problems`' rules.
    """
    lines, dangling = _check(text, require_magic, known_labels)
    return Script(
        tuple(split_line(number, raw, joined) for number, raw, joined in lines),
        dangling_continuation=dangling,
    )


def validate_script(
    text: str, *, require_magic: bool = True, known_labels: Iterable[str] = ()
) -> None:
    """:func:`check_script` without building the tokenized script: raises the same
    :class:`ScriptError` for the same texts, and returns None for the others."""
    _check(text, require_magic, known_labels)


class _LineReport(NamedTuple):
    """What :func:`check_script` finds on one line, apart from its place in the script."""

    label: str | None
    #: Problems before the label's uniqueness (continuation, label form), then after
    #: it (references), without the "line N: " prefix.
    before: tuple[str, ...]
    after: tuple[str, ...]
    #: Targets of the line's ``goto <label>`` commands (no ``${…}``), in order.
    gotos: tuple[str, ...]


def _report_line(raw: str, joined: int) -> _LineReport:
    line = parse_line(raw)
    before: list[str] = []
    if joined:
        before.append("backslash continuation")
    if line.label is not None:
        if line.indented_label:
            before.append("label with whitespace before its colon")
        if not line.label:
            before.append("empty label")
        if line.commands:
            before.append(f"command after label :{line.label} (put it on its own line)")
    after: list[str] = []
    gotos: list[str] = []
    # Words are parts of the line's text, so without "${" there none has a reference
    # problem (each needs a "${").
    has_references = "${" in line.text
    for command in line.commands:
        words = command.words
        if has_references:
            for word in words:
                after.extend(reference_problems(word))
        if len(words) == 2 and words[0] == "goto" and "${" not in words[1]:
            gotos.append(words[1])
    return _LineReport(line.label, tuple(before), tuple(after), tuple(gotos))


_report_line_cached = lru_cache(maxsize=4096)(_report_line)


def _check(
    text: str, require_magic: bool, known_labels: Iterable[str]
) -> tuple[list[tuple[int, str, int]], bool]:
    """The checks of :func:`check_script`; (number, logical line, joined) and dangling.

    Each line's own findings (:func:`_report_line`, a pure function of its text and
    continuation count) are cached and put together here in the order the checks
    were always made: global ones, then line by line (continuation, label form,
    repeated label, references), then the ``goto`` targets line by line.
    """
    problems: list[str] = []
    if require_magic and not text.startswith(MAGIC + "\n"):
        problems.append("a script must start with '#!ipxe' and a newline")
    data: bytes | None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append("text that is not valid Unicode (a lone surrogate)")
        data = None
    # In UTF-8 the control characters are exactly the bytes _CONTROL_BYTES, so when
    # deleting those removes nothing, the pattern has nothing to find (and that is quick).
    if data is None or len(data.translate(None, _CONTROL_BYTES)) != len(data):
        control = CONTROL_BUT_TAB_LF_RE.search(text)
        if control:
            number = text.count("\n", 0, control.start()) + 1
            problems.append(f"line {number}: control character {control.group(0)!r}")
    lines, dangling = logical_lines(text)
    if dangling:
        problems.append("the script ends inside a backslash continuation")
    seen: dict[str, int] = {}
    gotos: list[tuple[int, str]] = []
    for number, raw, joined in lines:
        label, before, after, targets = (
            _report_line_cached(raw, joined)
            if len(raw) <= CACHED_LINE_LENGTH
            else _report_line(raw, joined)
        )
        if before:
            problems.extend(f"line {number}: {p}" for p in before)
        if label is not None:
            if label in seen:
                problems.append(
                    f"line {number}: label :{label} already defined on line {seen[label]}"
                )
            else:
                seen[label] = number
        if after:
            problems.extend(f"line {number}: {p}" for p in after)
        if targets:
            gotos.extend((number, target) for target in targets)
    labels = set(seen).union(known_labels)
    for number, target in gotos:
        if target not in labels:
            problems.append(f"line {number}: goto {target}: no such label")
    if problems:
        raise ScriptError(problems)
    return lines, dangling
