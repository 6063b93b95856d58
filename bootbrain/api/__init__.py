"""The operator API under ``/api/v1``: authenticated on every route, OpenAPI from the code.

spectree turns the pydantic models on each view into request validation and the
OpenAPI document at ``/api/v1/openapi.json`` (it decorates plain Flask views, so the
blueprints stay ordinary Flask). Authentication is a ``before_request`` on every path
under ``/api/`` — including the document itself and any route added later — so no
route can be forgotten.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType

from bootbrain import inventory
from bootbrain.api.errors import spectree_before
from bootbrain.errors import AuthError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

spec = SpecTree(
    "flask",
    title="bootbrain operator API",
    version="v1",
    # spectree leaves out every route under its own path, so that is not /api/v1; we
    # serve the document ourselves (openapi_document) and never call spec.register.
    path="api/v1/_spectree",
    page_templates={},
    before=spectree_before,
    validation_error_status=422,
    security_schemes=[
        SecurityScheme(
            name="token", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer")
        ),
    ],
    security={"token": []},
    annotations=True,
    # Only the decorated operator views: the machine routes are not part of this API.
    mode="strict",
)


def actor() -> str:
    principal = g.get("principal")
    return f"token:{principal.name}" if principal else "system"


def may_reveal() -> bool:
    """Whether this request may see secret fields (user-data, vendor-data): write scope."""
    principal = g.get("principal")
    return principal is not None and principal.scope == "write"


def authenticate_request() -> None:
    if not request.path.startswith("/api/"):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("no bearer token")
    db = current_app.extensions["bootbrain.db"]
    secret = current_app.config["BOOTBRAIN"].secret()
    g.principal = inventory.authenticate(
        db, secret, token.strip(), write=request.method not in READ_METHODS
    )


def check_body() -> None:
    """A write's body must be a JSON object: spectree would read anything else as {}."""
    if not request.path.startswith("/api/") or request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.routing_exception is not None:  # 404/405 say more than a body complaint
        return
    if request.mimetype != "application/json":
        raise BadBodyError(415, "send the body as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadBodyError(400, "the body is not a JSON object")


class BadBodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def if_match() -> int | None:
    """The version the client last saw, from ``If-Match: "<version>"``."""
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        from bootbrain.errors import StaleError

        raise StaleError("resource", value, "a version number")
    return int(tag)


def etag(version: int) -> dict[str, Any]:
    return {"ETag": f'"{version}"'}


def openapi_document() -> Response:
    """The OpenAPI document, generated from the decorated views."""
    return jsonify(_with_problem_media(spec.spec))


def _with_problem_media(document: dict[str, Any]) -> dict[str, Any]:
    """spectree documents every body as application/json; our errors are problem+json."""
    doc = copy.deepcopy(document)
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if code.isdigit() and int(code) >= 400 and "application/json" in content:
                    content["application/problem+json"] = content.pop("application/json")
    return doc


def init_app(app: Flask) -> None:
    from bootbrain.api import errors, resources

    # A blueprint per app: the views are built by resources.register.
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    resources.register(bp)
    bp.add_url_rule("/openapi.json", "openapi", openapi_document, methods=["GET"])
    app.before_request(authenticate_request)
    app.before_request(check_body)
    app.register_blueprint(bp)
    errors.init_app(app)
