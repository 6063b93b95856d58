"""Ignition configs for Flatcar Container Linux and Fedora CoreOS: a profile's
``ignition`` template, checked when the profile is saved and rendered for each boot
as ``ignition.json`` (served behind the per-boot token, like user-data).

The template is rendered in the same sandbox, with the same variables, as user-data
(:func:`bootbrain.boot.documents.document_variables`). What it renders must be an
Ignition config of spec 3.x:

* JSON (an object; a key repeated in one object is refused, because which value
  Ignition would keep is not what the author meant either way);
* ``ignition.version`` one of :data:`SPEC_VERSIONS`;
* the structure of :data:`SCHEMA`, a JSON Schema (checked with the ``jsonschema``
  library) written here for the parts bootbrain checks: the top-level sections, the
  ``ignition`` section, files, directories, links, systemd units and drop-ins, users,
  groups and kernel arguments, each with its field names and types and absolute
  paths. Disks, RAID, filesystems and LUKS volumes are checked as lists of objects
  naming their device. Which fields exist in which minor version is not checked here:
  Ignition's own validator (``ignition-validate``, run by the tests) is the judge of
  that.

The config is served re-serialised from the parsed JSON, so what leaves bootbrain is
exactly what was checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import jsonschema

from bootbrain.errors import DocumentError, TemplateProblem

from .sandbox import check_template_text, render_text

IGNITION_DOCUMENT: Final = "ignition.json"
IGNITION_MIMETYPE: Final = "application/vnd.coreos.ignition+json"
#: Most characters of an Ignition template (inline file contents make them larger
#: than user-data).
MAX_IGNITION: Final = 262144
#: Spec versions accepted: 3.0.0 to 3.5.0, and the experimental one of each. Debian's
#: Ignition 2.14 validates up to 3.3.0 (3.4.0 only as ``3.4.0-experimental``);
#: Flatcar and Fedora CoreOS read 3.0.0 to 3.4.0 or later.
SPEC_VERSION_PATTERN: Final = r"^3\.[0-5]\.0(-experimental)?$"


class MissingIgnitionError(LookupError):
    """This boot's profile has no Ignition config (``ignition.json`` is answered 404)."""


def _obj(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


def _list(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": dict(item)}


_STR: Final = {"type": "string"}
_STR_OR_NULL: Final = {"type": ["string", "null"]}
_BOOL: Final = {"type": ["boolean", "null"]}
_INT: Final = {"type": ["integer", "null"]}
_STRINGS: Final = _list(_STR)
_PATH: Final = {"type": "string", "pattern": "^/"}
_NODE_USER: Final = _obj({"id": _INT, "name": _STR_OR_NULL})
_RESOURCE: Final = _obj(
    {
        "source": _STR_OR_NULL,
        "compression": _STR_OR_NULL,
        "verification": _obj({"hash": _STR_OR_NULL}),
        "httpHeaders": _list(_obj({"name": _STR, "value": _STR_OR_NULL}, ("name",))),
    }
)
_NODE: Final = {"path": _PATH, "overwrite": _BOOL, "user": _NODE_USER, "group": _NODE_USER}
_DEVICE_LIST: Final = _list({"type": "object", "required": ["device"]})

#: The parts of the Ignition 3.x config spec bootbrain checks (see the docstring).
SCHEMA: Final[dict[str, Any]] = _obj(
    {
        "ignition": _obj(
            {
                "version": {"type": "string", "pattern": SPEC_VERSION_PATTERN},
                "config": _obj({"merge": _list(_RESOURCE), "replace": _RESOURCE}),
                "timeouts": _obj({"httpResponseHeaders": _INT, "httpTotal": _INT}),
                "security": {"type": "object"},
                "proxy": {"type": "object"},
            },
            ("version",),
        ),
        "kernelArguments": _obj({"shouldExist": _STRINGS, "shouldNotExist": _STRINGS}),
        "passwd": _obj(
            {
                "users": _list(
                    _obj(
                        {
                            "name": _STR,
                            "passwordHash": _STR_OR_NULL,
                            "sshAuthorizedKeys": _STRINGS,
                            "uid": _INT,
                            "gecos": _STR_OR_NULL,
                            "homeDir": _STR_OR_NULL,
                            "noCreateHome": _BOOL,
                            "primaryGroup": _STR_OR_NULL,
                            "groups": _STRINGS,
                            "noUserGroup": _BOOL,
                            "noLogInit": _BOOL,
                            "shell": _STR_OR_NULL,
                            "system": _BOOL,
                            "shouldExist": _BOOL,
                        },
                        ("name",),
                    )
                ),
                "groups": _list(
                    _obj(
                        {
                            "name": _STR,
                            "gid": _INT,
                            "passwordHash": _STR_OR_NULL,
                            "system": _BOOL,
                            "shouldExist": _BOOL,
                        },
                        ("name",),
                    )
                ),
            }
        ),
        "storage": _obj(
            {
                "disks": _DEVICE_LIST,
                "raid": _list({"type": "object", "required": ["name"]}),
                "filesystems": _DEVICE_LIST,
                "luks": _DEVICE_LIST,
                "files": _list(
                    _obj(
                        {**_NODE, "contents": _RESOURCE, "append": _list(_RESOURCE), "mode": _INT},
                        ("path",),
                    )
                ),
                "directories": _list(_obj({**_NODE, "mode": _INT}, ("path",))),
                "links": _list(_obj({**_NODE, "target": _STR_OR_NULL, "hard": _BOOL}, ("path",))),
            }
        ),
        "systemd": _obj(
            {
                "units": _list(
                    _obj(
                        {
                            "name": _STR,
                            "enabled": _BOOL,
                            "mask": _BOOL,
                            "contents": _STR_OR_NULL,
                            "dropins": _list(
                                _obj({"name": _STR, "contents": _STR_OR_NULL}, ("name",))
                            ),
                        },
                        ("name",),
                    )
                )
            }
        ),
    },
    ("ignition",),
)

_VALIDATOR: Final = jsonschema.Draft202012Validator(SCHEMA)


def check_ignition_text(value: str) -> str:
    """The template's text, before rendering; raises ValueError."""
    return check_template_text(value, MAX_IGNITION)


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _json_path(path: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def check_config(field: str, text: str) -> dict[str, Any]:
    """A rendered config, parsed and checked against :data:`SCHEMA`; raises
    :class:`DocumentError` naming the JSON path (or the line of a JSON error)."""
    try:
        loaded = json.loads(text, object_pairs_hook=_no_repeated_keys)
    except json.JSONDecodeError as e:
        raise DocumentError(
            field, f"not JSON (line {e.lineno} of the rendered config): {e.msg}", e.lineno
        ) from None
    except ValueError as e:
        raise DocumentError(field, f"not an Ignition config: {e}") from None
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(loaded))
    if error is not None:
        where = _json_path(error.absolute_path)
        if list(error.absolute_path) == ["ignition", "version"]:
            message = "must be an Ignition spec 3.x version, 3.0.0 to 3.5.0"
        elif error.validator == "additionalProperties":
            message = f"unknown key ({error.message})"
        elif error.validator == "pattern" and error.absolute_path[-1] == "path":
            message = "must be an absolute path"
        else:
            message = error.message
        raise DocumentError(field, f"not an Ignition 3.x config: {where}: {message}")
    checked: dict[str, Any] = loaded
    return checked


def render_ignition(field: str, source: str | None, variables: Mapping[str, Any]) -> str:
    """The served config: the template rendered, checked and re-serialised. Raises
    :class:`MissingIgnitionError` without a template, :class:`DocumentError` when it
    fails for these values."""
    if not source:
        raise MissingIgnitionError("this boot's profile has no Ignition config")
    try:
        text = render_text(field, source, variables)
    except TemplateProblem as e:
        raise DocumentError(field, e.message, e.line) from None
    return json.dumps(check_config(field, text), indent=2) + "\n"
