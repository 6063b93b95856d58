"""Routes booting machines call. Every answer to iPXE is ``#!ipxe`` text with a
Content-Length — never HTML, JSON or a traceback, whatever goes wrong.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from sqlalchemy import text
from werkzeug.wsgi import get_host

from bootbrain import bootflow, inventory
from bootbrain.boot import render
from bootbrain.boot.documents import JSON_DOCUMENT, NOCLOUD_FILES
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


def _no_store(body: bytes, mimetype: str, status: int = 200) -> Response:
    resp = Response(body, status=status, mimetype=mimetype)
    resp.headers["Content-Length"] = str(len(body))
    resp.headers["Cache-Control"] = "no-store"  # per machine, per boot; secrets in some
    return resp


def ipxe_response(script: str, status: int = 200) -> Response:
    return _no_store(script.encode(), IPXE_MIMETYPE, status)


def _base_url() -> str:
    return bootflow.base_url(_settings(), request.host_url)


@bp.get("/boot.ipxe")
def bootstrap() -> Response:
    """The constant bootstrap DHCP hands to iPXE."""
    s = _settings()
    return ipxe_response(
        render.render_bootstrap(_base_url(), s.bootstrap_retries, s.bootstrap_backoff, _rng)
    )


def ipxe_script(
    app: Flask, raw_query: bytes, remote_addr: str | None, host_url: str, user_agent: str | None
) -> str:
    """The script for this machine, now — whatever goes wrong, a valid one."""
    try:
        if len(raw_query) > MAX_QUERY_BYTES:
            bootflow.count_failure("oversized")
            return render.render_error("request too long", retry_seconds=None)
        settings: Settings = app.config["BOOTBRAIN"]
        return bootflow.answer_ipxe(
            app.extensions["bootbrain.db"],
            settings,
            app.extensions["bootbrain.events"],
            raw_query,
            remote_addr,
            bootflow.base_url(settings, host_url),
            user_agent,
        ).script
    except Exception:
        log.exception("failure answering /ipxe")
        bootflow.count_failure("exception")
        return render.render_error("boot server error", retry_seconds=15)


class IpxeFastPath:
    """``GET /ipxe`` answered in plain WSGI, in front of Flask.

    A boot storm is thousands of these in seconds, and Flask's request machinery was
    about a third of each one's cost (bench/ipxe_storm.py: 630 → 890 req/s, p99 150 →
    105 ms). Everything else — ``/boot.ipxe``, the completion callback, the API — goes
    through Flask as usual.
    """

    def __init__(self, app: Flask, inner: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.inner = inner

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if environ.get("PATH_INFO") != "/ipxe" or method not in ("GET", "HEAD"):
            return self.inner(environ, start_response)
        host_url = (
            f"{environ.get('wsgi.url_scheme', 'http')}://{get_host(environ)}"
            f"{environ.get('SCRIPT_NAME', '')}/"
        )
        body = ipxe_script(
            self.app,
            environ.get("QUERY_STRING", "").encode("latin-1", "replace"),
            environ.get("REMOTE_ADDR"),
            host_url,
            environ.get("HTTP_USER_AGENT"),
        ).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", f"{IPXE_MIMETYPE}; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [] if method == "HEAD" else [body]


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


@bp.get("/tftp/<name>")
def tftp_over_http(name: str) -> Response:
    """The TFTP root's iPXE binaries over HTTP, for UEFI HTTP-boot clients (nginx may
    serve the same path in front of bootbrain)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        return Response("not found\n", status=404, mimetype="text/plain")
    return send_from_directory(_settings().dnsmasq.tftp_root, name, mimetype="application/efi")


NOCLOUD_MIMETYPE = "text/plain"


def _document_error(as_json: bool, status: int, title: str, prefix: str, message: str) -> Response:
    if as_json:
        payload = {"title": title, "status": status, "detail": message}
        return _no_store(json.dumps(payload).encode(), "application/json", status)
    return _no_store(f"{prefix}: {message}\n".encode(), NOCLOUD_MIMETYPE, status)


def _serve_document(token: str, document: str) -> Response:
    from bootbrain import metadata

    as_json = document == JSON_DOCUMENT
    try:
        body = metadata.serve(
            _db(),
            _settings(),
            current_app.extensions["bootbrain.events"],
            current_app.extensions["bootbrain.refusals"],
            token,
            document,
            _base_url(),
            request.remote_addr,
        )
    except ForbiddenError:
        # One answer for unknown, expired and revoked tokens; the event says which.
        message = "this boot token is not valid (unknown, expired or its boot completed)"
        return _document_error(as_json, 403, "Forbidden", "forbidden", message)
    except metadata.DocumentRenderError as e:
        log.error("%s", e.__cause__ or e)
        message = f"{document} failed to render on the server"
        return _document_error(as_json, 500, "Internal server error", "error", message)
    if isinstance(body, dict):
        return _no_store(json.dumps(body, indent=2).encode(), "application/json")
    return _no_store(body.encode(), NOCLOUD_MIMETYPE)


def _nocloud_view(document: str) -> Callable[[str], Response]:
    def view(token: str) -> Response:
        return _serve_document(token[:256], document)

    view.__doc__ = f"cloud-init NoCloud {document} for the holder of a per-boot token."
    return view


for _name in NOCLOUD_FILES:
    bp.add_url_rule(
        f"/boot/<token>/{_name}", f"nocloud_{_name.replace('-', '_')}", _nocloud_view(_name)
    )


@bp.get("/boot/<token>/metadata.json")
def metadata_json(token: str) -> Response:
    """The booted OS's metadata as JSON, for the holder of a per-boot token."""
    return _serve_document(token[:256], JSON_DOCUMENT)


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
    from bootbrain.metadata import RefusalBudget

    app.extensions["bootbrain.refusals"] = RefusalBudget()
    app.register_blueprint(bp)
    app.wsgi_app = IpxeFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
