"""The routes booting machines and booted OSes call: ``/boot.ipxe``, ``/ipxe``, the
NoCloud documents, ``metadata.json`` and ``ignition.json`` under ``/boot/<token>/``,
the completion callback, and the TFTP root over HTTP. Transport only: the flow is
:mod:`bootbrain.machine.flow`, the documents :mod:`bootbrain.machine.documents`, and
what a failure becomes :mod:`bootbrain.machine.errors`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import stat
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.wsgi import get_host, wrap_file

from bootbrain import identity
from bootbrain.boot.documents import JSON_DOCUMENT, NOCLOUD_FILES
from bootbrain.boot.ignition import IGNITION_DOCUMENT, IGNITION_MIMETYPE, MissingIgnitionError
from bootbrain.boot.render import render_bootstrap
from bootbrain.errors import BootTokenError, DocumentRenderError, ForbiddenError, IdentityError
from bootbrain.metrics import metrics
from bootbrain.models import utcnow
from bootbrain.services import Services
from bootbrain.vocabulary import BOOTFILE_RE, SCRIPT_PATHS

from . import documents, flow
from .errors import (
    IPXE_MIMETYPE,
    MAX_QUERY_BYTES,
    exception_script,
    ipxe_response,
    method_script,
    no_store,
    oversized_script,
    shed_script,
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
    """The constant bootstrap DHCP hands to iPXE. Each fetch is recorded for the boot
    funnel (off the request path), by the address it came from and, when the DHCP
    filename carries one, the MAC (``?mac=``)."""
    services = _services()
    s = services.settings
    try:
        mac = identity.canonical_mac(request.args.get("mac", "")[:64]) or None
    except IdentityError:
        mac = None
    services.events.event(
        {
            "at": utcnow(),
            "kind": "bootstrap",
            "mac": mac,
            "ip": request.remote_addr,
            "message": f"/boot.ipxe fetched by {request.remote_addr}",
            "data": {"user_agent": (request.user_agent.string or "")[:200]},
        }
    )
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
        if not services.events.accepting:
            return shed_script()
        started = time.perf_counter()
        answer = flow.answer_ipxe(
            services.db,
            services.settings,
            services.events,
            raw_query,
            remote_addr,
            flow.base_url(services.settings, host_url),
            user_agent,
        )
        m = metrics()
        m.ipxe_requests.labels(answer.decision.step).inc()
        m.ipxe_seconds.labels(answer.decision.step).observe(time.perf_counter() - started)
        return answer.script
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
        path = environ.get("PATH_INFO")
        if path not in SCRIPT_PATHS:
            return self.inner(environ, start_response)
        if method not in ("GET", "HEAD"):
            # A script still (iPXE shows its message), never Flask's HTML or an
            # automatic OPTIONS answer; nothing here is an exception.
            body = method_script().encode()
            start_response(
                "405 Method Not Allowed",
                [
                    ("Content-Type", f"{IPXE_MIMETYPE}; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                    ("Allow", "GET, HEAD"),
                ],
            )
            return [body]
        if path != "/ipxe":
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
        boot_id = documents.complete(
            services.db,
            services.settings,
            services.events,
            services.refusals,
            token[:128],
            report,
            request.remote_addr,
        )
    except ForbiddenError as e:
        log.warning("completion refused from %s: %s", request.remote_addr, e)
        return text_error(403, "refused", str(e))
    return Response(f"ok {boot_id}\n", status=200, mimetype="text/plain")


@bp.get("/tftp/<name>")
def tftp_over_http(name: str) -> Response:
    """The TFTP root's iPXE binaries over HTTP, for UEFI HTTP-boot clients (nginx may
    serve the same path in front of bootbrain)."""
    if not BOOTFILE_RE.fullmatch(name):
        return text_error(404, "not found", name[:64])
    opened = _open_in(_services().settings.dnsmasq.tftp_root, name)
    if opened is None:
        return text_error(404, "not found", name)
    f, st = opened
    resp = Response(
        wrap_file(request.environ, f), mimetype="application/efi", direct_passthrough=True
    )
    resp.content_length = st.st_size
    resp.last_modified = datetime.fromtimestamp(st.st_mtime, UTC)
    resp.set_etag(f"{st.st_mtime_ns:x}-{st.st_size:x}")
    resp.make_conditional(request, accept_ranges=True, complete_length=st.st_size)
    return resp


def _open_in(root: Path, name: str) -> tuple[BinaryIO, os.stat_result] | None:
    """``root/name`` opened for reading if it is a regular file inside ``root``.

    A symlink is followed only to a file inside the root (``ipxe.efi -> snponly.efi``):
    one to ``/etc/passwd`` or a secret beside the root is not served. The final open
    refuses a symlink, so one swapped in after the check is not followed either.
    """
    real_root = root.resolve()
    target = (real_root / name).resolve()
    if target == real_root or not target.is_relative_to(real_root):
        return None
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), st


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
    except MissingIgnitionError as e:
        return text_error(404, "not found", str(e))
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
    mimetype = IGNITION_MIMETYPE if document == IGNITION_DOCUMENT else "text/plain"
    return no_store(body.encode(), mimetype)


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


@bp.get(f"/boot/<token>/{IGNITION_DOCUMENT}")
def ignition_json(token: str) -> Response:
    """The profile's Ignition config (Flatcar, Fedora CoreOS) for the holder of a
    per-boot token; 404 when the profile has none."""
    return _serve_document(token[:256], IGNITION_DOCUMENT)


def init_app(app: Flask, services: Services) -> None:
    app.register_blueprint(bp)
    app.wsgi_app = IpxeFastPath(services, app.wsgi_app)  # type: ignore[method-assign]
