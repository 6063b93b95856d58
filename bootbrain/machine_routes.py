"""Routes booting machines call. Every answer to iPXE is ``#!ipxe`` text with a
Content-Length — never HTML, JSON or a traceback, whatever goes wrong.
"""

from __future__ import annotations

import logging
import random

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy import text

from bootbrain import bootflow, inventory
from bootbrain.boot import render
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.errors import ForbiddenError

log = logging.getLogger(__name__)

bp = Blueprint("machine", __name__)

_rng = random.SystemRandom()
IPXE_MIMETYPE = "text/plain"
#: A request line longer than this is not iPXE talking; answered with a safe script.
MAX_QUERY_BYTES = 4096


def _settings() -> Settings:
    settings: Settings = current_app.config["BOOTBRAIN"]
    return settings


def _db() -> Database:
    db: Database = current_app.extensions["bootbrain.db"]
    return db


def ipxe_response(script: str, status: int = 200) -> Response:
    body = script.encode()
    resp = Response(body, status=status, mimetype=IPXE_MIMETYPE)
    resp.headers["Content-Length"] = str(len(body))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _base_url() -> str:
    return bootflow.base_url(_settings(), request.host_url)


@bp.get("/boot.ipxe")
def bootstrap() -> Response:
    """The constant bootstrap DHCP hands to iPXE."""
    s = _settings()
    return ipxe_response(
        render.render_bootstrap(_base_url(), s.bootstrap_retries, s.bootstrap_backoff, _rng)
    )


@bp.get("/ipxe")
def ipxe() -> Response:
    """The script for this machine, now."""
    raw = request.environ.get("QUERY_STRING", "").encode("latin-1", "replace")
    if len(raw) > MAX_QUERY_BYTES:
        bootflow.count_failure("oversized")
        return ipxe_response(render.render_error("request too long", retry_seconds=None))
    answer = bootflow.answer_ipxe(
        _db(),
        _settings(),
        current_app.extensions["bootbrain.events"],
        raw,
        request.remote_addr,
        _base_url(),
        request.headers.get("User-Agent"),
    )
    return ipxe_response(answer.script)


@bp.post("/boot/<token>/done")
def done(token: str) -> Response:
    """The booted OS reports completion with its per-boot token."""
    report = {k: v[:256] for k, v in list(request.form.items())[:16]}
    try:
        boot = inventory.complete_boot(
            _db(), _settings().secret(), token[:128], report, request.remote_addr
        )
    except ForbiddenError as e:
        log.warning("completion refused from %s: %s", request.remote_addr, e)
        return Response(f"refused: {e}\n", status=403, mimetype="text/plain")
    return Response(f"ok {boot.id}\n", status=200, mimetype="text/plain")


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness and database reachability, for load balancers and the Ansible verify."""
    try:
        with _db().read() as s:
            s.execute(text("SELECT 1"))
    except Exception:
        log.exception("health check: database unreachable")
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")


@bp.get("/metrics")
def metrics() -> Response:
    """Counters in Prometheus text format."""
    writer = current_app.extensions["bootbrain.events"]
    lines = [
        "# TYPE bootbrain_machine_route_failures_total counter",
        *(
            f'bootbrain_machine_route_failures_total{{kind="{k}"}} {v}'
            for k, v in sorted(bootflow.failures.items())
        ),
        "# TYPE bootbrain_events_written_total counter",
        f"bootbrain_events_written_total {writer.written}",
        "# TYPE bootbrain_events_failed_total counter",
        f"bootbrain_events_failed_total {writer.failures}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def is_script_route() -> bool:
    return request.path in ("/ipxe", "/boot.ipxe")


def error_script() -> Response:
    """What a machine gets when answering it raised: a message and a retry."""
    log.exception("failure answering %s", request.path)
    bootflow.count_failure("exception")
    return ipxe_response(render.render_error("boot server error", retry_seconds=15))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
