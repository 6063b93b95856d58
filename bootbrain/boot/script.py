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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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


class ScriptError(ValueError):
    """A script that iPXE would not read as intended."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


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


_WHITESPACE_RUN = re.compile(r"[ \t\n\r\v\f]+")


def _words(command: str) -> list[str]:
    # iPXE's isspace() is exactly these six characters; str.split() would also split
    # on \x1c-\x1f, \x85 and Unicode spaces, which iPXE keeps inside words.
    return [w for w in _WHITESPACE_RUN.split(command) if w]


def split_line(number: int, raw: str, joined: int = 0) -> Line:
    """One logical line (continuations already joined, trailing CR dropped)."""
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
    commands: list[Command] = []
    comment: str | None = None
    current: list[str] = []
    words = _words(rest)
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


def tokenize(text: str) -> Script:
    """Lines, labels and commands as iPXE would read ``text``. Never raises."""
    lines: list[Line] = []
    dangling = False
    for number, raw, joined, is_dangling in _physical_lines(text):
        if is_dangling:
            dangling = True
            break
        lines.append(split_line(number, raw, joined))
    return Script(tuple(lines), dangling_continuation=dangling)


def references(word: str) -> tuple[str, ...]:
    """The ``${…}`` references in a word, as written (``netX/mac:hexhyp``)."""
    return tuple(m.group(0)[2:-1] for m in REFERENCE_RE.finditer(word))


def reference_problems(word: str) -> list[str]:
    """Why the ``${…}`` uses in ``word`` are not ones this project allows."""
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


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


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
    problems: list[str] = []
    if require_magic and not text.startswith(MAGIC + "\n"):
        problems.append("a script must start with '#!ipxe' and a newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append("text that is not valid Unicode (a lone surrogate)")
    control = _CONTROL.search(text)
    if control:
        number = text.count("\n", 0, control.start()) + 1
        problems.append(f"line {number}: control character {control.group(0)!r}")
    script = tokenize(text)
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
                problems.extend(f"{where}: {p}" for p in reference_problems(word))
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
