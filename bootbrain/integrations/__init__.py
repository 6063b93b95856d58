"""DHCP server integrations: dnsmasq and ISC Kea.

:mod:`~bootbrain.integrations.dnsmasq` and :mod:`~bootbrain.integrations.kea` render
each server's configuration and keep its reservations in step with the inventory;
:mod:`~bootbrain.integrations.reservations` holds what they share,
:mod:`~bootbrain.integrations.sync` what the services wire up, and
:mod:`~bootbrain.integrations.commands` their CLI. The lease hook both servers run is
:mod:`~bootbrain.integrations.leasehook` (standard library only, run by path); this
module renders the small files that install it: a shell wrapper (dnsmasq and Kea
execute one path with no arguments of ours, and Kea gives it no ``PATH``) and the
hook's ``leasehook.conf``. The operator's copies of these files in the repository's
``dnsmasq/`` and ``kea-hooks/`` folders are rendered by the same functions (a test
compares them).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "DEFAULT_HOOK_CONFIG",
    "LEASEHOOK_PATH",
    "render_hook_conf",
    "render_hook_wrapper",
]

#: The hook as installed with the package; the wrapper runs it by absolute path.
LEASEHOOK_PATH = Path(__file__).resolve().parent / "leasehook.py"
DEFAULT_HOOK_CONFIG = Path("/etc/bootbrain/leasehook.conf")
_SAFE_VALUE = re.compile(r"[^\s\0#]+")


def render_hook_wrapper(
    source: Literal["dnsmasq", "kea"],
    *,
    python: str = "/usr/bin/python3",
    leasehook: Path = LEASEHOOK_PATH,
    config: Path | None = DEFAULT_HOOK_CONFIG,
) -> str:
    """The executable ``dhcp-script`` (dnsmasq) or run_script ``name`` (Kea).

    ``-S -E``: no site-packages and no ``PYTHON*`` variables — the hook needs only the
    standard library, and skipping ``site`` saves a few milliseconds per event.
    """
    if source not in ("dnsmasq", "kea"):
        raise ValueError(f"unknown hook source {source!r}")
    for value in (python, str(leasehook), *([str(config)] if config else [])):
        if not value.startswith("/") or "\n" in value:
            raise ValueError(f"hook paths must be absolute: {value!r}")
    lines = [
        "#!/bin/sh",
        f"# bootbrain lease hook for {source}; rendered by bootbrain, safe to re-render.",
        "# Every path is absolute: Kea runs this with its own variables only (no PATH).",
    ]
    if config is not None:
        lines += [
            f"BOOTBRAIN_HOOK_CONFIG={shlex.quote(str(config))}",
            "export BOOTBRAIN_HOOK_CONFIG",
        ]
    lines.append(f'exec {shlex.quote(python)} -S -E {shlex.quote(str(leasehook))} {source} "$@"')
    return "\n".join(lines) + "\n"


#: What each key of leasehook.conf means, written above it.
_HOOK_CONF_HELP: Final = {
    "url": "Where bootbrain listens (the hook POSTs to <url>/api/v1/lease-events).",
    "token_file": "A file with an API token with lease scope (`bootbrain token create "
    "--name dhcp-hook\n# --scope lease --quiet`: it can post lease events and nothing "
    "else), readable by the\n# user the DHCP server runs the hook as (root for dnsmasq, "
    "_kea for Debian's kea-dhcp4).",
    "spool_dir": "Events wait here while bootbrain is unreachable; writable by that same user.",
    "timeout": "Seconds: per request, for the whole run (the DHCP server's wait), and how "
    "long\n# to only spool after a failed delivery.",
}


def render_hook_conf(
    url: str,
    token_file: Path | None,
    spool_dir: Path | None,
    *,
    timeout: float | None = None,
    budget: float | None = None,
    backoff: float | None = None,
) -> str:
    """The hook's ``leasehook.conf`` (``key=value`` lines; see leasehook.py), each key
    with a comment saying what it is."""
    values: dict[str, str] = {"url": url.rstrip("/")}
    if token_file is not None:
        values["token_file"] = str(token_file)
    if spool_dir is not None:
        values["spool_dir"] = str(spool_dir)
    for key, number in (("timeout", timeout), ("budget", budget), ("backoff", backoff)):
        if number is not None:
            values[key] = f"{number:g}"
    lines = [
        "# bootbrain lease hook configuration: read by leasehook.py on every lease event.",
        "# Each key can be overridden by the environment variable BOOTBRAIN_HOOK_<KEY>.",
    ]
    timings = ("timeout", "budget", "backoff")
    for key, value in values.items():
        if not _SAFE_VALUE.fullmatch(value):
            raise ValueError(f"{key} {value!r} cannot be written to the hook's config")
        first_timing = key in timings and not any(
            t in values for t in timings[: timings.index(key)]
        )
        if key in _HOOK_CONF_HELP or first_timing:
            lines.append("# " + _HOOK_CONF_HELP["timeout" if key in timings else key])
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"
