"""The one place where a failure on a machine route becomes what the machine reads.

A booting machine (``/boot.ipxe``, ``/ipxe``) always receives a valid iPXE script —
``#!ipxe``, a message and a retry or a safe exit, with a Content-Length — never HTML,
JSON or a traceback (BRIEF "Injection"); the failure is logged and counted on
``/metrics``. The booted OS's NoCloud documents and its completion callback answer
short ``text/plain`` lines. (JSON errors, ``metadata.json``'s included, are
problem+json from :mod:`bootbrain.api.errors`.)
"""

from __future__ import annotations

import logging
from typing import Final

from flask import Response, request

from bootbrain import logs
from bootbrain.boot.render import render_error
from bootbrain.vocabulary import SCRIPT_PATHS

from .flow import count_failure

log = logging.getLogger(__name__)

IPXE_MIMETYPE: Final = "text/plain"
#: A request line longer than this is not iPXE talking; answered with a safe script.
MAX_QUERY_BYTES: Final = 4096


def no_store(body: bytes, mimetype: str, status: int = 200) -> Response:
    """An answer for one machine and one boot (some carry secrets): never cached."""
    resp = Response(body, status=status, mimetype=mimetype)
    resp.headers["Content-Length"] = str(len(body))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def ipxe_response(script: str, status: int = 200) -> Response:
    return no_store(script.encode(), IPXE_MIMETYPE, status)


def text_error(status: int, prefix: str, message: str) -> Response:
    """A refusal or failure for the booted OS (a document fetch, the completion)."""
    return no_store(f"{prefix}: {message}\n".encode(), "text/plain", status)


def oversized_script() -> str:
    count_failure("oversized")
    return render_error("request too long", retry_seconds=None)


def shed_script() -> str:
    """The boot records cannot be written now (the database refuses writes, or the
    backlog is too long): a retry, rather than a per-boot token nobody could use."""
    count_failure("shed")
    return render_error("boot server busy", retry_seconds=10)


def method_script() -> str:
    """A script route asked with a method other than GET or HEAD."""
    count_failure("method")
    return render_error("method not allowed", retry_seconds=None)


def exception_script(path: str) -> str:
    """What a machine gets when answering it raised: a message and a retry. Call it
    from an ``except`` block: the exception is logged."""
    log.exception("failure answering %s", logs.redact_path(path))
    count_failure("exception")
    return render_error("boot server error", retry_seconds=15)


def for_request() -> Response | None:
    """The script answer for a failed request on a script route, else None (the
    operator API's handlers answer it: see :func:`bootbrain.api.errors.init_app`)."""
    if request.path not in SCRIPT_PATHS:
        return None
    return ipxe_response(exception_script(request.path))
