"""Save-time checks of what the boot core will render: a profile is checked with the
core's own validator (:func:`bootbrain.boot.render.validate_profile`), so a broken
template is a 422 naming the field and line at write time, not a failed boot. The
booted OS's templates (user-data, vendor-data) are checked the same way
(:func:`bootbrain.boot.documents.validate_config`). The core's complaints become
:class:`~bootbrain.errors.FieldError`, with the API's field names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bootbrain.boot import documents
from bootbrain.boot.render import validate_profile
from bootbrain.boot.types import MenuItem, MenuView, OsConfig, ProfileView
from bootbrain.errors import DocumentError, FieldError, TemplateProblem

ProfileLookup = Callable[[str], ProfileView | None]


def view_of(fields: dict[str, Any], lookup: ProfileLookup) -> ProfileView:
    menu = None
    if fields.get("menu"):
        items = []
        for i, item in enumerate(fields["menu"]["items"]):
            target = lookup(item["profile"])
            if target is None:
                raise FieldError(f"menu.items.{i}.profile", f"no profile named {item['profile']!r}")
            items.append(MenuItem(key=item["key"], label=item["label"], profile=target))
        menu = MenuView(
            items=tuple(items),
            default=fields["menu"].get("default"),
            timeout=int(fields["menu"].get("timeout", 10)),
        )
    return ProfileView(
        name=fields["name"],
        kind=fields["kind"],
        kernel=fields.get("kernel"),
        initrds=tuple(fields.get("initrds") or ()),
        cmdline=fields.get("cmdline"),
        script=fields.get("script"),
        chain_url=fields.get("chain_url"),
        local_method=fields.get("local_method"),
        menu=menu,
        complete_state=fields.get("complete_state"),
    )


def _api_field(field: str) -> str:
    """``menu.items[2].profile`` → ``menu.items.2.profile``, as pydantic names fields."""
    return re.sub(r"\[(\d+)\]", r".\1", field)


def _config_of_fields(fields: dict[str, Any]) -> OsConfig:
    return OsConfig(
        ssh_keys=tuple(fields.get("ssh_keys") or ()),
        tags=tuple(fields.get("tags") or ()),
        metadata=dict(fields.get("metadata") or {}),
        user_data=fields.get("user_data"),
        vendor_data=fields.get("vendor_data"),
        ignition=fields.get("ignition"),
    )


def check_profile(fields: dict[str, Any], lookup: ProfileLookup) -> None:
    try:
        validate_profile(view_of(fields, lookup))
    except TemplateProblem as e:
        raise FieldError(_api_field(e.field), e.message, e.line) from None
    check_documents(_config_of_fields(fields))


def check_documents(config: OsConfig, context: OsConfig | None = None) -> None:
    """:func:`documents.validate_config`, its complaint as the API's FieldError."""
    try:
        documents.validate_config(config, context)
    except DocumentError as e:
        raise FieldError(e.field, e.message, e.line) from None
