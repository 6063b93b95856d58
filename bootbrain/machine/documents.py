"""The booted OS's configuration, released against the per-boot token only.

The token is the one the brain put into this machine's boot script (BRIEF "Secrets");
it is looked up by its HMAC alone — a MAC, UUID or anything else the request claims
is never consulted, so another machine's token opens that machine's documents and
nothing else. It opens nothing once the boot has completed (the completion callback
revokes it) or once it is older than ``boot_token_ttl``.

Every refusal is counted on ``/metrics`` and recorded as a ``metadata_refused``
event (a refused completion as ``completion_refused``), through the event writer (off
the request path) and at most :data:`REFUSAL_EVENTS_PER_MINUTE` a minute per process,
so a flood of guesses cannot flood the database; the next recorded refusal says how
many were left out. Every document released is recorded as a ``metadata`` event (which
document, which boot, which address): who read a secret, and when.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from bootbrain import inventory, schemas
from bootbrain.boot import documents
from bootbrain.boot.ignition import MissingIgnitionError
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.errors import (
    BootTokenError,
    DocumentError,
    DocumentRenderError,
    FieldError,
    RenderError,
)
from bootbrain.models import utcnow

from . import flow
from .events import EventWriter

REFUSAL_EVENTS_PER_MINUTE: Final = 60
#: What :func:`bootbrain.security.new_boot_token` makes (with room to spare).
TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass
class RefusalBudget:
    """At most ``per_minute`` refusal events a minute; counts the ones left out."""

    per_minute: int = REFUSAL_EVENTS_PER_MINUTE
    _window: int = -1
    _used: int = 0
    _suppressed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int]:
        """(record this one?, how many were left out before it)."""
        with self._lock:
            window = int(time.monotonic() // 60)
            if window != self._window:
                self._window, self._used = window, 0
            if self._used >= self.per_minute:
                self._suppressed += 1
                return False, 0
            self._used += 1
            suppressed, self._suppressed = self._suppressed, 0
            return True, suppressed


def _refuse(
    writer: EventWriter,
    budget: RefusalBudget,
    reason: str,
    document: str,
    ip: str | None,
    boot_id: str | None = None,
    machine_id: int | None = None,
    kind: str = "metadata_refused",
) -> BootTokenError:
    flow.count_failure(kind)
    record, suppressed = budget.take()
    if record:
        data: dict[str, Any] = {"document": document, "reason": reason}
        if boot_id:
            data["boot_id"] = boot_id
        if suppressed:
            data["suppressed_before"] = suppressed
        writer.event(
            {
                "at": utcnow(),
                "kind": kind,
                "machine_id": machine_id,
                "ip": ip,
                "message": f"{document} refused: {reason}",
                "data": data,
            }
        )
    return BootTokenError(reason, boot_id, machine_id)


def serve(
    db: Database,
    settings: Settings,
    writer: EventWriter,
    budget: RefusalBudget,
    token: str,
    document: str,
    base_url: str,
    ip: str | None,
) -> str | dict[str, Any]:
    """One document for the holder of a per-boot token: the text of a NoCloud file, or
    the JSON document as a dict. Raises :class:`~bootbrain.errors.BootTokenError`
    (refused; recorded) or :class:`DocumentRenderError`."""
    if not TOKEN_RE.fullmatch(token):
        raise _refuse(writer, budget, "malformed boot token", document, ip)
    try:
        found = inventory.boot_config_for_token(db, settings.secret(), token, utcnow())
    except BootTokenError as e:
        raise _refuse(writer, budget, e.reason, document, ip, e.boot_id, e.machine_id) from None
    ctx = flow.render_context(settings, base_url, token, found.boot_id)
    try:
        prepared = documents.prepare(found.source, found.boot_id, ctx)
        body: str | dict[str, Any]
        if document == documents.JSON_DOCUMENT:
            body = documents.metadata_document(prepared)
        else:
            body = documents.render_file(prepared, document)
    except (DocumentError, RenderError) as e:
        flow.count_failure("metadata_render")
        writer.event(
            {
                "at": utcnow(),
                "kind": "metadata_error",
                "machine_id": found.machine_id,
                "ip": ip,
                "message": f"{document} of boot {found.boot_id} failed to render: {e}",
                "data": {"document": document, "boot_id": found.boot_id},
            }
        )
        raise DocumentRenderError(f"{document} failed to render") from e
    writer.event(
        {
            "at": utcnow(),
            "kind": "metadata",
            "machine_id": found.machine_id,
            "ip": ip,
            "message": f"{document} of boot {found.boot_id} served",
            "data": {"document": document, "boot_id": found.boot_id},
        }
    )
    return body


def complete(
    db: Database,
    settings: Settings,
    writer: EventWriter,
    budget: RefusalBudget,
    token: str,
    report: dict[str, str],
    ip: str | None,
) -> str:
    """The completion callback: the boot's id, or :class:`BootTokenError` (refused).

    A refusal (unknown, replayed or expired token) is recorded as a
    ``completion_refused`` event through the event writer, like a document's: the
    completion's own transaction is rolled back with the refusal, and a flood of
    guesses is held to the same budget."""
    if not TOKEN_RE.fullmatch(token):
        raise _refuse(writer, budget, "malformed boot token", "completion", ip, kind=_COMPLETION)
    try:
        return inventory.complete_boot(db, settings.secret(), token, report, ip)
    except BootTokenError as e:
        raise _refuse(
            writer, budget, e.reason, "completion", ip, e.boot_id, e.machine_id, kind=_COMPLETION
        ) from None


_COMPLETION: Final = "completion_refused"

PREVIEW_TOKEN: Final = "PREVIEW-TOKEN"  # noqa: S105 - a placeholder shown to operators


def preview(
    db: Database,
    settings: Settings,
    machine_id: int,
    profile: str | None,
    base_url: str,
    reveal: bool,
) -> schemas.ConfigPreviewOut:
    """What a boot of the machine would be served now (records nothing).

    Without ``profile``: the profile the machine boots now (the boot decision, as the
    boot preview shows it). ``reveal``: include user-data and vendor-data. Raises
    FieldError for a template that fails for this machine."""
    if profile is None:
        facts = flow.facts_of_machine(db, machine_id, None, None)
        decision, _ = flow.decide_for(db, settings, facts, register=False)
        step, reason = decision.step, decision.reason
        profile = decision.profile.name if decision.profile else None
        if decision.machine_id != machine_id:
            step, profile = "unmatched", None
            reason = (
                "a boot with this machine's identity would not reach this machine "
                f"({decision.reason}); previewed without a profile"
            )
        elif decision.profile is None or decision.profile.kind == "local":
            reason += "; a local boot carries no token, so nothing would be served"
    else:
        step, reason = "query", f"rendered with profile {profile} as asked"
    source = inventory.preview_config_source(db, machine_id, profile)
    boot_id = "preview"
    ctx = flow.render_context(settings, base_url, PREVIEW_TOKEN, boot_id)
    try:
        prepared = documents.prepare(source, boot_id, ctx)
        user_data = documents.user_data(prepared)
        vendor_data = documents.vendor_data(prepared)
        ignition_config = _ignition_or_none(prepared)
    except DocumentError as e:
        raise FieldError(e.field, e.message, e.line) from None
    except RenderError as e:
        raise FieldError("address", str(e)) from None
    secret = (("user_data", user_data), ("vendor_data", vendor_data), ("ignition", ignition_config))
    redacted = [] if reveal else [n for n, v in secret if v]
    return schemas.ConfigPreviewOut(
        machine_id=machine_id,
        step=step,
        profile=profile,
        reason=reason,
        instance_id=prepared.instance_id,
        meta_data=documents.meta_data(prepared),
        user_data=user_data if reveal else None,
        vendor_data=vendor_data if reveal else None,
        network_config=documents.network_config_text(prepared),
        metadata=documents.metadata_document(prepared),
        ignition=ignition_config if reveal else None,
        redacted=redacted,
        **flow.explain_variables(
            source.profile_name,
            source.profile_config.variables if source.profile_config else {},
            source.groups,
            source.machine_config.variables if source.machine_config else {},
        ),
    )


def _ignition_or_none(prepared: documents.Prepared) -> str | None:
    try:
        return documents.ignition_config(prepared)
    except MissingIgnitionError:
        return None
