"""The one place that maps errors to HTTP JSON: every 4xx/5xx of the operator API and
of ``metadata.json`` is an ``application/problem+json`` body
(:class:`bootbrain.schemas.Problem`) that names the offending field. Database driver
messages never reach the client. A failure on a machine's script route is handed to
the script fallback instead (:mod:`bootbrain.machine.errors`): iPXE gets a script.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from bootbrain import errors
from bootbrain.db import BUSY_RETRY_AFTER_S, DatabaseError, is_busy, is_unavailable
from bootbrain.schemas import FieldProblem, Problem

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class BadBodyError(Exception):
    """A write whose body is not a JSON object (spectree would read anything else as {})."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RequestValidationError(Exception):
    """Raised by the spectree hook for a request that fails its pydantic model."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("invalid request")
        self.problems = problems


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    field_problems: list[FieldProblem] | None = None,
    holder: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = Problem(
        title=title, status=status, detail=detail, errors=field_problems or [], holder=holder
    )
    resp = Response(
        json.dumps(body.model_dump(exclude_none=True)), status=status, mimetype=PROBLEM_JSON
    )
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def field_problems_of(pydantic_errors: list[dict[str, Any]], location: str) -> list[FieldProblem]:
    out = []
    for e in pydantic_errors:
        loc = [str(p) for p in e.get("loc", ())]
        if loc and loc[0] in {"body", "query"}:
            loc = loc[1:]
        field = ".".join(loc) or location
        message = str(e.get("msg", "invalid"))
        # "Value error, nics: …" → name the field the validator named.
        message = message.removeprefix("Value error, ")
        if ":" in message and not loc:
            head, _, rest = message.partition(":")
            if head.replace(".", "").replace("_", "").isalnum():
                field, message = head, rest.strip()
        out.append(FieldProblem(field=field, message=message))
    return out


def spectree_before(
    req: Any, resp: Any, req_validation_error: Any, instance: Any, model_adapter: Any = None
) -> None:
    if req_validation_error is None:
        return
    location = "query" if request.method in ("GET", "DELETE") else "body"
    raise RequestValidationError(field_problems_of(req_validation_error.errors(), location))


def _is_api() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask, script_fallback: Callable[[], Response | None]) -> None:
    @app.errorhandler(RequestValidationError)
    def _validation(e: RequestValidationError) -> Response:
        return problem(422, "Invalid request", "one or more fields are invalid", e.problems)

    @app.errorhandler(BadBodyError)
    def _bad_body(e: BadBodyError) -> Response:
        return problem(
            e.status, "Bad request body", str(e), [FieldProblem(field="body", message=str(e))]
        )

    @app.errorhandler(errors.FieldError)
    def _field(e: errors.FieldError) -> Response:
        return problem(
            422,
            "Invalid value",
            e.message,
            [FieldProblem(field=e.field, message=e.message, line=e.line)],
        )

    @app.errorhandler(errors.NotFoundError)
    def _not_found(e: errors.NotFoundError) -> Response:
        return problem(404, "Not found", str(e))

    @app.errorhandler(errors.ConflictError)
    def _conflict(e: errors.ConflictError) -> Response:
        return problem(
            409,
            "Conflict",
            e.message,
            [FieldProblem(field=e.field, message=e.message)],
            holder=e.holder,
        )

    @app.errorhandler(errors.ImportRowsError)
    def _rows(e: errors.ImportRowsError) -> Response:
        return problem(
            422,
            "Invalid document",
            f"nothing applied: {len(e.problems)} problem(s)",
            [FieldProblem(field=p.field, message=p.message, line=p.line) for p in e.problems],
        )

    @app.errorhandler(errors.PlanStaleError)
    def _plan_stale(e: errors.PlanStaleError) -> Response:
        return problem(
            409,
            "Conflict",
            f"nothing applied: the inventory changed since the plan was made ({e})",
            [FieldProblem(field="versions", message=m) for m in e.changed],
        )

    @app.errorhandler(errors.StaleError)
    def _stale(e: errors.StaleError) -> Response:
        return problem(
            412,
            "Precondition failed",
            str(e),
            headers={"ETag": f'"{e.current}"'} if e.current.isdigit() else None,
        )

    @app.errorhandler(errors.AuthError)
    def _auth(e: errors.AuthError) -> Response:
        return problem(
            401,
            "Unauthorized",
            f"a valid API token is required ({e})",
            headers={"WWW-Authenticate": 'Bearer realm="bootbrain"'},
        )

    @app.errorhandler(errors.ForbiddenError)
    def _forbidden(e: errors.ForbiddenError) -> Response:
        return problem(403, "Forbidden", str(e))

    @app.errorhandler(errors.BootTokenError)
    def _boot_token(e: errors.BootTokenError) -> Response:
        # One answer whatever the reason; the refusal event records which.
        return problem(403, "Forbidden", errors.BootTokenError.PUBLIC)

    @app.errorhandler(errors.BmcError)
    def _bmc(e: errors.BmcError) -> Response:
        return problem(502, "BMC error", str(e))

    @app.errorhandler(errors.ReinstallFailedError)
    def _reinstall(e: errors.ReinstallFailedError) -> Response:
        if e.timed_out:
            return problem(504, "BMC timeout", str(e))
        return problem(502, "BMC error", str(e))

    @app.errorhandler(errors.DocumentRenderError)
    def _document(e: errors.DocumentRenderError) -> Response:
        return problem(500, "Internal server error", f"{e} on the server")

    busy_headers = {"Retry-After": str(BUSY_RETRY_AFTER_S)}

    @app.errorhandler(errors.BusyError)
    def _busy(e: errors.BusyError) -> Response:
        fallback = script_fallback()
        if fallback is not None:
            return fallback
        log.warning("%s %s: %s", request.method, request.path, e)
        return problem(
            503, "Service unavailable", f"{e}; nothing was changed", headers=busy_headers
        )

    @app.errorhandler(DatabaseError)
    def _database(e: DatabaseError) -> Response:
        fallback = script_fallback()
        if fallback is not None:
            return fallback
        if is_busy(e):
            log.warning("%s %s: database locked: %s", request.method, request.path, e)
            return problem(503, "Service unavailable", "the database is busy", headers=busy_headers)
        if is_unavailable(e):
            log.error("%s %s: database unavailable: %s", request.method, request.path, e)
            return problem(
                503, "Service unavailable", "the database is unavailable", headers=busy_headers
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "the error was logged on the server")

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response:
        fallback = script_fallback()
        if fallback is not None:
            return fallback
        if not _is_api():
            return e.get_response()  # type: ignore[return-value]
        headers = {}
        if e.code == 405 and e.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(e.valid_methods)  # type: ignore[attr-defined]
        return problem(e.code or 500, e.name, e.description, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        fallback = script_fallback()
        if fallback is not None:
            return fallback
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "the error was logged on the server")
