"""How bootbrain logs: JSON lines or text, and the request each line belongs to.

One format for every process of a host — the gunicorn workers, their master, the
reconciler and the stuck-boot watcher, the CLI — chosen by the ``log_format`` setting
(``auto``: text on a terminal, JSON otherwise, where a collector reads it). JSON lines
come from python-json-logger: it is a formatter for the standard ``logging`` module,
so every library's log lines (gunicorn's, SQLAlchemy's) come out the same way with no
change to the code that logs, where structlog would have us route everything through
its own loggers.

Each request gets an id (:class:`RequestIds`, outermost WSGI middleware): a trusted
proxy's ``X-Request-Id`` when bootbrain sits behind one, else a new one; it is echoed in
the response. Code answering a request adds what it learns (:func:`bind`: machine,
boot, decision step), and every line logged meanwhile — and the access log line
(:mod:`bootbrain.server`) — carries it. Nothing secret is ever a field here: per-boot
tokens appear only in paths, which :func:`redact_path` masks.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pythonjsonlogger.json import JsonFormatter

Format = Literal["json", "text"]
#: Fields every line carries (null when not known), beside time, level, logger, message.
CONTEXT_FIELDS: Final = ("request_id", "machine_id", "boot_id", "step")
#: The WSGI environ key holding the request's context, for the access log.
ENVIRON_KEY: Final = "bootbrain.log"
#: What a proxy's X-Request-Id may be: anything else is replaced by a new id.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: Per-boot tokens travel in these paths (documents, completion).
_TOKEN_PATH: Final = re.compile(r"^/boot/[^/]+")
MASKED_BOOT_PATH: Final = "/boot/<token>"

_context: ContextVar[dict[str, Any] | None] = ContextVar("bootbrain_log", default=None)
_chosen: list[Format] = []


def choose(setting: str) -> Format:
    """The format for a ``log_format`` setting: ``auto`` is text on a terminal."""
    if setting in ("json", "text"):
        return setting  # type: ignore[return-value]
    return "text" if sys.stderr.isatty() else "json"


def current() -> Format:
    """The format :func:`configure` chose in this process (or its parent), else text."""
    return _chosen[-1] if _chosen else "text"


def bind(**fields: Any) -> None:
    """Add fields to the current request's log context (outside a request: nothing)."""
    ctx = _context.get()
    if ctx is not None:
        ctx.update(fields)


def context() -> dict[str, Any]:
    return dict(_context.get() or {})


def redact_path(path: str) -> str:
    """The path with any per-boot token replaced."""
    return _TOKEN_PATH.sub(MASKED_BOOT_PATH, path)


class ContextFilter(logging.Filter):
    """Puts the request's context on every record (None where not known)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ctx.get(name))
        return True


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonLines(JsonFormatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the
    context fields, and any ``extra`` the caller gave."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _iso(record.created)
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = str(log_data.get("level", "")).lower()
        for name in CONTEXT_FIELDS:
            log_data.setdefault(name, getattr(record, name, None))


class TextLines(logging.Formatter):
    """The human format: time, level, logger, message, and the known context."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        known = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None)]
        if not known:
            return line
        head, sep, tail = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{' '.join(known)}]{sep}{tail}"


def formatter(fmt: Format) -> logging.Formatter:
    return JsonLines() if fmt == "json" else TextLines()


def apply(handler: logging.Handler, fmt: Format) -> None:
    """Give a handler (ours, or one gunicorn made) the format and the context."""
    handler.setFormatter(formatter(fmt))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def configure(
    setting: str, *, level: int = logging.INFO, only_if_unconfigured: bool = False
) -> Format:
    """Log ``level`` and above to stderr in the chosen format; the format chosen.

    ``only_if_unconfigured``: leave a root logger that already has handlers alone
    (the application factory, or a CLI command, under a test runner that captures
    logs)."""
    fmt = choose(setting)
    root = logging.getLogger()
    if only_if_unconfigured and root.handlers:
        return fmt
    _chosen.append(fmt)
    for old in [h for h in root.handlers if getattr(h, "_bootbrain", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._bootbrain = True  # type: ignore[attr-defined]
    apply(handler, fmt)
    root.addHandler(handler)
    root.setLevel(level)
    return fmt


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RequestIds:
    """WSGI middleware: the request's id and log context, echoed as ``X-Request-Id``.

    A proxy's ``X-Request-Id`` is taken only when ``trust_header`` (bootbrain behind
    the proxies it trusts for addresses too) and only in a sane form; anyone else's
    could be forged to tie unrelated lines together or break a log parser.
    """

    def __init__(self, inner: WsgiApp, trust_header: bool) -> None:
        self.inner = inner
        self.trust_header = trust_header

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        given = environ.get("HTTP_X_REQUEST_ID", "") if self.trust_header else ""
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        ctx: dict[str, Any] = {"request_id": rid}
        environ[ENVIRON_KEY] = ctx
        token = _context.set(ctx)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-Id", rid))
            return start_response(status, headers, exc_info)

        try:
            return self.inner(environ, start)
        finally:
            _context.reset(token)
