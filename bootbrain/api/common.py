"""What every operator API view shares: the spectree spec (request validation and the
OpenAPI document from the pydantic models), authentication of every ``/api/`` request
(a ``before_request``, so no route can be forgotten — the document included), body
checks, ETag / If-Match, and who the actor of a change is.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Response, current_app, g, jsonify, request
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType

from bootbrain import inventory
from bootbrain.errors import AuthError, StaleError
from bootbrain.services import Services
from bootbrain.vocabulary import TokenNeed

from .errors import BadBodyError, spectree_before

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The view the DHCP hooks post to (``api.lease_event``; see resources.py).
LEASE_EVENT_ENDPOINT = "api.lease_event"

#: Deepest JSON a write body may nest. Python's parser recurses once per level, so a
#: body nested near its recursion limit would fail as an internal error, not a 400.
MAX_BODY_DEPTH = 64

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_NESTING = re.compile(rb"[\[\]{}]")

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


def services() -> Services:
    found: Services = current_app.extensions["bootbrain"]
    return found


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
    found = services()
    g.principal = inventory.authenticate(
        found.db, found.settings.secret(), token.strip(), need=_need()
    )


def _need() -> TokenNeed:
    """What this request needs of its token. Posting a lease event is the one thing a
    lease-scope token (the DHCP hooks') may do; a write token may do it as well."""
    if request.method == "POST" and request.endpoint == LEASE_EVENT_ENDPOINT:
        return "lease"
    return "read" if request.method in READ_METHODS else "write"


def check_body() -> None:
    """A write's body must be a JSON object: spectree would read anything else as {}."""
    if not request.path.startswith("/api/") or request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.routing_exception is not None:  # 404/405 say more than a body complaint
        return
    if request.mimetype != "application/json":
        raise BadBodyError(415, "send the body as application/json")
    if _nesting(request.get_data(cache=True)) > MAX_BODY_DEPTH:
        raise BadBodyError(400, f"the body nests deeper than {MAX_BODY_DEPTH} levels")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadBodyError(400, "the body is not a JSON object")


def _nesting(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, strings skipped, unparsed."""
    depth = deepest = 0
    for m in _JSON_NESTING.finditer(_JSON_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def if_match() -> int | None:
    """The version the client last saw, from ``If-Match: "<version>"``."""
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise StaleError("resource", value, "a version number")
    return int(tag)


def etag(version: int) -> dict[str, Any]:
    return {"ETag": f'"{version}"'}


def openapi_document() -> Response:
    """The OpenAPI document, generated from the decorated views."""
    return jsonify(_with_links(_with_problem_media(spec.spec)))


def _with_links(document: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI links: the id a create (or a change) answers opens every operation on
    that item, so clients and stateful fuzzers can follow a write with its reads."""
    paths = document.get("paths", {})
    for path, operations in paths.items():
        item_ops = [
            (method, op)
            for other, ops in paths.items()
            if other.startswith(f"{path}/{{item_id}}")
            for method, op in ops.items()
            if "operationId" in op
        ]
        sources = [(operations.get("post"), "201")]
        if path.endswith("/{item_id}"):
            item_ops = [
                (method, op)
                for other, ops in paths.items()
                if other.startswith(path)
                for method, op in ops.items()
                if "operationId" in op
            ]
            sources = [(operations.get(m), "200") for m in ("patch", "put")]
        for source, code in sources:
            response = (source or {}).get("responses", {}).get(code)
            if response is None or not item_ops:
                continue
            response["links"] = {
                op["operationId"]: {
                    "operationId": op["operationId"],
                    "parameters": {"item_id": "$response.body#/id"},
                }
                for _, op in item_ops
            }
    for source, target in _NAME_LINKS:
        response = paths.get(source, {}).get("post", {}).get("responses", {}).get("201")
        op = paths.get(target, {}).get("post", {})
        if response is not None and "operationId" in op:
            field = source.rsplit("/", 1)[1].removesuffix("s")
            response.setdefault("links", {})[op["operationId"]] = {
                "operationId": op["operationId"],
                "requestBody": {field: "$response.body#/name"},
            }
    return document


#: A create whose name another create refers to (a rule or machine names its profile).
_NAME_LINKS = (
    ("/api/v1/profiles", "/api/v1/rules"),
    ("/api/v1/profiles", "/api/v1/machines"),
)


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
