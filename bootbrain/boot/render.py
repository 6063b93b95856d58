"""The renderers: the bootstrap, each decision, and error scripts (README "Profiles
render" says what each profile kind becomes; ``tests/golden/`` pins each exactly).

Every script comes from a shipped template rendered by
:func:`~bootbrain.boot.sandbox.render_shipped`, with the operator's fields rendered
and shape-checked by :func:`~bootbrain.boot.sandbox.render_operator` first. Names
starting ``bb_`` (and the bootstrap's ``bootbrain-url``) are the brain's own labels
and settings: an operator's script may ``goto bb_fallback`` to boot from local disk.
:func:`render_error` never fails: it is what a machine gets when anything else did.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any, Final

from bootbrain.errors import RenderError, TemplateProblem
from bootbrain.vocabulary import DECISION_STEPS, LOCAL_METHODS, NAME_RE

from .groups import merged_variables
from .sandbox import ScriptText, bounded, render_operator, render_shipped
from .types import Decision, MachineView, ProfileView, RenderContext
from .validate import (
    SAMPLE_CONTEXT,
    SAMPLE_MACHINE,
    SampleVars,
    check_menu,
    check_stored_value,
    compile_template,
)
from .variables import BASE_URL_RE, STATIC_SETTINGS, template_variables

__all__ = [
    "ERROR_RETRY_LIMIT",
    "FETCH_ATTEMPTS",
    "bootstrap_delays",
    "render_bootstrap",
    "render_decision",
    "render_error",
    "validate_profile",
]


#: Tries per kernel/initrd fetch before falling back to local boot.
FETCH_ATTEMPTS: Final = 3

#: Error scripts that retry give up (local boot) after this many in one iPXE session.
ERROR_RETRY_LIMIT: Final = 10

#: Cap on the bootstrap's base delay; the drawn jitter adds up to as much again.
BOOTSTRAP_MAX_BASE_DELAY: Final = 60

_SAFE_MESSAGE_RE: Final = re.compile(r"[A-Za-z0-9 ,.:()'/-]{1,120}")

_IMAGE_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


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
        kernel_url = render_operator(field + "kernel", profile.kernel, variables)
        # Names match _IMAGE_NAME_RE: part of the script's text, like the labels.
        kernel_name = ScriptText(_image_name(kernel_url, used, "kernel"))
        initrds = []
        for n, source in enumerate(profile.initrds):
            url = render_operator(f"{field}initrds[{n}]", source, variables)
            initrds.append((url, ScriptText(_image_name(url, used, "initrd"))))
        cmdline = ""
        if profile.cmdline:
            cmdline = render_operator(field + "cmdline", profile.cmdline, variables)
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
        out["script"] = render_operator(field + "script", profile.script, variables)
    elif profile.kind == "chain":
        if not profile.chain_url:
            raise TemplateProblem(field + "chain_url", None, "a chain profile needs a URL")
        out["url"] = ScriptText(render_operator(field + "chain_url", profile.chain_url, variables))
    elif profile.kind == "local":
        out["local_boot"] = _local_boot(profile.local_method, ctx.local_method)
    elif profile.kind == "menu":
        if in_menu:
            raise RenderError("a menu item cannot be a menu")
        try:
            menu = check_menu(profile.menu, field + "menu")
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


def render_decision(
    decision: Decision, machine: MachineView | None, ctx: RenderContext, sample: bool = False
) -> str:
    """The full ``/ipxe`` script for this decision.

    Raises :class:`TemplateProblem` when an operator template fails to render for this
    machine (:class:`~bootbrain.errors.RenderLimitError`: beyond ``ctx.limits``), and
    :class:`RenderError` when the result would not be exactly the intended script;
    answer the machine with :func:`render_error` in both cases. ``sample``: a
    check when saving, where every template variable has a value.
    """
    if decision.step not in DECISION_STEPS:
        raise RenderError(f"unknown decision step {decision.step!r}")
    with bounded(ctx.limits):  # all of the script's templates together
        return _render_decision(decision, machine, ctx, sample)


def _render_decision(
    decision: Decision, machine: MachineView | None, ctx: RenderContext, sample: bool
) -> str:
    sets: list[tuple[str, str]] = []
    message: ScriptText | None = None
    profile_vars: dict[str, Any] | None = None
    local_boot = _local_boot(None, ctx.local_method)
    if decision.step == "conflict":
        message = ScriptText("identity conflict: these identifiers belong to more than one machine")
    elif decision.step == "error":
        message = ScriptText("internal error while deciding")
    else:
        named = merged_variables(decision.profile, decision.groups, machine)
        variables = template_variables(machine, ctx, named)
        if sample:
            variables["vars"] = SampleVars(named)
        if machine is not None and machine.static is not None:
            sets += [(ScriptText(name), variables[key]) for name, key in STATIC_SETTINGS]
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
    return render_shipped(
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
    return render_shipped(
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
        return render_shipped(
            "error.ipxe.j2",
            {"message": ScriptText(message), "retry": retry, "limit": ERROR_RETRY_LIMIT},
        )
    except RenderError:  # pragma: no cover - the shipped template is fixed
        return "#!ipxe\necho bootbrain: internal error\nexit\n"


def validate_profile(profile: ProfileView, field: str = "") -> None:
    """Check every field of a profile (:mod:`bootbrain.boot.validate`), and render it
    once for the sample machine, menus with their items.

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
        check_menu(profile.menu, prefix + "menu")
        for n, item in enumerate(profile.menu.items if profile.menu else ()):
            validate_profile(item.profile, f"{prefix}menu.items[{n}].profile")
    if not field:
        decision = Decision(step="assigned", profile=profile, reason="validation")
        try:
            render_decision(decision, SAMPLE_MACHINE, SAMPLE_CONTEXT, sample=True)
        except RenderError as e:
            raise TemplateProblem(prefix + profile.kind, None, str(e)) from None
