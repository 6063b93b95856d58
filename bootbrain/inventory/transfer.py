"""Import and export of the inventory (CSV and YAML), and the demo inventory.

An import validates every row against the API's own schemas and inventory checks,
inside one transaction with a savepoint per row; every bad row is reported with its
line number, and if there is any, nothing is committed.

YAML holds any of ``networks``, ``profiles``, ``rules``, ``groups``, ``machines`` (lists of the
API's create bodies), imported in that order. CSV holds machines, one a row, with
the API's field names as the header; ``macs`` and ``tags`` are ``;``-separated (the
first MAC boots).

A CSV export is opened in spreadsheets, and its values include what a discovered
machine reported about itself (manufacturer, product, serial), so a cell that a
spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return: OWASP's CSV-injection list) is written with a ``'`` in front.
The import takes that ``'`` off again, so what the export wrote reads back exactly;
see :func:`_defuse` for the one rule both follow.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ValidationError

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.errors import (
    BootbrainError,
    ConflictError,
    FieldError,
    ImportRowsError,
    NotFoundError,
)
from bootbrain.errors import RowProblem as Problem

from . import bulk
from .catalog import add_network, add_profile, add_rule, list_networks, list_profiles, list_rules
from .groups import add_group, list_groups
from .machines import add_machine

#: Called after each row with (rows done, rows in all): the CLI's progress bar.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Row:
    kind: str  # networks | profiles | rules | machines
    line: int
    data: dict[str, Any]


SECTIONS = ("networks", "profiles", "rules", "groups", "machines")


#: How deep an import's YAML may nest (a machine body needs a handful of levels).
MAX_YAML_DEPTH = 64
#: How many YAML nodes an import may hold (every key and value is one): an exported
#: machine is a few dozen, so this admits a few hundred thousand machines.
MAX_YAML_NODES = 8_000_000


class _Bounded(yaml.composer.Composer):
    """The composer, refusing what makes a small file a large parse: aliases (a
    "billion laughs" file of a few hundred bytes names millions of nodes), nesting past
    :data:`MAX_YAML_DEPTH` (the composer recurses once per level) and more than
    :data:`MAX_YAML_NODES` nodes. Each is refused as it is met, before anything is
    built from it. The checks live here, in the one composer both loaders below use,
    so the C-parsed path refuses exactly what the pure-Python one does."""

    _depth = 0
    _nodes = 0
    #: Called with the characters parsed so far, now and then.
    on_progress: Callable[[int], None] | None = None

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            self._refuse(
                event, "aliases (*name) are not accepted in an import; write the value out"
            )
        self._nodes += 1
        if self.on_progress is not None and self._nodes % 65536 == 0:
            self.on_progress(event.start_mark.index)
        if self._nodes > MAX_YAML_NODES:
            self._refuse(event, f"more than {MAX_YAML_NODES} values; split the file")
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            self._refuse(event, f"nested more than {MAX_YAML_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    @staticmethod
    def _refuse(event: yaml.Event, problem: str) -> NoReturn:
        raise yaml.composer.ComposerError(None, None, problem, event.start_mark)  # type: ignore[arg-type]


class _BoundedLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    _Bounded,
    yaml.constructor.SafeConstructor,
    yaml.resolver.Resolver,
):
    """The pure-Python safe loader with the bounds: used where libyaml is missing."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Bounded.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CBoundedLoader(  # _Bounded first: its composer, not libyaml's, builds the nodes
        _Bounded,
        CParser,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        """libyaml scans and parses (the bulk of a parse's time, in C); the nodes are
        still composed by :class:`_Bounded`, so every bound holds as it is."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Bounded.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _Loader: type[Any] = _CBoundedLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _Loader = _BoundedLoader


class _Unusual(Exception):  # noqa: N818 - control flow, never leaves this module
    """Raised by :func:`_plain_rows` for a file it leaves to the composer."""


#: A mapping waiting for its next key (a key waiting for its value is a 1-tuple).
_NO_KEY = object()
_STR = "tag:yaml.org,2002:str"
#: The scalar tags :func:`_plain_rows` builds itself; any other is left to the composer.
_SCALARS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float"))


def _plain_rows(text: str, progress: Progress | None) -> list[Row] | None:
    """The rows of a plain file (what ``export`` writes), built straight from libyaml's
    events, with no node tree in between. Anything else — an alias, nesting or a count
    past the bounds, a tag, a merge key, a key that is not a scalar, more than one
    document, a syntax error, a file not shaped as sections of lists — gives None and
    is left to the composer (:func:`_yaml_rows`), which refuses or reads it as before:
    the bounds and every message keep their one home."""
    if _Loader is _BoundedLoader:
        return None
    loader = _Loader(text)
    resolve, constructors, node = loader.resolve, loader.yaml_constructors, yaml.ScalarNode
    stack: list[Any] = []  # open collections, each mapping followed by its pending key
    lines: dict[int, tuple[list[Any], list[int]]] = {}  # a section's list: its items' lines
    top: Any = None
    nodes = documents = 0
    try:
        while (event := loader.get_event()) is not None:
            kind = type(event)
            if kind is yaml.ScalarEvent or kind in (
                yaml.MappingStartEvent,
                yaml.SequenceStartEvent,
            ):
                nodes += 1
                if nodes > MAX_YAML_NODES:
                    raise _Unusual
                if progress is not None and nodes % 65536 == 0:
                    progress(event.start_mark.index, len(text))
                if len(stack) == 3 and type(stack[2]) is list:  # an item of a section
                    lines.setdefault(id(stack[2]), (stack[2], []))[1].append(
                        event.start_mark.line + 1
                    )
            if kind is yaml.ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(node, event.value, event.implicit)
                if tag == _STR:
                    value: Any = event.value
                elif tag in _SCALARS:
                    value = constructors[tag](loader, node(tag, event.value))
                else:
                    raise _Unusual
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if event.tag is not None and not event.implicit:
                    raise _Unusual
                if kind is yaml.MappingStartEvent:
                    stack += ({}, _NO_KEY)
                else:
                    stack.append([])
                if len(stack) > 2 * MAX_YAML_DEPTH:
                    raise _Unusual
                continue
            elif kind is yaml.MappingEndEvent:
                stack.pop()
                value = stack.pop()
            elif kind is yaml.SequenceEndEvent:
                value = stack.pop()
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _Unusual
                continue
            elif kind is yaml.AliasEvent:
                raise _Unusual
            else:
                continue
            if not stack:
                top = value
            elif type(stack[-1]) is list:
                stack[-1].append(value)
            elif stack[-1] is _NO_KEY:
                if isinstance(value, dict | list):
                    raise _Unusual
                stack[-1] = (value,)
            else:
                stack[-2][stack[-1][0]] = value
                stack[-1] = _NO_KEY
    except (yaml.YAMLError, _Unusual, KeyError, TypeError, ValueError):
        return None
    finally:
        loader.dispose()
    if nodes == 0:
        return []
    if type(top) is not dict or any(
        k not in SECTIONS or type(v) is not list for k, v in top.items()
    ):
        return None
    rows = []
    for section in SECTIONS:
        items = top.get(section, [])
        at = lines.get(id(items), ([], []))[1]
        if len(at) != len(items):
            return None
        for data, line in zip(items, at, strict=True):
            rows.append(
                Row(section, line, data if isinstance(data, dict) else {"_not_a_mapping": data})
            )
    return rows


def _yaml_rows(text: str, progress: Progress | None = None) -> Iterator[Row]:
    """The rows of a YAML import; ``progress`` hears (characters parsed, of all)."""
    plain = _plain_rows(text, progress)
    if plain is not None:
        yield from plain
        return
    loader = _Loader(text)
    if progress is not None:
        loader.on_progress = lambda done: progress(done, len(text))
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        if "maximum nesting depth" in str(e.problem):  # libyaml's own bound, met first
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", e.problem_mark
            ) from None
        raise
    finally:
        loader.dispose()
    if node is None:
        return
    if not isinstance(node, yaml.MappingNode):
        raise ImportRowsError(
            [
                Problem(
                    node.start_mark.line + 1,
                    "file",
                    "expected a mapping with networks/profiles/rules/machines",
                )
            ]
        )
    by_kind: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.value not in SECTIONS:
            raise ImportRowsError(
                [
                    Problem(
                        key.start_mark.line + 1,
                        str(key.value),
                        f"unknown section; expected one of {SECTIONS}",
                    )
                ]
            )
        by_kind[key.value] = value
    loader = yaml.SafeLoader("")
    for kind in SECTIONS:
        seq = by_kind.get(kind)
        if seq is None:
            continue
        if not isinstance(seq, yaml.SequenceNode):
            raise ImportRowsError([Problem(seq.start_mark.line + 1, kind, "expected a list")])
        for item in seq.value:
            data = loader.construct_document(item)
            yield Row(
                kind,
                item.start_mark.line + 1,
                data if isinstance(data, dict) else {"_not_a_mapping": data},
            )


CSV_FIELDS = [
    "hostname",
    "macs",
    "uuid",
    "serial",
    "board_serial",
    "manufacturer",
    "product",
    "asset_tag",
    "tags",
    "state",
    "profile",
    "network",
    "address",
    "interface",
    "notes",
]


#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _defuse(value: str) -> str:
    """The cell an export writes for ``value``: a ``'`` in front of a formula, and of a
    value that already starts with the ``'`` :func:`_restore` would take off, so that
    ``_restore(_defuse(v)) == v`` for every ``v``."""
    if value.startswith(FORMULA_STARTS) or (
        value.startswith("'") and value[1:].startswith((*FORMULA_STARTS, "'"))
    ):
        return "'" + value
    return value


def _restore(cell: str) -> str:
    """The value an exported ``cell`` holds (:func:`_defuse` undone)."""
    if cell.startswith("'") and cell[1:].startswith((*FORMULA_STARTS, "'")):
        return cell[1:]
    return cell


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or []) - set(CSV_FIELDS)
    if unknown:
        raise ImportRowsError(
            [
                Problem(
                    1,
                    ", ".join(sorted(unknown)),
                    f"unknown column; expected {', '.join(CSV_FIELDS)}",
                )
            ]
        )
    for rec in _csv_records(reader):
        line = reader.line_num
        data: dict[str, Any] = {}
        for k, v in rec.items():
            if k is None:
                data["_extra"] = v
                continue
            if v is None or v == "":
                continue
            v = _restore(v)
            if k == "macs":
                data["nics"] = [
                    {"mac": m.strip(), "boot": i == 0}
                    for i, m in enumerate(v.split(";"))
                    if m.strip()
                ]
            elif k == "tags":
                data["tags"] = [t.strip() for t in v.split(";") if t.strip()]
            else:
                data[k] = v
        yield Row("machines", line, data)


def _csv_records(reader: csv.DictReader[str]) -> Iterator[dict[str | Any, str | Any]]:
    """The reader's records; a malformed one is a problem on the line it starts on
    (the reader has counted the lines before it)."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ImportRowsError([Problem(reader.line_num + 1, "file", str(e))]) from None


def decode(data: bytes) -> str:
    """An import file's text: UTF-8 (a byte-order mark is dropped, as spreadsheets
    write one); anything else is a problem on the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ImportRowsError(
            [
                Problem(
                    line,
                    "file",
                    f"not UTF-8 (byte 0x{data[e.start]:02x} at column {column}); "
                    "save the file as UTF-8",
                )
            ]
        ) from None


_MODELS: dict[str, type[BaseModel]] = {
    "networks": schemas.NetworkIn,
    "profiles": schemas.ProfileIn,
    "rules": schemas.RuleIn,
    "groups": schemas.GroupIn,
    "machines": schemas.MachineCreate,
}


def import_text(
    db: Database, text: str, fmt: str, actor: str, progress: Progress | None = None
) -> dict[str, int]:
    """Import ``text`` (``csv`` or ``yaml``) in one transaction: every row, or nothing.

    Raises :class:`~bootbrain.errors.ImportRowsError` listing every bad row with its
    line. The reservations of the machines created are announced once, after commit.
    """
    try:
        rows = list(_csv_rows(text) if fmt == "csv" else _yaml_rows(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ImportRowsError([Problem(mark.line + 1 if mark else 1, "file", str(e))]) from None
    except csv.Error as e:
        raise ImportRowsError([Problem(1, "file", str(e))]) from None
    problems: list[Problem] = []
    counts = dict.fromkeys(SECTIONS, 0)
    created: list[int] = []
    adders: dict[str, Callable[..., Any]] = {
        "networks": lambda s, d: add_network(s, d, actor),
        "profiles": lambda s, d: add_profile(s, d, actor),
        "rules": lambda s, d: add_rule(s, d, actor),
        "groups": lambda s, d: add_group(s, d, actor),
        "machines": lambda s, d: add_machine(s, d, actor),
    }
    with db.write() as s:
        for done, row in enumerate(rows, start=1):
            if progress is not None:
                progress(done, len(rows))
            try:
                data = _MODELS[row.kind].model_validate(row.data)
            except ValidationError as e:
                for err in e.errors():
                    field = ".".join(str(p) for p in err["loc"]) or row.kind
                    problems.append(
                        Problem(row.line, field, err["msg"].removeprefix("Value error, "))
                    )
                continue
            try:
                with s.begin_nested():
                    obj = adders[row.kind](s, data)
            except (FieldError, ConflictError) as e:
                problems.append(Problem(row.line, e.field, e.message))
                continue
            except (NotFoundError, BootbrainError) as e:
                problems.append(Problem(row.line, row.kind, str(e)))
                continue
            counts[row.kind] += 1
            if row.kind == "machines":
                created.append(obj.id)
        if problems:
            raise ImportRowsError(problems)
    return {k: v for k, v in counts.items() if v}


def import_file(
    db: Database, path: Path, fmt: str, actor: str, progress: Progress | None = None
) -> dict[str, int]:
    """:func:`import_text` of a file (``-``: standard input); ``auto`` picks the format
    by the file's suffix."""
    text = decode(sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes())
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "yaml"
    return import_text(db, text, fmt, actor, progress)


def _all(
    db: Database, lister: Callable[..., tuple[list[Any], int | None]], query: Any = None
) -> list[Any]:
    out: list[Any] = []
    after = None
    while True:
        q = (query or schemas.PageQuery)(limit=1000, after=after)
        rows, after = lister(db, q)
        out.extend(rows)
        if after is None:
            return out


def export(db: Database, fmt: str) -> str:
    with db.read() as s:  # as rows, not objects: an inventory may hold 100,000 machines
        machines = [doc for _, _, doc in bulk.machine_docs(s)]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for m in machines:
            row = {k: m.get(k) for k in CSV_FIELDS}
            row["macs"] = ";".join(n["mac"] for n in m["nics"])
            row["tags"] = ";".join(m["tags"])
            w.writerow(
                {k: ("" if row.get(k) is None else _defuse(str(row[k]))) for k in CSV_FIELDS}
            )
        return buf.getvalue()
    keep = {
        "networks": set(schemas.NetworkIn.model_fields),
        "profiles": set(schemas.ProfileIn.model_fields),
        "rules": set(schemas.RuleIn.model_fields),
        "machines": set(schemas.MachineCreate.model_fields),
    }
    doc = {
        "networks": [
            schemas.NetworkOut.of(n).model_dump(include=keep["networks"])
            for n in _all(db, list_networks)
        ],
        "profiles": [
            schemas.ProfileOut.of(p, reveal=True).model_dump(
                include=keep["profiles"], exclude_none=True
            )
            for p in _all(db, list_profiles)
        ],
        "rules": [
            schemas.RuleOut.of(r).model_dump(include=keep["rules"]) for r in _all(db, list_rules)
        ],
        "machines": [_machine_doc(m) for m in machines],
    }
    groups = _group_docs(db)
    if groups:  # last, so an inventory without groups exports as it did before them
        doc["groups"] = groups
    # Profiles referenced by menus must come first on import.
    doc["profiles"].sort(key=lambda p: p["kind"] == "menu")
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The safe dumper (libyaml's emitter where there is one), never writing an alias:
    the import refuses them, and an export must import (a value that appears twice is
    written out twice)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _group_docs(db: Database) -> list[dict[str, Any]]:
    keep = set(schemas.GroupIn.model_fields)
    return [
        schemas.GroupOut.of(g).model_dump(include=keep, exclude_none=True)
        for g in _all(db, list_groups)
    ]


def _machine_doc(m: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in m.items() if v is not None}
    d["nics"] = [{k: v for k, v in n.items() if v is not None} for n in m["nics"]]
    return d


DEMO = """
networks:
  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1, dns: [10.20.0.2, 10.20.0.3],
     domain: dc1.example.net, vlan_id: 120}
profiles:
  - name: local-disk
    kind: local
    description: Boot the installed OS from the first disk
  - name: debian-installer
    kind: linux
    description: Debian 12 netinstall with a static network, then boot from disk
    kernel: "{{ assets }}/debian-12/linux"
    initrds: ["{{ assets }}/debian-12/initrd.gz"]
    cmdline: "${IPXE_BOOT_LINUX_IP_CONFIG} auto=true priority=critical
      url={{ base_url }}/assets/preseed.cfg netcfg/hostname={{ hostname }}"
    complete_state: deployed
  - name: rescue
    kind: ipxe
    description: A rescue shell kept in RAM
    script: |
      #!ipxe
      echo Rescue boot for {{ machine.hostname or 'an unnamed machine' }}
      kernel {{ assets }}/rescue/vmlinuz ${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0
      initrd {{ assets }}/rescue/initrd.img
      boot
  - name: netboot-xyz
    kind: chain
    chain_url: https://boot.netboot.xyz/ipxe/netboot.xyz.lkrn
  - name: choose
    kind: menu
    description: Operator's choice, defaulting to disk after 10 seconds
    menu:
      default: disk
      timeout: 10
      items:
        - {key: disk, label: Boot from local disk, profile: local-disk}
        - {key: install, label: Install Debian 12, profile: debian-installer}
        - {key: rescue, label: Rescue shell, profile: rescue}
rules:
  - {name: efi-servers-get-menu, platform: efi, tags: [lab], profile: choose}
machines:
  - hostname: node-a1
    serial: DEMO-0001
    manufacturer: Dell Inc.
    product: PowerEdge R650
    nics: [{mac: "52:54:00:00:a1:01", boot: true}, {mac: "52:54:00:00:a1:02"}]
    network: rack1
    address: 10.20.0.11
    state: ready
    profile: debian-installer
    tags: [rack1, lab]
  - hostname: node-a2
    serial: DEMO-0002
    manufacturer: Dell Inc.
    product: PowerEdge R650
    nics: [{mac: "52:54:00:00:a2:01", boot: true}]
    network: rack1
    address: 10.20.0.12
    state: deployed
    profile: local-disk
    tags: [rack1]
  - hostname: node-a3
    uuid: 4c4c4544-0042-3610-8052-b4c04f4e3233
    nics: [{mac: "52:54:00:00:a3:01", boot: true}]
    tags: [lab]
    state: ready
"""


def load_demo(db: Database, actor: str) -> dict[str, int]:
    return import_text(db, DEMO, "yaml", actor)
