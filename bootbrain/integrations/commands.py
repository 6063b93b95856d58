"""CLI commands of the DHCP integrations: ``bootbrain dnsmasq …`` and ``bootbrain kea …``.

``config`` renders (and with ``--check`` validates with the real daemon's own test
mode), ``sync`` brings the running server's reservations in line with the inventory,
``hook`` installs the lease hook's wrapper (and with ``--hook-config`` its
``leasehook.conf``). ``bootbrain kea reload`` asks a running Kea to apply its file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click

from bootbrain.config import Settings
from bootbrain.errors import KeaError
from bootbrain.inventory import all_reservations

from . import DEFAULT_HOOK_CONFIG, render_hook_conf, render_hook_wrapper
from . import dnsmasq as dm
from . import kea as k
from .reservations import atomic_write


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


def _base_url(settings: Settings, given: str | None) -> str:
    url = (given or settings.public_url).rstrip("/")
    if not url:
        _fail("no base URL: pass --base-url or set public_url (the URL machines use)")
    return url


def _output(text: str, path: str | None, mode: int = 0o644) -> None:
    if path is None:
        click.echo(text, nl=False)
        return
    changed = atomic_write(Path(path), text, mode=None if Path(path).exists() else mode)
    click.echo(f"{path}: {'written' if changed else 'unchanged'}", err=True)


def _install_hook(
    settings: Settings,
    source: Literal["dnsmasq", "kea"],
    dest: str | None,
    python: str,
    hook_config: str | None,
    base_url: str | None,
) -> None:
    section = settings.dnsmasq if source == "dnsmasq" else settings.kea
    target = Path(dest) if dest else section.hook_script
    if target is None:
        _fail(f"{source}.hook_script is off; pass a destination")
        return
    conf = Path(hook_config) if hook_config else DEFAULT_HOOK_CONFIG
    target.parent.mkdir(parents=True, exist_ok=True)
    _output(render_hook_wrapper(source, python=python, config=conf), str(target), 0o755)
    target.chmod(0o755)
    if hook_config:
        text = render_hook_conf(
            _base_url(settings, base_url), section.hook_token_file, section.spool_dir
        )
        conf.parent.mkdir(parents=True, exist_ok=True)
        _output(text, str(conf), 0o640)


def register(
    main: click.Group, pass_ctx: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Add the ``dnsmasq`` and ``kea`` command groups to ``main``."""

    @main.group()
    def dnsmasq() -> None:
        """dnsmasq: configuration, reservations, lease hook."""

    @dnsmasq.command("config")
    @click.option("--base-url", help="URL machines use to reach bootbrain (default: public_url)")
    @click.option("-o", "--output", help="write atomically to this file instead of stdout")
    @click.option("--check", is_flag=True, help="validate with `dnsmasq --test`")
    @pass_ctx
    def dnsmasq_config(ctx: Any, /, base_url: str | None, output: str | None, check: bool) -> None:
        """Render dnsmasq's configuration (full DHCP or proxyDHCP mode)."""

        try:
            text = dm.render_config(ctx.settings, _base_url(ctx.settings, base_url))
            if check:
                dm.validate_config(text)
        except ValueError as e:
            _fail(str(e))
        _output(text, output)

    @dnsmasq.command("sync")
    @pass_ctx
    def dnsmasq_sync(ctx: Any) -> None:
        """Rewrite dhcp-hostsdir from the inventory (SIGHUP only if something went away)."""

        d = ctx.settings.dnsmasq
        try:
            result = dm.sync_reservations(d.hostsdir, all_reservations(ctx.db), d.pid_file)
        except ValueError as e:
            _fail(str(e))
            return
        click.echo(
            f"written {len(result.written)}, removed {len(result.removed)}"
            + (", dnsmasq signalled" if result.signalled else "")
        )

    @dnsmasq.command("hook")
    @click.argument("dest", required=False)
    @click.option("--python", default="/usr/bin/python3", show_default=True)
    @click.option("--hook-config", help="also write the hook's leasehook.conf here")
    @click.option("--base-url", help="for --hook-config (default: public_url)")
    @pass_ctx
    def dnsmasq_hook(
        ctx: Any, /, dest: str | None, python: str, hook_config: str | None, base_url: str | None
    ) -> None:
        """Install the dhcp-script wrapper (default: dnsmasq.hook_script)."""
        _install_hook(ctx.settings, "dnsmasq", dest, python, hook_config, base_url)

    @main.group()
    def kea() -> None:
        """ISC Kea: configuration, reservations, lease hook."""

    @kea.command("config")
    @click.option("--base-url", help="URL machines use to reach bootbrain (default: public_url)")
    @click.option("-o", "--output", help="write atomically to this file instead of stdout")
    @click.option("--check", is_flag=True, help="validate with `kea-dhcp4 -t`")
    @pass_ctx
    def kea_config(ctx: Any, /, base_url: str | None, output: str | None, check: bool) -> None:
        """Render the complete Dhcp4 document, with the inventory's reservations."""

        try:
            document = k.render_config(
                ctx.settings, _base_url(ctx.settings, base_url), all_reservations(ctx.db)
            )
            if check:
                k.validate_config(document)
        except ValueError as e:
            _fail(str(e))
            return
        _output(k.render_json(document), output)

    @kea.command("ctrl-agent-config")
    @click.option("-o", "--output", help="write atomically to this file instead of stdout")
    @pass_ctx
    def kea_ctrl_agent_config(ctx: Any, /, output: str | None) -> None:
        """Render kea-ctrl-agent's document for this HA member (kea.ha): it listens on
        this server's peer URL and forwards to kea-dhcp4's control socket."""
        try:
            text = k.render_json(k.render_ctrl_agent(ctx.settings))
        except ValueError as e:
            _fail(str(e))
            return
        _output(text, output)

    @kea.command("tftp-config")
    @click.option("-o", "--output", help="write atomically to this file instead of stdout")
    @click.option(
        "--pid-file", default="/run/bootbrain-tftp.pid", show_default=True, type=click.Path()
    )
    @pass_ctx
    def kea_tftp_config(ctx: Any, /, output: str | None, pid_file: str) -> None:
        """Render a TFTP-only dnsmasq for the iPXE binaries (Kea has no TFTP server):
        on kea.interface, serving dnsmasq.tftp_root."""
        s = ctx.settings
        try:
            text = dm.render_tftp_config(
                s.kea.interface, s.dnsmasq.tftp_root, Path(pid_file), ipv6_ra=s.dnsmasq.ipv6_ra
            )
        except ValueError as e:
            _fail(str(e))
            return
        _output(text, output)

    @kea.command("sync")
    @click.option("--base-url", help="URL machines use to reach bootbrain (default: public_url)")
    @pass_ctx
    def kea_sync(ctx: Any, /, base_url: str | None) -> None:
        """Write Kea's configuration from the inventory and make the running Kea use it."""

        try:
            result = k.sync_reservations(
                ctx.settings, _base_url(ctx.settings, base_url), all_reservations(ctx.db)
            )
        except (ValueError, KeaError) as e:
            _fail(str(e))
            return
        click.echo(
            f"{result.method}: {'changed' if result.changed else 'unchanged'} "
            f"({result.seconds:.2f} s)"
        )

    @kea.command("reload")
    @pass_ctx
    def kea_reload(ctx: Any) -> None:
        """Have the running Kea check and apply its configuration file."""

        try:
            click.echo(k.reload(ctx.settings))
        except KeaError as e:
            _fail(str(e))

    @kea.command("hook")
    @click.argument("dest", required=False)
    @click.option("--python", default="/usr/bin/python3", show_default=True)
    @click.option("--hook-config", help="also write the hook's leasehook.conf here")
    @click.option("--base-url", help="for --hook-config (default: public_url)")
    @pass_ctx
    def kea_hook(
        ctx: Any, /, dest: str | None, python: str, hook_config: str | None, base_url: str | None
    ) -> None:
        """Install run_script's wrapper (default: kea.hook_script)."""
        _install_hook(ctx.settings, "kea", dest, python, hook_config, base_url)
