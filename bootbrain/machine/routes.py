"""The routes booting machines and booted OSes call: ``/boot.ipxe``, ``/ipxe``, the
NoCloud documents and ``metadata.json`` under ``/boot/<token>/``, the completion
callback, and the TFTP root over HTTP. Transport only: the flow is
:mod:`bootbrain.machine.flow`, the documents :mod:`bootbrain.machine.documents`, and
what a failure becomes :mod:`bootbrain.machine.errors`.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from werkzeug.wsgi import get_host

from bootbrain import inventory
from bootbrain.boot.documents import JSON_DOCUMENT, NOCLOUD_FILES
from bootbrain.boot.render import render_bootstrap
from bootbrain.errors import BootTokenError, DocumentRenderError, ForbiddenError
from bootbrain.services import Services
from bootbrain.vocabulary import BOOTFILE_RE

from . import documents, flow
from .errors import (
    IPXE_MIMETYPE,
    MAX_QUERY_BYTES,
    exception_script,
    ipxe_response,
    no_store,
    oversized_script,
    text_error,
)

log = logging.getLogger(__name__)

bp = Blueprint("machine", __name__)

_rng = random.SystemRandom()


def _services() -> Services:
    services: Services = current_app.extensions["bootbrain"]
    return services


def _base_url() -> str:
    return flow.base_url(_services().settings, request.host_url)


@bp.get("/boot.ipxe")
def bootstrap() -> Response:
    """The constant bootstrap DHCP hands to iPXE."""
    s = _services().settings
    return ipxe_response(
        render_bootstrap(_base_url(), s.bootstrap_retries, s.bootstrap_backoff, _rng)
    )


def ipxe_script(
    services: Services,
    raw_query: bytes,
    remote_addr: str | None,
    host_url: str,
    user_agent: str | None,
) -> str:
    """The script for this machine, now — whatever goes wrong, a valid one."""
    try:
        if len(raw_query) > MAX_QUERY_BYTES:
            return oversized_script()
        return flow.answer_ipxe(
            services.db,
            services.settings,
            services.events,
            raw_query,
            remote_addr,
            flow.base_url(services.settings, host_url),
            user_agent,
        ).script
    except Exception:
        return exception_script("/ipxe")


class IpxeFastPath:
    """``GET /ipxe`` answered in plain WSGI, in front of Flask.

    A boot storm is thousands of these in seconds, and Flask's request machinery was
    about a third of each one's cost (README "Performance"). Everything else —
    ``/boot.ipxe``, the completion callback, the API — goes through Flask as usual.
    """

    def __init__(self, services: Services, inner: Callable[..., Iterable[bytes]]) -> None:
        self.services = services
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
            self.services,
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


#: The completion report: at most this many fields are kept, each value cut to this
#: length; a key outside the pattern or a NUL in a value refuses the report.
MAX_REPORT_FIELDS = 16
MAX_REPORT_VALUE = 256
_REPORT_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@bp.post("/boot/<token>/done")
def done(token: str) -> Response:
    """The booted OS reports completion with its per-boot token."""
    report = {k: v[:MAX_REPORT_VALUE] for k, v in list(request.form.items())[:MAX_REPORT_FIELDS]}
    bad = next((k for k, v in report.items() if not _REPORT_KEY.fullmatch(k) or "\x00" in v), None)
    if bad is not None:
        return text_error(
            400,
            "refused",
            f"report keys are 1-64 of [A-Za-z0-9_.-], values hold no NUL: {bad[:64]!r}",
        )
    services = _services()
    try:
        boot = inventory.complete_boot(
            services.db, services.settings.secret(), token[:128], report, request.remote_addr
        )
    except ForbiddenError as e:
        log.warning("completion refused from %s: %s", request.remote_addr, e)
        return text_error(403, "refused", str(e))
    return Response(f"ok {boot.id}\n", status=200, mimetype="text/plain")


@bp.get("/tftp/<name>")
def tftp_over_http(name: str) -> Response:
    """The TFTP root's iPXE binaries over HTTP, for UEFI HTTP-boot clients (nginx may
    serve the same path in front of bootbrain)."""
    if not BOOTFILE_RE.fullmatch(name):
        return text_error(404, "not found", name[:64])
    return send_from_directory(
        _services().settings.dnsmasq.tftp_root, name, mimetype="application/efi"
    )


def _serve_document(token: str, document: str) -> Response:
    services = _services()
    try:
        body = documents.serve(
            services.db,
            services.settings,
            services.events,
            services.refusals,
            token,
            document,
            _base_url(),
            request.remote_addr,
        )
    except (BootTokenError, DocumentRenderError) as e:
        if isinstance(e, DocumentRenderError):
            log.error("%s", e.__cause__ or e)
        if document == JSON_DOCUMENT:
            raise  # problem+json, like every JSON error (bootbrain.api.errors)
        if isinstance(e, BootTokenError):
            return text_error(403, "forbidden", BootTokenError.PUBLIC)
        return text_error(500, "error", f"{document} failed to render on the server")
    if isinstance(body, dict):
        return no_store(json.dumps(body, indent=2).encode(), "application/json")
    return no_store(body.encode(), "text/plain")


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


def init_app(app: Flask, services: Services) -> None:
    app.register_blueprint(bp)
    app.wsgi_app = IpxeFastPath(services, app.wsgi_app)  # type: ignore[method-assign]
