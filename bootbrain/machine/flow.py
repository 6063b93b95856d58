"""The boot flow: what iPXE asks (``/ipxe``) → identity → decision → script.

The pieces are pure (:mod:`bootbrain.boot`); this module wires them to the inventory
and the event writer, and owns the rule that a booting machine always receives a
valid script — on a database outage, a template failure or an identity conflict it
gets a message and a retry or a safe exit, and the failure is logged and counted.
The boot preview (API and ``bootbrain render``) runs the same decision and render and
records nothing. No Flask here: the routes hand in what the request said.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final

from bootbrain import inventory, logs, schemas, security
from bootbrain.boot import render
from bootbrain.boot.decide import conflict, decide
from bootbrain.boot.facts import parse_facts
from bootbrain.boot.groups import variable_sources
from bootbrain.boot.types import (
    Decision,
    Facts,
    GroupView,
    MachineView,
    RenderContext,
    RenderLimits,
)
from bootbrain.config import Settings
from bootbrain.db import Database, DatabaseError, short_lock_waits
from bootbrain.errors import BusyError, RenderError, RenderLimitError, TemplateProblem
from bootbrain.inventory import discovery, lookup
from bootbrain.metrics import metrics
from bootbrain.models import utcnow

from .events import EventWriter

log = logging.getLogger(__name__)

#: How long registering a discovered machine waits for the database's write lock.
DISCOVERY_LOCK_WAIT_S = 1.0


def count_failure(kind: str) -> None:
    """A failure on a machine route (answered with a valid script), on /metrics."""
    metrics().failures.labels(kind).inc()


@dataclass(frozen=True)
class Answer:
    script: str
    decision: Decision
    machine: MachineView | None
    boot_id: str | None


def _tokens_for(decision: Decision) -> bool:
    """Only a boot that starts an OS needs a completion URL and a metadata token."""
    p = decision.profile
    return p is not None and p.kind != "local"


def render_context(
    settings: Settings, base_url: str, token: str | None, boot_id: str | None
) -> RenderContext:
    assets = settings.assets_url or f"{base_url}/assets"
    return RenderContext(
        base_url=base_url,
        assets_url=assets.rstrip("/"),
        boot_id=boot_id,
        done_url=f"{base_url}/boot/{token}/done" if token else None,
        metadata_url=f"{base_url}/boot/{token}/" if token else None,
        local_method=settings.local_boot_method,
        limits=RenderLimits(
            seconds=settings.render_max_seconds,
            max_bytes=settings.render_max_bytes,
            steps=settings.render_max_steps,
        ),
    )


def decide_for(
    db: Database, settings: Settings, facts: Facts, *, register: bool
) -> tuple[Decision, MachineView | None]:
    found = lookup.lookup_for_boot(db.boot_reader, facts, settings.default_profile)
    if found.conflict:
        return conflict("the identity sent names more than one machine", found.conflict), None
    machine = found.machine
    if machine is None and register and settings.discovery:
        # A machine does not wait long for the write lock: it retries (and meanwhile
        # holds a worker other machines need).
        with short_lock_waits(DISCOVERY_LOCK_WAIT_S):
            machine = discovery.register_from_boot(db, settings, facts)
    groups = found.groups
    if machine is not None and found.machine is None:
        # Just registered: the groups read before cannot have seen its state.
        groups = lookup.candidate_groups(db.boot_reader, machine, facts)
    decision = decide(machine, found.rules, facts, found.default, utcnow(), groups)
    if machine is not None and decision.machine_id is None:
        decision = replace(decision, machine_id=machine.id)
    return decision, machine


def answer_ipxe(
    db: Database,
    settings: Settings,
    writer: EventWriter,
    raw_query: bytes,
    remote_ip: str | None,
    base_url: str,
    user_agent: str | None,
) -> Answer:
    facts = parse_facts(raw_query)
    now = utcnow()
    try:
        decision, machine = decide_for(db, settings, facts, register=True)
    except (DatabaseError, BusyError):
        log.exception("inventory unavailable while answering /ipxe")
        count_failure("database")
        script = render.render_error("boot server inventory unavailable", retry_seconds=15)
        return Answer(script, Decision("error", None, "inventory unavailable"), None, None)

    token = security.new_boot_token() if _tokens_for(decision) else None
    boot_id = security.new_boot_id() if token else None
    ctx = render_context(settings, base_url, token, boot_id)
    script, failure = _render(decision, machine, ctx)
    if failure is not None:
        # The profile's name and the error only: the profile (its script, its
        # user-data) and a traceback through its template may hold secrets.
        log.error(
            "rendering profile %s for machine %s failed: %s: %s",
            decision.profile.name if decision.profile else None,
            decision.machine_id,
            type(failure).__name__,
            failure,
        )
        # render_limit: a template too costly for this machine (time, size); render:
        # any other failure. Both boot from local disk.
        count_failure("render_limit" if isinstance(failure, RenderLimitError) else "render")
        profile = decision.profile.name if decision.profile else None
        decision = Decision(
            "error",
            None,
            f"profile {profile} failed to render; booting from disk",
            machine_id=decision.machine_id,
        )
        token = boot_id = None
    if decision.step == "conflict":
        count_failure("conflict")

    event = {
        "at": now,
        "kind": "conflict" if decision.step == "conflict" else "boot",
        "machine_id": decision.machine_id,
        "mac": facts.mac,
        "ip": remote_ip,
        "message": decision.reason,
        "data": {
            "step": decision.step,
            "profile": decision.profile.name if decision.profile else None,
            "rule": decision.rule,
            "groups": [g.name for g in decision.groups] or None,
            "boot_id": boot_id,
            "facts": _facts_record(facts),
            "user_agent": (user_agent or "")[:200],
        },
    }
    boot = None
    if token and boot_id:
        boot = {
            "id": boot_id,
            "machine_id": decision.machine_id,
            "token_hash": security.token_hash(settings.secret(), token),
            "profile_name": decision.profile.name if decision.profile else None,
            "step": decision.step,
            "action_ref": decision.action_ref,
            "created_at": now,
            "expires_at": now + timedelta(seconds=settings.boot_token_ttl),
            "completed_at": None,
        }
    writer.boot(event=event, boot=boot, machine_id=decision.machine_id, at=now, ip=remote_ip)
    logs.bind(machine_id=decision.machine_id, boot_id=boot_id, step=decision.step)
    return Answer(script, decision, machine, boot_id)


#: What a machine whose script failed to render reads (and boots from local disk).
RENDER_FAILED: Final = "boot script failed to render on the server"


def _render(
    decision: Decision, machine: MachineView | None, ctx: RenderContext
) -> tuple[str, Exception | None]:
    """The decision's script, or the error script and why it is that (any failure of
    the render: the machine must get a valid script whatever went wrong)."""
    try:
        return render.render_decision(decision, machine, ctx), None
    except Exception as e:
        return render.render_error(RENDER_FAILED, retry_seconds=None), e


def _explain_failure(e: Exception) -> schemas.PreviewProblem:
    """What the boot preview says of a failed render: the operator's field and line
    where the failure is theirs to fix."""
    if isinstance(e, TemplateProblem):
        return schemas.PreviewProblem(field=e.field, line=e.line, message=e.message)
    if isinstance(e, RenderError):
        return schemas.PreviewProblem(field=None, line=None, message=str(e))
    log.error("boot preview: the render failed unexpectedly: %s: %s", type(e).__name__, e)
    return schemas.PreviewProblem(
        field=None, line=None, message=f"unexpected {type(e).__name__} (logged on the server)"
    )


def _facts_record(facts: Facts) -> dict[str, Any]:
    return {
        k: v
        for k, v in (
            ("uuid", facts.uuid),
            ("mac", facts.mac),
            ("serial", facts.serial),
            ("board_serial", facts.board_serial),
            ("manufacturer", facts.manufacturer),
            ("product", facts.product),
            ("asset", facts.asset),
            ("buildarch", facts.buildarch),
            ("platform", facts.platform),
            ("problems", list(facts.problems) or None),
        )
        if v is not None
    }


def _preview_context(settings: Settings, base_url: str, decision: Decision) -> RenderContext:
    placeholder = "PREVIEW-TOKEN" if _tokens_for(decision) else None
    return render_context(settings, base_url, placeholder, "preview" if placeholder else None)


def preview(db: Database, settings: Settings, facts: Facts, base_url: str) -> schemas.PreviewOut:
    """The exact script a machine with these facts gets now; records nothing.

    When the render fails the machine gets an error script and boots from local disk:
    the preview shows that script, step ``error``, the profile that failed, and the
    ``problem`` (which field, which line, what)."""
    decision, machine = decide_for(db, settings, facts, register=False)
    script, failure = _render(decision, machine, _preview_context(settings, base_url, decision))
    profile = decision.profile.name if decision.profile else None
    sources = explain_variables(
        profile,
        decision.profile.variables if decision.profile else {},
        decision.groups,
        machine.variables if machine else {},
    )
    if failure is None:
        return schemas.PreviewOut(
            machine_id=decision.machine_id,
            step=decision.step,
            profile=profile,
            rule=decision.rule,
            reason=decision.reason,
            script=script,
            **sources,
        )
    problem = _explain_failure(failure)
    return schemas.PreviewOut(
        machine_id=decision.machine_id,
        step="error",
        profile=profile,
        rule=decision.rule,
        reason=(
            f"{decision.reason}; but profile {profile} failed to render for this machine "
            f"({problem.describe()}), so it boots from local disk"
        ),
        script=script,
        problem=problem,
        **sources,
    )


def explain_variables(
    profile: str | None,
    profile_variables: Mapping[str, str],
    groups: Sequence[GroupView],
    machine_variables: Mapping[str, str],
) -> dict[str, Any]:
    """The previews' ``groups`` and ``variables`` (each with where it came from)."""
    return {
        "groups": [g.name for g in groups],
        "variables": [
            schemas.VariableOut(name=v.name, value=v.value, source=v.source)
            for v in variable_sources(profile, profile_variables, groups, machine_variables)
        ],
    }


def facts_of_machine(
    db: Database, machine_id: int, buildarch: str | None, platform: str | None
) -> Facts:
    m = inventory.get_machine(db, machine_id)
    nic = next((n for n in m.nics if n.boot), m.nics[0] if m.nics else None)
    return Facts(
        uuid=m.uuid,
        mac=nic.mac if nic else None,
        serial=m.serial,
        board_serial=m.board_serial,
        manufacturer=m.manufacturer,
        product=m.product,
        asset=m.asset_tag,
        buildarch=buildarch or "x86_64",
        platform=platform or "efi",
    )


def base_url(settings: Settings, host_url: str) -> str:
    return (settings.public_url or host_url).rstrip("/")


def preview_machine(
    db: Database,
    settings: Settings,
    machine_id: int,
    buildarch: str | None,
    platform: str | None,
    base: str,
) -> schemas.PreviewOut:
    """:func:`preview` for an inventory machine, with the identity it would boot with."""
    facts = facts_of_machine(db, machine_id, buildarch, platform)
    out = preview(db, settings, facts, base)
    if out.machine_id != machine_id:
        # The machine's own identity resolves elsewhere: that is worth saying.
        return out.model_copy(
            update={"reason": f"{out.reason} (identity resolves to machine {out.machine_id})"}
        )
    return out
