"""The operator API under ``/api/v1``: authenticated on every route, OpenAPI from the code.

:mod:`~bootbrain.api.common` holds what every view shares (the spec, authentication,
ETags), :mod:`~bootbrain.api.resources` the views, and :mod:`~bootbrain.api.errors`
is the one place an error becomes an HTTP answer: ``application/problem+json`` naming
the field, for the API and for every JSON route.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, Response, request

from bootbrain import db

from . import errors, resources
from .common import authenticate_request, check_body, openapi_document


def init_app(app: Flask, script_fallback: Callable[[], Response | None]) -> None:
    """The API's blueprint, its authentication, and the app's error handlers;
    ``script_fallback`` answers a failure on a machine's script route (see
    :func:`bootbrain.api.errors.init_app`)."""
    # A blueprint per app: the views are built once, by resources.register.
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    resources.register(bp)
    bp.add_url_rule("/openapi.json", "openapi", openapi_document, methods=["GET"])
    app.before_request(_short_lock_waits)  # first: authentication may write
    app.teardown_request(_default_lock_waits)
    app.before_request(authenticate_request)
    app.before_request(check_body)
    app.register_blueprint(bp)
    errors.init_app(app, script_fallback)


def _short_lock_waits() -> None:
    """An operator's write waits a few seconds for a lock, then is answered 503: a
    worker waiting longer is one the booting machines cannot have."""
    if request.path.startswith("/api/"):
        db.set_lock_wait(db.API_LOCK_WAIT_S)


def _default_lock_waits(_exc: BaseException | None) -> None:
    db.set_lock_wait(None)
