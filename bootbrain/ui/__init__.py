"""The web dashboard at ``/ui/``: server-rendered pages over the same services the API
uses (the inventory, the boot funnel, the boot preview, the BMC power service).

Transport only. Who is asking is a server-side session opened with an API token
(:mod:`bootbrain.inventory.sessions`); the browser holds its random key in Flask's
signed cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` under HTTPS). Every form
carries flask-wtf's CSRF token, checked here for every POST of this blueprint only (the
API and the machine routes take no cookies, so CSRFProtect's app-wide hook would only
get in their way). A read token sees; a write token also acts.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException
from wtforms import ValidationError as CsrfInvalid

from bootbrain import db, inventory, schemas
from bootbrain.bmc import power, reinstall
from bootbrain.errors import (
    AuthError,
    BmcError,
    ConflictError,
    FieldError,
    ForbiddenError,
    NotFoundError,
    StaleError,
)
from bootbrain.inventory import bmc as bmc_records
from bootbrain.inventory import fleet as fleet_reads
from bootbrain.inventory import funnel, sessions
from bootbrain.machine import flow
from bootbrain.models import utcnow
from bootbrain.services import Services
from bootbrain.vocabulary import MACHINE_STATES

POWER_ACTIONS = ("on", "off", "cycle")
#: Endpoints an anonymous browser may reach.
_OPEN = frozenset({"ui.login", "ui.static"})

bp = Blueprint(
    "ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static"
)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, ``Secure`` whenever the request came over HTTPS (also
    behind a trusted proxy that says so), not only when configured."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def init_app(app: Flask, services: Services) -> None:
    # Its own key, derived from the server secret: a cookie signature reveals nothing
    # about the key API tokens are hashed with.
    app.secret_key = hmac.new(
        services.settings.secret(), b"bootbrain ui session cookie", hashlib.sha256
    ).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="bootbrain_ui",
        SESSION_COOKIE_PATH="/ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        # The token lives as long as the server-side session (sessions.SESSION_LIFETIME).
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.session_interface = _SessionInterface()
    app.register_blueprint(bp)


def _services() -> Services:
    found: Services = current_app.extensions["bootbrain"]
    return found


def _actor() -> str:
    return f"token:{g.principal.name}"


@bp.app_template_global()
def csrf_token() -> str:
    return str(generate_csrf())


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("ago")
def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    s = int((utcnow() - value).total_seconds())
    if s < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    """Anonymous → the login page; then every POST must carry the CSRF token."""
    g.principal = None
    # Like the API's writes: wait a few seconds for a lock, then answer 503.
    db.set_lock_wait(db.API_LOCK_WAIT_S)
    if request.endpoint not in _OPEN:
        key = session.get("key")
        if not isinstance(key, str):
            return _to_login()
        found = _services()
        try:
            g.principal = sessions.session_principal(found.db, found.settings.secret(), key)
        except AuthError:
            session.clear()
            return _to_login()
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"))
        except CsrfInvalid as e:
            raise CSRFError(str(e)) from None
    return None


@bp.teardown_request
def _default_lock_waits(_exc: BaseException | None) -> None:
    db.set_lock_wait(None)


def _to_login() -> ResponseReturnValue:
    if request.method != "GET":
        abort(401)
    return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))


def _need_write() -> None:
    if g.principal.scope != "write":
        abort(403, f"token {g.principal.name} has read scope: this needs write")


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard: never an open redirect elsewhere."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/"):
        return url_for("ui.fleet")
    return target or url_for("ui.fleet")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with an API token: read scope shows, write scope acts too."""
    error = None
    if request.method == "POST":
        found = _services()
        try:
            key, principal = sessions.start_session(
                found.db, found.settings.secret(), request.form.get("token", "").strip()
            )
        except (AuthError, ForbiddenError) as e:
            error = f"Login refused: {e}"
        else:
            if isinstance(old := session.get("key"), str):  # logging in again: one session
                sessions.end_session(found.db, found.settings.secret(), old)
            session.clear()  # a new CSRF token with the new login
            session["key"] = key
            flash(f"Logged in as {principal.name} ({principal.scope}).")
            return redirect(_safe_next(request.args.get("next")))
    return render_template("ui/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    found = _services()
    sessions.end_session(found.db, found.settings.secret(), session["key"])
    session.clear()
    return redirect(url_for("ui.login"))


@bp.get("/")
def fleet() -> str:
    """The fleet at a glance: stuck machines first, states, the last hour's boots."""
    found = _services()
    now = utcnow()
    stuck = funnel.stuck_boots(found.db, found.settings, 50, now)
    names = {
        m.id: m.hostname
        for m in (inventory.get_machine(found.db, b.machine_id) for b in stuck[:50])
    }
    return render_template(
        "ui/fleet.html",
        fleet=fleet_reads.fleet(found.db, now),
        stuck=stuck,
        names=names,
        states=MACHINE_STATES,
    )


@bp.get("/machines")
def machines() -> str:
    """The machine list: filters, and keyset paging by id."""
    args = {k: v.strip() for k, v in request.args.items() if v.strip()}
    try:
        q = fleet_reads.MachineSearch.model_validate(args)
    except ValidationError as e:
        abort(400, f"Bad filter: {_field_errors(e)}")
    found = _services()
    rows, after = fleet_reads.search_machines(found.db, q)
    filters = {k: v for k, v in args.items() if k != "after"}
    return render_template(
        "ui/machines.html",
        machines=rows,
        next_after=after,
        filters=filters,
        states=MACHINE_STATES,
        profiles=fleet_reads.profile_names(found.db),
        first_page=q.after is None,
    )


@bp.get("/machines/<int:machine_id>")
def machine(machine_id: int) -> str:
    """A machine: identity, NICs, network, next boot, its boots, events, preview, power."""
    found = _services()
    m = inventory.get_machine(found.db, machine_id)
    settings = found.settings
    try:
        bmc: schemas.BmcOut | None = bmc_records.get_bmc(found.db, machine_id)
    except NotFoundError:
        bmc = None
    power_state: str | None = None
    if bmc is not None and request.args.get("power"):
        try:
            power_state = power.status(found.db, settings.secret(), machine_id).power
        except BmcError as e:
            power_state = f"unknown: {e}"
    return render_template(
        "ui/machine.html",
        m=m,
        boots=funnel.machine_boots(found.db, settings, machine_id, 10, utcnow()),
        events=fleet_reads.recent_events(found.db, machine_id, 25),
        preview=flow.preview_machine(
            found.db, settings, machine_id, None, None, flow.base_url(settings, request.host_url)
        ),
        bmc=bmc,
        power_state=power_state,
        profiles=fleet_reads.profile_names(found.db),
        states=MACHINE_STATES,
        power_actions=POWER_ACTIONS,
        can_write=g.principal.scope == "write",
    )


def _back(machine_id: int) -> ResponseReturnValue:
    return redirect(url_for("ui.machine", machine_id=machine_id))


def _field_errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())


@bp.post("/machines/<int:machine_id>/next-boot")
def set_next_boot(machine_id: int) -> ResponseReturnValue:
    """Set the machine's one-shot next boot."""
    _need_write()
    form: dict[str, Any] = {
        k: request.form[k] for k in ("profile", "complete_state") if request.form.get(k)
    }
    minutes = request.form.get("expires_in_minutes", "").strip()
    try:
        if minutes:
            form["expires_in"] = int(minutes) * 60
        data = schemas.NextBootIn.model_validate(form)
    except ValueError as e:
        flash(f"Next boot not set: {_field_errors(e) if isinstance(e, ValidationError) else e}")
        return _back(machine_id)
    found = _services()
    try:
        inventory.set_next_boot(
            found.db, machine_id, data, found.settings.next_boot_default_ttl, _actor()
        )
    except FieldError as e:
        flash(f"Next boot not set: {e}")
    else:
        flash(f"Next boot set to {data.profile}.")
    return _back(machine_id)


@bp.post("/machines/<int:machine_id>/next-boot/cancel")
def cancel_next_boot(machine_id: int) -> ResponseReturnValue:
    """Cancel the machine's next boot."""
    _need_write()
    try:
        inventory.cancel_next_boot(_services().db, machine_id, _actor())
    except NotFoundError:
        flash("There was no next boot to cancel.")
    else:
        flash("Next boot cancelled.")
    return _back(machine_id)


@bp.post("/machines/<int:machine_id>/profile")
def change_profile(machine_id: int) -> ResponseReturnValue:
    """Assign a profile (or none) to the machine."""
    _need_write()
    name = request.form.get("profile", "").strip() or None
    try:
        data = schemas.MachineUpdate.model_validate({"profile": name})
        inventory.update_machine(_services().db, machine_id, data, None, _actor())
    except ValidationError as e:
        flash(f"Profile not changed: {_field_errors(e)}")
    except (FieldError, ConflictError, StaleError) as e:
        flash(f"Profile not changed: {e}")
    else:
        flash(f"Profile set to {name}." if name else "Profile removed.")
    return _back(machine_id)


@bp.post("/machines/<int:machine_id>/power")
def power_action(machine_id: int) -> ResponseReturnValue:
    """Power the machine on, off, or cycle it, through its BMC."""
    _need_write()
    action = request.form.get("action", "")
    if action not in POWER_ACTIONS:
        abort(400, f"action: one of {', '.join(POWER_ACTIONS)}")
    found = _services()
    try:
        out = power.act(found.db, found.settings.secret(), machine_id, action, _actor())
    except BmcError as e:
        flash(f"Power {action} failed: {e}")
    else:
        flash(f"Power {action}: the machine is {out.power}.")
    return redirect(url_for("ui.machine", machine_id=machine_id, power=1))


@bp.post("/machines/<int:machine_id>/reinstall")
def reinstall_now(machine_id: int) -> ResponseReturnValue:
    """Reinstall now: the one-shot next boot, network-boot-once and a power cycle."""
    _need_write()
    try:
        data = schemas.ReinstallIn.model_validate(
            {"profile": request.form.get("profile", ""), "power_on": True}
        )
    except ValidationError as e:
        flash(f"Not reinstalled: {_field_errors(e)}")
        return _back(machine_id)
    found = _services()
    try:
        out = reinstall.reinstall(
            found.db,
            found.settings.secret(),
            machine_id,
            data,
            found.settings.next_boot_default_ttl,
            _actor(),
        )
    except (BmcError, ConflictError, FieldError) as e:
        # A failed BMC step has withdrawn the next boot again (the message says so).
        flash(f"Not reinstalled: {e}")
    else:
        flash(f"Reinstall {out.status}: next boot {data.profile}, the machine is {out.power}.")
    return redirect(url_for("ui.machine", machine_id=machine_id, power=1))


@bp.errorhandler(CSRFError)
def _csrf_refused(e: CSRFError) -> tuple[str, int]:
    return render_template("ui/error.html", code=400, detail=f"Refused: {e.description}"), 400


@bp.errorhandler(NotFoundError)
def _not_found(e: NotFoundError) -> tuple[str, int]:
    return render_template("ui/error.html", code=404, detail=str(e)), 404


@bp.errorhandler(HTTPException)
def _http_error(e: HTTPException) -> tuple[str, int]:
    code = e.code or 500
    return render_template("ui/error.html", code=code, detail=e.description), code
