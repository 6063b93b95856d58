"""The ``bootbrain`` command. It works on the inventory directly (on the boot host, as
the service user); the REST API is for remote automation. Every write goes through
the same schemas and inventory functions as the API, so the CLI validates exactly as
the API does, and through the same services (:func:`bootbrain.services.build`), so a
CLI write reaches what an API write reaches (the DHCP server's reservations).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from pydantic import BaseModel, ValidationError

from bootbrain import identity, inventory, logs, migrate, readiness, schemas, server, services
from bootbrain import metrics as host_metrics
from bootbrain.bmc import power
from bootbrain.boot.types import Facts
from bootbrain.config import Settings, load_settings
from bootbrain.db import Database, DatabaseError, sqlite_path
from bootbrain.errors import (
    AuthError,
    BootbrainError,
    ConflictError,
    FieldError,
    IdentityError,
    ImportRowsError,
    MissingSecretError,
)
from bootbrain.integrations import commands as integration_commands
from bootbrain.integrations import reconcile as reconciler
from bootbrain.integrations.sync import replay_spools
from bootbrain.inventory import bmc as bmc_records
from bootbrain.inventory import funnel, groups, reinstalls, transfer
from bootbrain.machine import documents, flow
from bootbrain.models import utcnow
from bootbrain.security import private_dir
from bootbrain.vocabulary import TOKEN_SCOPES

ACTOR = "cli"


class Ctx:
    """What a command works with, built on first use: a command that only renders a
    file never opens the database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._services: services.Services | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            # A command's warnings in the host's format; the long-running ones
            # (serve, reconcile, boots watch) log INFO too.
            logs.configure(
                self._settings.log_format, level=logging.WARNING, only_if_unconfigured=True
            )
        return self._settings

    @property
    def services(self) -> services.Services:
        if self._services is None:
            self._services = services.build(self.settings)
        return self._services

    @property
    def db(self) -> Database:
        return self.services.db

    def close(self) -> None:
        """Drain what the command queued and close the database's connections."""
        if self._services is not None:
            self._services.close()
            self._services = None

    def secret(self) -> bytes:
        try:
            return self.settings.secret()
        except MissingSecretError as e:
            fail(str(e))


pass_ctx = click.make_pass_decorator(Ctx, ensure=True)


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _explain(e: Exception) -> NoReturn:
    if isinstance(e, ValidationError):
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "input"
            fail_line = f"{field}: {err['msg'].removeprefix('Value error, ')}"
            click.secho(f"error: {fail_line}", fg="red", err=True)
        sys.exit(2)
    if isinstance(e, FieldError | ConflictError):
        fail(f"{e.field}: {e.message}", 2)
    fail(str(e), 2)


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (ValidationError, BootbrainError) as e:
        _explain(e)


OUTPUTS = ("table", "json", "yaml")


def output_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--output json|yaml|table`` (``-o``), and ``--json`` for ``--output json``."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--json", "as_json", is_flag=True, help="Same as --output json.")(fn)
        return click.option(
            "--output",
            "-o",
            type=click.Choice(OUTPUTS),
            default=default,
            show_default=True,
            help="table: for people (full values when not on a terminal); json, yaml: every field",
        )(fn)

    return add


def _emit(
    model: BaseModel | list[Any], output: str, as_json: bool, columns: list[str] | None = None
) -> None:
    """Print ``model`` as ``output``. As a table: a list, or one item given ``columns``
    (what add and edit print), as rows of ``columns``; one item without (show) as its
    fields, one a row."""
    data = (
        [m.model_dump(mode="json") for m in model]
        if isinstance(model, list)
        else model.model_dump(mode="json")
    )
    output = "json" if as_json else output
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
        return
    if isinstance(data, list) or columns is not None:
        items = data if isinstance(data, list) else [data]
        header = columns or (list(items[0]) if items else [])
        rows = [[_cell(row.get(c)) for c in header] for row in items]
    else:
        header = ["field", "value"]
        rows = [[k, _value(v)] for k, v in data.items()]
    if not sys.stdout.isatty():
        # Piped (to grep, awk, a file): every value in full, one line per row.
        click.echo(_plain(header, rows), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for c in header:
        table.add_column(c, overflow="fold")  # wrapped on a narrow terminal, never cut
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def _plain(header: list[str], rows: list[list[str]]) -> str:
    """Aligned columns, two spaces apart, nothing cut; a newline in a value is ``\\n``."""
    lines = [[v.replace("\n", "\\n").replace("\r", "\\r") for v in r] for r in [header, *rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(_cell(x.get("mac") if isinstance(x, dict) else x) for x in v)
    if isinstance(v, dict):
        return str(v.get("profile", v))
    return str(v)


def _value(v: Any) -> str:
    """A field of one item in full (nested values as compact JSON)."""
    if v is None:
        return ""
    if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict) for x in v)):
        return json.dumps(v, separators=(", ", ": "))
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return str(v)


#: Files with fewer rows than this import without a progress bar.
PROGRESS_THRESHOLD = 500


@contextmanager
def _progress_bar(what: str) -> Iterator[transfer.Progress | None]:
    """A progress callback drawing a bar on a terminal (none when piped or small)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress  # only here: rich is slow to import

    bar = Progress(transient=True)
    task: list[Any] = []

    def advance(done: int, total: int) -> None:
        if total < PROGRESS_THRESHOLD:
            return
        if not task:
            bar.start()
            task.append(bar.add_task(what, total=total))
        bar.update(task[0], completed=done)

    try:
        yield advance
    finally:
        bar.stop()


@contextmanager
def _stages_bar() -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress callback for work in stages (apply: parsing, checking rows, reading
    the inventory, writing), one bar line per stage, on a terminal only. A stage
    shows only once there is enough of it (:data:`PROGRESS_THRESHOLD` rows, or a file
    large enough to be parsed in steps)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console  # only here: rich is slow to import
    from rich.progress import Progress

    bar = Progress(transient=True, console=Console(stderr=True))
    tasks: dict[str, Any] = {}

    def advance(stage: str, done: int, total: int) -> None:
        if total < PROGRESS_THRESHOLD:
            return
        if not tasks:
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield advance
    finally:
        bar.stop()


@click.group()
@click.version_option(package_name="bootbrain")
@click.pass_context
def main(click_ctx: click.Context) -> None:
    """bootbrain: decides what every PXE-booting machine boots."""
    click_ctx.call_on_close(click_ctx.ensure_object(Ctx).close)


# --- setup ---------------------------------------------------------------------------


@main.command()
@click.option(
    "--admin-token/--no-admin-token",
    default=True,
    help="Create the first admin token if none exists (printed once).",
)
@pass_ctx
def init(ctx: Ctx, /, admin_token: bool) -> None:
    """Create the data directory, the secret, the schema and the first admin token."""
    s = ctx.settings
    private_dir(s.data_dir)
    if s.ensure_secret():
        click.echo(f"created secret {s.secret_file}")
    migrate.upgrade(s.database_url)
    if admin_token:
        _first_token(ctx)


def _first_token(ctx: Ctx) -> None:
    if inventory.token_count(ctx.db):
        return
    _, token = inventory.create_token(
        ctx.db, ctx.secret(), schemas.TokenIn(name="admin", scope="write"), ACTOR
    )
    click.echo("created the first API token 'admin' (write scope); it is shown only now:")
    click.echo(f"  {token}")


@main.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(ctx: Ctx, /, revision: str) -> None:
    """Migrate the schema to REVISION (default: the newest).

    Says whether it changed anything (deployment tools report "changed" from it):
    brains sharing a database migrate it one at a time, and the later ones find it done.
    """
    done = migrate.upgrade(ctx.settings.database_url, revision)
    if done.changed:
        was = done.before or "an empty database"
        click.echo(f"database at {revision}: upgraded from {was} to {done.after}")
    else:
        click.echo(f"database at {revision}: nothing to upgrade")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: Ctx, /, revision: str) -> None:
    """Migrate the schema back to REVISION."""
    migrate.downgrade(ctx.settings.database_url, revision)


@db.command("current")
@pass_ctx
def db_current(ctx: Ctx) -> None:
    """Show the schema revision."""
    migrate.current(ctx.settings.database_url)


@main.command()
@click.option("--bind", default="127.0.0.1:8080", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="gunicorn worker processes  [default: one per CPU]",
)
@click.option("--access-log/--no-access-log", default=True)
@click.option(
    "--reconcile/--no-reconcile",
    default=True,
    help="run this host's reconciler as a child process (when dhcp is set)  [default: on]",
)
@pass_ctx
def serve(ctx: Ctx, /, bind: str, workers: int | None, access_log: bool, reconcile: bool) -> None:
    """Serve under gunicorn (the production server)."""
    ctx.secret()  # refuse to start without one, before forking anything
    # Not migrated here: brains sharing one PostgreSQL would race to do it.
    try:
        problem = migrate.schema_problem(ctx.db.engine)
    except DatabaseError as e:
        reason = getattr(e, "orig", None) or e
        raise click.ClickException(f"cannot read the database: {reason}") from None
    if problem:
        raise click.ClickException(problem)
    _first_token(ctx)
    replayed = replay_spools(ctx.settings, ctx.db)
    if replayed:
        click.echo(f"recorded {replayed} lease event(s) spooled while bootbrain was down")
    # The workers build their own services after the fork; these are not shared.
    ctx.close()
    host_metrics.use_directory(ctx.settings.data_dir / "metrics")
    logs.configure(ctx.settings.log_format)  # the workers and children inherit it
    server.run(
        bind=bind,
        workers=workers,
        access_log=access_log,
        reconcile=reconcile and ctx.settings.dhcp != "none",
        watch_stuck=ctx.settings.boot_stuck_check_interval > 0,
    )


@main.command()
@pass_ctx
def status(ctx: Ctx) -> None:
    """What /readyz checks, from this host: exit 1 when any check fails."""
    results = readiness.checks(ctx.settings, ctx.db, None)
    for c in results:
        click.echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<15} {c.detail}")
    if not all(c.ok for c in results):
        sys.exit(1)


@main.command()
@click.option("--once", is_flag=True, help="One full pass, then exit.")
@click.option("--parent", type=int, hidden=True, help="Exit when this process has (serve's).")
@pass_ctx
def reconcile(ctx: Ctx, /, once: bool, parent: int | None) -> None:
    """Keep this host's DHCP server's reservations equal to the inventory's.

    Runs until stopped: woken by every inventory change (PostgreSQL NOTIFY, or a poll
    of the change counter on SQLite), and in full every few minutes. `bootbrain serve`
    runs it for you; run it yourself on a host with DHCP but no brain."""
    if ctx.settings.dhcp == "none":
        fail('dhcp = "none": there is no DHCP server to reconcile')
    if once:
        result = _run(lambda: reconciler.reconcile_once(ctx.settings, ctx.db))
        click.echo(
            f"version {result.version}: {result.reservations} reservation(s), "
            f"{result.detail} ({result.seconds:.2f} s)"
        )
        return
    logs.configure(ctx.settings.log_format)
    reconciler.Reconciler(ctx.settings, ctx.db).run(stop=reconciler.parent_gone(parent))


@main.command()
@click.option(
    "--events-days",
    type=click.IntRange(min=0),
    help="delete events older than this; 0 keeps them  [default: event_retention_days]",
)
@click.option(
    "--boots-days",
    type=click.IntRange(min=0),
    help="delete boot records this long after their token expired; 0 keeps them  "
    "[default: boot_retention_days]",
)
@pass_ctx
def prune(ctx: Ctx, /, events_days: int | None, boots_days: int | None) -> None:
    """Delete old events and boot records (run daily; brains sharing a database may
    all run it)."""
    s = ctx.settings
    events_days = s.event_retention_days if events_days is None else events_days
    boots_days = s.boot_retention_days if boots_days is None else boots_days
    done = _run(lambda: inventory.prune(ctx.db, utcnow(), events_days, boots_days))

    def kept(days: int) -> str:
        return f"older than {days} day{'' if days == 1 else 's'}" if days else "kept forever"

    click.echo(f"deleted {done.events} event(s) ({kept(events_days)})")
    click.echo(f"deleted {done.boots} boot record(s) ({kept(boots_days)})")


# --- tokens --------------------------------------------------------------------------


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True)
@click.option(
    "--scope",
    type=click.Choice(TOKEN_SCOPES),
    default="read",
    show_default=True,
    help="read: every GET; write: everything; lease: only posting lease events (the DHCP "
    "hooks' token)",
)
@click.option("--expires-days", type=int, default=None)
@click.option("--quiet", "-q", is_flag=True, help="Print only the token.")
@pass_ctx
def token_create(ctx: Ctx, /, name: str, scope: str, expires_days: int | None, quiet: bool) -> None:
    """Create a token and print it (once: only its hash is kept)."""
    data = _run(lambda: schemas.TokenIn(name=name, scope=scope, expires_in_days=expires_days))
    t, secret_token = _run(lambda: inventory.create_token(ctx.db, ctx.secret(), data, ACTOR))
    if quiet:
        click.echo(secret_token)
    else:
        click.echo(f"token {t.name} ({t.prefix}, scope {t.scope}); shown only now:")
        click.echo(f"  {secret_token}")


@token.command("list")
@output_option("table")
@pass_ctx
def token_list(ctx: Ctx, /, output: str, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    rows, _ = inventory.list_tokens(ctx.db, schemas.PageQuery(limit=1000))
    _emit(
        [schemas.TokenOut.of(t) for t in rows],
        output,
        as_json,
        ["id", "name", "prefix", "scope", "expires_at", "last_used_at", "revoked_at"],
    )


@token.command("check")
@click.argument("token_file", type=click.File("r"))
@click.option(
    "--scope",
    type=click.Choice(TOKEN_SCOPES),
    help="also require exactly this scope (a write token kept for the lease hook is "
    "then not valid)",
)
@pass_ctx
def token_check(ctx: Ctx, /, token_file: Any, scope: str | None) -> None:
    """Exit 0 if the token in TOKEN_FILE opens this inventory, 1 if not.

    Read from a file so the secret stays off the process list. For deployment tools:
    a token file kept from another database (a move from SQLite to PostgreSQL, a
    restored backup) is not a token this inventory knows.
    """
    try:
        principal = inventory.authenticate(
            ctx.db, ctx.secret(), token_file.read().strip(), need=None
        )
    except AuthError as e:
        click.echo(f"token not valid here: {e}", err=True)
        sys.exit(1)
    if scope is not None and principal.scope != scope:
        click.echo(
            f"token not valid here: {principal.name} has scope {principal.scope}, not {scope}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"token {principal.name} (scope {principal.scope}) is valid")


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_ctx
def token_revoke(ctx: Ctx, /, token_id: int) -> None:
    """Revoke a token by id."""
    t = _run(lambda: inventory.revoke_token(ctx.db, token_id, ACTOR))
    click.echo(f"revoked {t.name} ({t.prefix})")


# --- machines ------------------------------------------------------------------------

MACHINE_COLUMNS = ["id", "hostname", "state", "profile", "nics", "address", "tags", "next_boot"]


def _machine_fields(**opts: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None or value == ():
            continue
        if key == "mac":
            out["nics"] = [{"mac": m, "boot": i == 0} for i, m in enumerate(value)]
        elif key == "tag":
            out["tags"] = list(value)
        elif key == "label":
            out["labels"] = list(value)
        elif key == "var":
            bad = [v for v in value if "=" not in v]
            if bad:
                fail(f"--var {bad[0]!r}: expected NAME=VALUE", 2)
            out["variables"] = dict(v.split("=", 1) for v in value)
        else:
            out[key] = value
    return out


def machine_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("--hostname"),
            click.option("--mac", multiple=True, help="repeat for several NICs; first boots"),
            click.option("--uuid"),
            click.option("--serial"),
            click.option("--board-serial"),
            click.option("--manufacturer"),
            click.option("--product"),
            click.option("--asset-tag"),
            click.option("--tag", multiple=True),
            click.option("--state"),
            click.option("--profile"),
            click.option("--network"),
            click.option("--address"),
            click.option("--interface"),
            click.option("--notes"),
            click.option("--label", multiple=True, help="key=value (repeatable; replaces all)"),
            click.option("--var", multiple=True, help="NAME=VALUE template variable (repeatable)"),
        ]
    ):
        fn = opt(fn)
    return fn


@main.group()
def machine() -> None:
    """Machines in the inventory."""


def _machine_id(ctx: Ctx, ref: str) -> int:
    """The id of the machine ``ref`` names: digits are an id; else the machine with that
    MAC, UUID or hostname (tried in this order: each is unique)."""
    if ref.isdecimal():
        return int(ref)
    queries: list[dict[str, str]] = []
    for key, canonical in (
        ("mac", identity.canonical_mac),
        ("uuid", identity.canonical_uuid),
        ("hostname", identity.canonical_hostname),
    ):
        try:
            queries.append({key: canonical(ref)})
        except (IdentityError, ValueError):
            continue
    for query in queries:
        rows, _ = inventory.list_machines(ctx.db, schemas.MachineQuery(limit=1, **query))
        if rows:
            return int(rows[0].id)
    fail(f"no machine {ref!r}: not the id, MAC, UUID or hostname of any machine", 2)


@machine.command("add")
@machine_options
@output_option("table")
@pass_ctx
def machine_add(ctx: Ctx, /, output: str, as_json: bool, **opts: Any) -> None:
    """Add a machine."""
    data = _run(lambda: schemas.MachineCreate.model_validate(_machine_fields(**opts)))
    m = _run(lambda: inventory.create_machine(ctx.db, data, ACTOR))
    _emit(
        schemas.MachineOut.of(inventory.get_machine(ctx.db, m.id), reveal=True),
        output,
        as_json,
        MACHINE_COLUMNS,
    )


@machine.command("edit")
@click.argument("machine", metavar="MACHINE")
@machine_options
@output_option("table")
@pass_ctx
def machine_edit(ctx: Ctx, /, machine: str, output: str, as_json: bool, **opts: Any) -> None:
    """Change the given fields of a machine (--mac replaces its NICs, --tag its tags).

    MACHINE is an id, a MAC, a UUID or a hostname."""
    machine_id = _machine_id(ctx, machine)
    data = _run(lambda: schemas.MachineUpdate.model_validate(_machine_fields(**opts)))
    _run(lambda: inventory.update_machine(ctx.db, machine_id, data, None, ACTOR))
    _emit(
        schemas.MachineOut.of(inventory.get_machine(ctx.db, machine_id), reveal=True),
        output,
        as_json,
        MACHINE_COLUMNS,
    )


@machine.command("list")
@click.option("--mac")
@click.option("--uuid")
@click.option("--serial")
@click.option("--hostname")
@click.option("--tag")
@click.option("--state")
@click.option("--limit", type=int, default=1000)
@output_option("table")
@pass_ctx
def machine_list(ctx: Ctx, /, output: str, as_json: bool, **filters: Any) -> None:
    """List machines, filtered."""
    q = _run(
        lambda: schemas.MachineQuery.model_validate(
            {k: v for k, v in filters.items() if v is not None}
        )
    )
    rows, _ = inventory.list_machines(ctx.db, q)
    columns = [*MACHINE_COLUMNS, "power", "bmc_error"]
    _emit([schemas.MachineOut.of(m) for m in rows], output, as_json, columns)


@machine.command("show")
@click.argument("machine", metavar="MACHINE")
@output_option("json")
@pass_ctx
def machine_show(ctx: Ctx, /, machine: str, output: str, as_json: bool) -> None:
    """Show one machine (MACHINE: an id, a MAC, a UUID or a hostname)."""
    machine_id = _machine_id(ctx, machine)
    m = _run(lambda: inventory.get_machine(ctx.db, machine_id))
    _emit(schemas.MachineOut.of(m, reveal=True), output, as_json)


def _echo_stages(a: schemas.BootAttemptOut) -> None:
    """A boot attempt's stages, one a line, and the fetches never seen."""
    for st in a.stages:
        click.echo(f"  +{st.after_start_s:8.1f} s  {st.stage:<10} {st.detail}")
    if a.not_seen:
        click.echo(f"  (no fetch on record: {', '.join(a.not_seen)})")


@machine.command("boots")
@click.argument("host")
@click.option("--limit", type=click.IntRange(1, 100), default=5, help="the last N attempts")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def machine_boots(ctx: Ctx, /, host: str, limit: int, as_json: bool) -> None:
    """The machine's last boot attempts (HOST: an id, MAC, UUID or hostname)."""
    machine_id = _machine_id(ctx, host)
    attempts = _run(lambda: funnel.machine_boots(ctx.db, ctx.settings, machine_id, limit, utcnow()))
    if as_json:
        _emit(attempts, "json", True)
        return
    if not attempts:
        click.echo(f"machine {machine_id} has no recorded boot attempts")
    for a in attempts:
        click.echo(
            f"{a.started_at:%Y-%m-%d %H:%M:%S}Z  {a.status:<11} {a.profile or '-'} "
            f"({a.step})  boot {a.boot_id or '-'}  {a.duration_s:.1f} s"
        )
        _echo_stages(a)
        click.echo(f"  {a.summary}")


_log = logging.getLogger("bootbrain.cli")


@main.group()
def boots() -> None:
    """The boot funnel: stuck attempts, and the nginx assets log it attributes."""


@boots.command("stuck")
@click.option("--limit", type=click.IntRange(1, 1000), default=100)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--record", is_flag=True, help="also record a boot.stuck event for each (once an attempt)"
)
@pass_ctx
def boots_stuck(ctx: Ctx, /, limit: int, as_json: bool, record: bool) -> None:
    """Boot attempts stuck now, and the last stage each reached."""
    if record:
        stuck, new = _run(lambda: funnel.record_stuck(ctx.db, ctx.settings, utcnow()))
        stuck = stuck[:limit]
        click.echo(f"recorded {new} new {funnel.STUCK_EVENT} event(s)", err=True)
    else:
        stuck = _run(lambda: funnel.stuck_boots(ctx.db, ctx.settings, limit, utcnow()))
    if as_json:
        _emit(stuck, "json", True)
        return
    for a in stuck:
        click.echo(f"machine {a.machine_id} ({a.profile}, boot {a.boot_id}): {a.summary}")
    click.echo(f"{len(stuck)} stuck")


def watch_stuck_once(db: Database, settings: Settings) -> int:
    """One pass of the stuck-boot watcher: events for newly stuck attempts, the gauge;
    how many are stuck."""
    stuck, new = funnel.record_stuck(db, settings, utcnow())
    host_metrics.metrics().boots_stuck.set(len(stuck))
    if new:
        _log.warning("%d boot attempt(s) newly stuck (%d stuck in all)", new, len(stuck))
    return len(stuck)


@boots.command("watch")
@click.option("--parent", type=int, hidden=True, help="Exit when this process has (serve's).")
@pass_ctx
def boots_watch(ctx: Ctx, /, parent: int | None) -> None:
    """Every boot_stuck_check_interval seconds: record a boot.stuck event for each newly
    stuck attempt and set the bootbrain_boots_stuck gauge. `bootbrain serve` runs it."""
    logs.configure(ctx.settings.log_format)
    interval = ctx.settings.boot_stuck_check_interval or 60.0
    gone = reconciler.parent_gone(parent)
    path = sqlite_path(ctx.settings.database_url)
    while not gone():
        try:
            if ctx._services is None and path is not None and not Path(path).exists():
                # Started after the file was removed: connecting now would create an
                # empty one where serve refuses to serve from (see db._FileWatch).
                _log.warning("no database file at %s; stuck-boot watcher waiting", path)
            else:
                watch_stuck_once(ctx.db, ctx.settings)
        except DatabaseError:
            _log.exception("stuck-boot watcher pass failed; retrying")
        waited = 0.0
        while waited < interval and not gone():
            time.sleep(min(1.0, interval - waited))
            waited += 1.0


@boots.command("ingest")
@click.argument("log", type=click.File("r", encoding="utf-8", errors="replace"))
@pass_ctx
def boots_ingest(ctx: Ctx, /, log: Any) -> None:
    """Read nginx's bootbrain_assets JSON log (or - for stdin): each kernel and initrd
    fetch, attributed to its boot. A line read again is stored once."""
    fetches, skipped = [], 0
    for line in log:
        if not line.strip():
            continue
        found = funnel.parse_nginx_line(line)
        if found is None:
            skipped += 1
        else:
            fetches.append(found)
    new = _run(lambda: funnel.record_asset_fetches(ctx.db, fetches))
    click.echo(f"{new} new asset fetch(es), {len(fetches) - new} seen before, {skipped} skipped")


@machine.command("delete")
@click.argument("machine", metavar="MACHINE")
@pass_ctx
def machine_delete(ctx: Ctx, /, machine: str) -> None:
    """Delete a machine (MACHINE: an id, a MAC, a UUID or a hostname)."""
    machine_id = _machine_id(ctx, machine)
    _run(lambda: inventory.delete_machine(ctx.db, machine_id, None, ACTOR))
    click.echo(f"deleted machine {machine_id}")


@machine.command("next-boot")
@click.argument("machine", metavar="MACHINE")
@click.option("--profile", help="profile to boot once; omit with --cancel")
@click.option("--expires-in", type=int, help="seconds until the action lapses")
@click.option("--then-state", help="state once the booted OS reports completion")
@click.option("--cancel", is_flag=True)
@pass_ctx
def machine_next_boot(
    ctx: Ctx,
    machine: str,
    profile: str | None,
    expires_in: int | None,
    then_state: str | None,
    cancel: bool,
) -> None:
    """Set (or --cancel) a machine's one-shot next boot (MACHINE: an id, a MAC, a UUID
    or a hostname)."""
    machine_id = _machine_id(ctx, machine)
    if cancel:
        _run(lambda: inventory.cancel_next_boot(ctx.db, machine_id, ACTOR))
        click.echo(f"cancelled the next boot of machine {machine_id}")
        return
    if not profile:
        fail("--profile is required (or --cancel)", 2)
    data = _run(
        lambda: schemas.NextBootIn(
            profile=profile, expires_in=expires_in, complete_state=then_state
        )
    )
    m = _run(
        lambda: inventory.set_next_boot(
            ctx.db, machine_id, data, ctx.settings.next_boot_default_ttl, ACTOR
        )
    )
    nb = inventory.get_machine(ctx.db, m.id).next_boot
    assert nb is not None
    click.echo(
        f"machine {machine_id} boots {profile} next (until {nb.expires_at:%Y-%m-%d %H:%M} "
        f"UTC, or until the booted OS reports completion)"
    )


@machine.group("bmc")
def machine_bmc() -> None:
    """A machine's BMC (IPMI or Redfish): address and credentials."""


@machine_bmc.command("set")
@click.argument("host")
@click.option("--kind", type=click.Choice(["ipmi", "redfish"]), required=True)
@click.option("--address", required=True, help="host or IP (Redfish: http://host opts out of TLS)")
@click.option("--port", type=int, help="default 623 (IPMI), 443 (Redfish)")
@click.option("--username", required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    envvar="BOOTBRAIN_BMC_PASSWORD",
    help="prompted for, or from BOOTBRAIN_BMC_PASSWORD (never on the command line)",
)
@click.option("--system-id", help="Redfish system id (default: the only system)")
@click.option("--no-verify-tls", is_flag=True, help="do not verify the Redfish BMC's certificate")
@pass_ctx
def machine_bmc_set(
    ctx: Ctx,
    /,
    host: str,
    kind: str,
    address: str,
    port: int | None,
    username: str,
    password: str,
    system_id: str | None,
    no_verify_tls: bool,
) -> None:
    """Set a machine's BMC (HOST: hostname or id). The password is stored encrypted."""
    data = _run(
        lambda: schemas.BmcIn(
            kind=kind,
            address=address,
            port=port,
            username=username,
            password=password,
            system_id=system_id,
            verify_tls=not no_verify_tls,
        )
    )
    mid = _machine_id(ctx, host)
    _emit(_run(lambda: bmc_records.set_bmc(ctx.db, ctx.secret(), mid, data, ACTOR)), "json", True)


@machine_bmc.command("show")
@click.argument("host")
@pass_ctx
def machine_bmc_show(ctx: Ctx, /, host: str) -> None:
    """Show a machine's BMC (never its password)."""
    mid = _machine_id(ctx, host)
    _emit(_run(lambda: bmc_records.get_bmc(ctx.db, mid)), "json", True)


@machine.command("power")
@click.argument("host")
@click.argument("action", type=click.Choice(["on", "off", "cycle", "status", "network-boot-once"]))
@pass_ctx
def machine_power(ctx: Ctx, /, host: str, action: str) -> None:
    """Ask a machine's BMC for its power state, or power it on, off, or cycle it."""
    mid = _machine_id(ctx, host)
    if action == "status":
        out = _run(lambda: power.status(ctx.db, ctx.secret(), mid))
    else:
        out = _run(lambda: power.act(ctx.db, ctx.secret(), mid, action, ACTOR))
    extra = f", next boot {out.boot_device}" if out.boot_device else ""
    click.echo(f"{host} ({out.bmc}): power {out.power}{extra}")


REINSTALL_COLUMNS = ["machine_id", "hostname", "status", "bmc", "power", "detail"]


@machine.command("reinstall")
@click.argument("hosts", nargs=-1)
@click.option("--tag", help="every machine with this tag")
@click.option("--rule", help="every machine this rule's manufacturer, product and tags match")
@click.option("--profile", required=True, help="profile to boot once")
@click.option("--expires-in", "--expires", "expires_in", type=int, help="seconds until it lapses")
@click.option("--then-state", help="state once the booted OS reports completion")
@click.option("--power-on/--no-power-on", default=True, help="power on machines that are off")
@click.option("--concurrency", "-k", type=click.IntRange(1, 32), default=4, show_default=True,
              help="BMC sequences in flight at most")
@click.option("--max-failures", "-n", type=click.IntRange(1), default=1, show_default=True,
              help="start no more machines after this many failures")
@output_option("table")
@pass_ctx
def machine_reinstall(
    ctx: Ctx, /, hosts: tuple[str, ...], tag: str | None, rule: str | None, profile: str,
    expires_in: int | None, then_state: str | None, power_on: bool, concurrency: int,
    max_failures: int, output: str, as_json: bool,
) -> None:  # fmt: skip
    """Reinstall now: set each machine's one-shot next boot, make its next boot a network
    boot on its BMC and power-cycle it (HOST: an id, MAC, UUID or hostname; or --tag,
    or --rule). Exits 1 if any machine failed or was skipped."""
    from bootbrain.bmc import reinstall as engine

    if sum(map(bool, (hosts, tag, rule))) != 1:
        fail("name the machines one way: HOST…, --tag or --rule", 2)
    req = _run(
        lambda: schemas.ReinstallIn(
            profile=profile, expires_in=expires_in, complete_state=then_state, power_on=power_on
        )
    )
    if hosts:
        chosen = [(mid, h) for h in hosts for mid in [_machine_id(ctx, h)]]
    else:
        chosen = _run(lambda: reinstalls.select_machines(ctx.db, None, tag, rule))
    if not chosen:
        fail("no machine matches", 2)
    with _reinstall_bar(len(chosen)) as done:
        out = _run(
            lambda: engine.reinstall_many(
                ctx.db, ctx.secret(), chosen, req, ctx.settings.next_boot_default_ttl, ACTOR,
                concurrency, max_failures, on_done=done,
            )
        )
    _emit(out.items, output, as_json, REINSTALL_COLUMNS)
    summary = ", ".join(f"{n} {k}" for k, n in out.counts.items() if n)
    click.echo(summary + (f"; {out.stopped}" if out.stopped else ""), err=True)
    if out.counts["failed"] or out.counts["skipped"]:
        sys.exit(1)


@contextmanager
def _reinstall_bar(total: int) -> Iterator[Callable[[schemas.ReinstallOut], None]]:
    """A bar advanced as each machine finishes (on a terminal; else one line each)."""
    if not sys.stderr.isatty():
        yield lambda r: click.echo(f"{r.hostname or r.machine_id}: {r.status}", err=True)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("reinstalling", total=total)
        yield lambda r: bar.advance(task)


@machine.command("config")
@click.argument("machine", metavar="MACHINE")
@click.option("--profile", help="render with this profile (default: what it boots now)")
@click.option(
    "--document",
    type=click.Choice(
        [
            "meta-data",
            "user-data",
            "vendor-data",
            "network-config",
            "metadata.json",
            "ignition.json",
        ]
    ),
    help="print only this document, as the booted OS would get it",
)
@click.option("--base-url", default=None, help="default: public_url, else http://bootbrain")
@pass_ctx
def machine_config(
    ctx: Ctx, /, machine: str, profile: str | None, document: str | None, base_url: str | None
) -> None:
    """Print the documents the booted OS would be served now (meta-data, user-data,
    vendor-data, network-config, metadata.json, and ignition.json when the profile has
    an Ignition config); records nothing. The token in URLs is
    a placeholder. MACHINE is an id, a MAC, a UUID or a hostname."""
    machine_id = _machine_id(ctx, machine)
    out = _run(
        lambda: documents.preview(
            ctx.db,
            ctx.settings,
            machine_id,
            profile,
            (base_url or ctx.settings.public_url or "http://bootbrain").rstrip("/"),
            reveal=True,
        )
    )
    texts = {
        "meta-data": out.meta_data,
        "user-data": out.user_data or "",
        "vendor-data": out.vendor_data or "",
        "network-config": out.network_config,
        "metadata.json": json.dumps(out.metadata, indent=2) + "\n",
        **({"ignition.json": out.ignition} if out.ignition is not None else {}),
    }
    click.echo(
        f"# machine {machine_id}: step {out.step}, profile {out.profile or '(none)'}", err=True
    )
    click.echo(f"# {out.reason}", err=True)
    for variable in out.variables:
        click.echo(f"# {variable.describe()}", err=True)
    if document:
        if document not in texts:
            fail(f"the profile {out.profile or '(none)'} has no Ignition config", 1)
        click.echo(texts[document], nl=False)
        return
    for name, text in texts.items():
        click.echo(f"# ---------- {name} ----------")
        click.echo(text, nl=not text.endswith("\n") if text else True)


# --- profiles, networks, rules ---------------------------------------------------------


def _load_doc(path: str | None, inline: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if path:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text()
        loaded = yaml.safe_load(raw)
        if not isinstance(loaded, dict):
            fail(f"{path}: expected a mapping of fields")
        doc.update(loaded)
    doc.update({k: v for k, v in inline.items() if v not in (None, ())})
    return doc


def _resource_group(
    name: str,
    plural: str,
    model_in: type[BaseModel],
    model_update: type[BaseModel],
    out: Any,
    columns: list[str],
    fns: dict[str, Callable[..., Any]],
    reveal: dict[str, Any] | None = None,
) -> click.Group:
    # Listings withhold secret fields; one item on this host's CLI shows them.
    shown = reveal or {}

    @click.group(name=name, help=f"{plural.capitalize()}.")
    def group() -> None:
        pass

    @group.command("add")
    @click.option("--file", "-f", "path", help="YAML/JSON file with the fields ('-' = stdin)")
    @click.option("--set", "sets", multiple=True, help="field=value (repeatable)")
    @output_option("table")
    @pass_ctx
    def add(
        ctx: Ctx, /, path: str | None, sets: tuple[str, ...], output: str, as_json: bool
    ) -> None:
        doc = _load_doc(path, _pairs(sets))
        data = _run(lambda: model_in.model_validate(doc))
        obj = _run(lambda: fns["create"](ctx.db, data, ACTOR))
        _emit(out.of(fns["get"](ctx.db, obj.id), **shown), output, as_json, columns)

    @group.command("edit")
    @click.argument("item_id", type=int)
    @click.option("--file", "-f", "path")
    @click.option("--set", "sets", multiple=True, help="field=value (repeatable)")
    @output_option("table")
    @pass_ctx
    def edit(
        ctx: Ctx,
        /,
        item_id: int,
        path: str | None,
        sets: tuple[str, ...],
        output: str,
        as_json: bool,
    ) -> None:
        doc = _load_doc(path, _pairs(sets))
        data = _run(lambda: model_update.model_validate(doc))
        _run(lambda: fns["update"](ctx.db, item_id, data, None, ACTOR))
        _emit(out.of(fns["get"](ctx.db, item_id), **shown), output, as_json, columns)

    @group.command("list")
    @output_option("table")
    @pass_ctx
    def list_(ctx: Ctx, /, output: str, as_json: bool) -> None:
        rows, _ = fns["list"](ctx.db, schemas.PageQuery(limit=1000))
        _emit([out.of(r) for r in rows], output, as_json, columns)

    @group.command("show")
    @click.argument("item_id", type=int)
    @output_option("json")
    @pass_ctx
    def show(ctx: Ctx, /, item_id: int, output: str, as_json: bool) -> None:
        _emit(out.of(_run(lambda: fns["get"](ctx.db, item_id)), **shown), output, as_json)

    @group.command("delete")
    @click.argument("item_id", type=int)
    @pass_ctx
    def delete(ctx: Ctx, /, item_id: int) -> None:
        _run(lambda: fns["delete"](ctx.db, item_id, None, ACTOR))
        click.echo(f"deleted {name} {item_id}")

    for cmd, doc in (
        (add, f"Add a {name}."),
        (edit, f"Change a {name}."),
        (list_, f"List {plural}."),
        (show, f"Show a {name}."),
        (delete, f"Delete a {name}."),
    ):
        cmd.help = doc
    return group


def _pairs(sets: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set {item!r}: expected field=value", 2)
        try:
            out[key] = (
                json.loads(value) if value[:1] in "[{" or value.lstrip("-").isdigit() else value
            )
        except json.JSONDecodeError:
            out[key] = value
    return out


main.add_command(
    _resource_group(
        "profile",
        "profiles",
        schemas.ProfileIn,
        schemas.ProfileUpdate,
        schemas.ProfileOut,
        ["id", "name", "kind", "kernel", "chain_url", "local_method", "complete_state"],
        {
            "create": inventory.create_profile,
            "get": inventory.get_profile,
            "list": inventory.list_profiles,
            "update": inventory.update_profile,
            "delete": inventory.delete_profile,
        },
        reveal={"reveal": True},
    )
)
main.add_command(
    _resource_group(
        "network",
        "networks",
        schemas.NetworkIn,
        schemas.NetworkUpdate,
        schemas.NetworkOut,
        ["id", "name", "cidr", "gateway", "dns", "domain", "vlan_id"],
        {
            "create": inventory.create_network,
            "get": inventory.get_network,
            "list": inventory.list_networks,
            "update": inventory.update_network,
            "delete": inventory.delete_network,
        },
    )
)
main.add_command(
    _resource_group(
        "rule",
        "rules",
        schemas.RuleIn,
        schemas.RuleUpdate,
        schemas.RuleOut,
        [
            "id",
            "name",
            "priority",
            "manufacturer",
            "product",
            "buildarch",
            "platform",
            "tags",
            "profile",
        ],
        {
            "create": inventory.create_rule,
            "get": inventory.get_rule,
            "list": inventory.list_rules,
            "update": inventory.update_rule,
            "delete": inventory.delete_rule,
        },
    )
)
main.add_command(
    _resource_group(
        "group",
        "groups",
        schemas.GroupIn,
        schemas.GroupUpdate,
        schemas.GroupOut,
        ["id", "name", "state", "network", "tags", "labels", "variables"],
        {
            "create": groups.create_group,
            "get": groups.get_group,
            "list": groups.list_groups,
            "update": groups.update_group,
            "delete": groups.delete_group,
        },
    )
)


# --- import / export / demo / render -----------------------------------------------------


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "yaml"]), default="auto")
@pass_ctx
def import_(ctx: Ctx, /, path: str, fmt: str) -> None:
    """Import machines (and networks, profiles, rules) from CSV or YAML: all or nothing."""
    try:
        with _progress_bar("importing") as progress:
            counts = transfer.import_file(ctx.db, Path(path), fmt, ACTOR, progress)
    except ImportRowsError as e:
        for p in e.problems:
            click.secho(f"{path}:{p.line}: {p.field}: {p.message}", fg="red", err=True)
        fail(f"nothing imported: {len(e.problems)} bad row(s)", 2)
    click.echo("imported " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@main.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--prune", is_flag=True, help="Also delete what the file does not name.")
@pass_ctx
def apply_(ctx: Ctx, /, path: str, dry_run: bool, prune: bool) -> None:
    """Make the inventory what a YAML file (as export writes it) says: all or nothing."""
    from bootbrain.inventory import apply as inventory_apply

    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        if dry_run:
            click.echo(inventory_apply.plan(ctx.db, text, prune).diff(), nl=False)
            return
        # Planned and carried out in one transaction: nobody's change can slip between.
        with _stages_bar() as progress:
            plan = inventory_apply.apply(ctx.db, text, ACTOR, prune, None, progress)
        click.echo(plan.diff(), nl=False)
        if not plan.changes:
            return
    except ImportRowsError as e:
        for p in e.problems:
            click.secho(f"{path}:{p.line}: {p.field}: {p.message}", fg="red", err=True)
        fail(f"nothing applied: {len(e.problems)} problem(s)", 2)
    except BootbrainError as e:
        fail(f"nothing applied: {e}", 1)
    n = plan.counts()
    click.echo(f"applied: {n['create']} created, {n['update']} changed, {n['delete']} deleted")


@main.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "csv"]), default="yaml")
@pass_ctx
def export(ctx: Ctx, /, fmt: str) -> None:
    """Export the inventory (YAML: everything; CSV: machines) to stdout."""
    click.echo(transfer.export(ctx.db, fmt), nl=False)


@main.command()
@pass_ctx
def demo(ctx: Ctx) -> None:
    """Create a small example inventory to look at."""
    counts = _run(lambda: transfer.load_demo(ctx.db, ACTOR))
    click.echo("demo inventory: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@main.command()
@click.option("--mac")
@click.option("--uuid")
@click.option("--serial")
@click.option("--manufacturer")
@click.option("--product")
@click.option("--buildarch", default="x86_64", show_default=True)
@click.option("--platform", default="efi", show_default=True)
@click.option("--base-url", default=None, help="default: public_url, else http://bootbrain")
@pass_ctx
def render(
    ctx: Ctx,
    mac: str | None,
    uuid: str | None,
    serial: str | None,
    manufacturer: str | None,
    product: str | None,
    buildarch: str,
    platform: str,
    base_url: str | None,
) -> None:
    """Print the script a machine would get now, and why (records nothing); exit
    status 1 when its profile fails to render (the error script is printed)."""
    try:
        facts = Facts(
            uuid=identity.canonical_uuid(uuid) if uuid else None,
            mac=identity.canonical_mac(mac) if mac else None,
            serial=serial,
            board_serial=None,
            asset=None,
            manufacturer=manufacturer,
            product=product,
            buildarch=buildarch,
            platform=platform,
        )
    except IdentityError as e:
        fail(str(e), 2)
    out = flow.preview(
        ctx.db,
        ctx.settings,
        facts,
        (base_url or ctx.settings.public_url or "http://bootbrain").rstrip("/"),
    )
    click.echo(
        f"# machine {out.machine_id or '(not in the inventory)'}: step {out.step}, "
        f"profile {out.profile or '(local boot)'}" + (f", rule {out.rule}" if out.rule else ""),
        err=True,
    )
    click.echo(f"# {out.reason}", err=True)
    for variable in out.variables:
        click.echo(f"# {variable.describe()}", err=True)
    if out.problem is not None:
        click.echo(f"# render failed: {out.problem.describe()}", err=True)
    click.echo(out.script, nl=False)
    if out.problem is not None:
        sys.exit(1)  # what is printed is the error script the machine would get


@main.command()
@click.argument("host")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--base-url", default=None, help="default: public_url, else http://bootbrain")
@pass_ctx
def explain(ctx: Ctx, /, host: str, output: str, base_url: str | None) -> None:
    """What HOST would boot now and why (the boot preview), and how its last boot went
    (the boot funnel). HOST: an id, MAC, UUID or hostname. Records nothing."""
    machine_id = _machine_id(ctx, host)
    now = utcnow()
    attempts = _run(lambda: funnel.machine_boots(ctx.db, ctx.settings, machine_id, 1, now))
    base = (base_url or ctx.settings.public_url or "http://bootbrain").rstrip("/")
    preview = _run(lambda: flow.preview_machine(ctx.db, ctx.settings, machine_id, None, None, base))
    out = schemas.ExplainOut(
        machine_id=machine_id, now=preview, last_boot=next(iter(attempts), None)
    )
    if output == "json":
        _emit(out, "json", True)
        return
    rule = f", rule {preview.rule}" if preview.rule else ""
    click.echo(
        f"machine {machine_id} would boot now: step {preview.step}, "
        f"profile {preview.profile or '(local boot)'}{rule}"
    )
    click.echo(f"  why: {preview.reason}")
    if preview.problem is not None:
        click.echo(f"  render fails: {preview.problem.describe()}")
    a = out.last_boot
    if a is None:
        click.echo("last boot: none on record")
        return
    click.echo(
        f"last boot: {a.status}, started {a.started_at:%Y-%m-%d %H:%M:%S}Z, "
        f"{a.profile or '-'} ({a.step}), boot {a.boot_id or '-'}, {a.duration_s:.1f} s"
    )
    _echo_stages(a)
    click.echo(f"  last stage: {a.summary}")
    if a.status == "stuck":
        click.echo(f"  STUCK: no new stage within {a.stuck_after_s} s")


integration_commands.register(main, pass_ctx)

__all__ = ["Ctx", "main"]
