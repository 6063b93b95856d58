"""A tiny recording HTTP server (stdlib only) listening inside a lab namespace.

It runs in the test process: the listening socket is created inside the
namespace with :meth:`Netns.bind_tcp`, the server threads run in the host
namespace. Every request is recorded (method, raw path and query, headers,
body) before it is answered, so tests can assert on what the firmware and the
booted guest actually sent. Routes map an exact path (without query) to bytes,
a file, or a callable returning a :class:`Response`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from .errors import LabError
from .net import Netns


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # raw request target: path + '?' + query, undecoded
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: str
    time: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        """Raw (still percent-encoded) query string."""
        return urlsplit(self.target).query

    @property
    def user_agent(self) -> str:
        return self.headers.get("user-agent", "")

    def form(self) -> dict[str, list[str]]:
        """The urlencoded body, parsed."""
        return parse_qs(self.body.decode(errors="replace"), keep_blank_values=True)


@dataclass
class Response:
    body: bytes | Path = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


Route = bytes | str | Path | Response | Callable[[Request], Response]


def ipxe_script(text: str) -> Response:
    """An iPXE script response (``#!ipxe`` prepended if missing)."""
    if not text.startswith("#!ipxe"):
        text = "#!ipxe\n" + text
    return Response(text.encode(), content_type="text/plain")


class StubHTTPServer:
    """Serve *routes* on ``host:port`` inside *netns* and record every request."""

    def __init__(
        self, netns: Netns, host: str, port: int = 0, access_log: Path | None = None
    ) -> None:
        self.netns = netns
        self.host = host
        #: Where to append a line per answered request in nginx's ``bootbrain_assets``
        #: format (README "The boot funnel"), as the production assets server writes.
        self.access_log = access_log
        self._log_lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._sock = netns.bind_tcp(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def route(self, path: str, content: Route) -> None:
        self.routes[path] = content

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _log(self, request: Request, status: int, sent: int) -> None:
        """nginx's ``bootbrain_assets`` line: $msec is the request's end, $uri its path."""
        if self.access_log is None:
            return
        line = json.dumps(
            {
                "msec": f"{time.time():.3f}",
                "ip": request.client,
                "uri": request.path,
                "status": str(status),
                "bytes": str(sent),
                "request_time": f"{time.monotonic() - request.time:.3f}",
            },
            separators=(",", ":"),
        )
        with self._log_lock, self.access_log.open("a") as out:
            out.write(line + "\n")

    def _respond(self, request: Request) -> Response:
        route = self.routes.get(request.path)
        if route is None:
            return Response(b"not found\n", status=404, content_type="text/plain")
        if callable(route):
            return route(request)
        if isinstance(route, Response):
            return route
        if isinstance(route, str):
            return Response(route.encode(), content_type="text/plain")
        return Response(route)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    target=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    client=self.client_address[0],
                )
                stub._record(request)
                try:
                    response = stub._respond(request)
                except Exception as exc:  # report, don't kill the server
                    response = Response(f"stub error: {exc!r}\n".encode(), status=500)
                payload = response.body
                size = payload.stat().st_size if isinstance(payload, Path) else len(payload)
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(size))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    if isinstance(payload, Path):
                        with payload.open("rb") as fh:
                            shutil.copyfileobj(fh, self.wfile, 1 << 20)
                    else:
                        self.wfile.write(payload)
                stub._log(request, response.status, 0 if self.command == "HEAD" else size)

            do_GET = do_POST = do_HEAD = do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def start(self) -> StubHTTPServer:
        server = ThreadingHTTPServer(
            (self.host, self.port), self._handler(), bind_and_activate=False
        )
        server.socket.close()
        server.socket = self._sock
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"stubhttp-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        else:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> StubHTTPServer:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def find(self, path: str, method: str | None = None) -> list[Request]:
        """Recorded requests for *path* (and *method*), oldest first."""
        with self._cond:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    def wait_for(self, path: str, method: str | None = None, timeout: float = 60.0) -> Request:
        """Wait for the first request to *path*."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [
                    r
                    for r in self.requests
                    if r.path == path and (method is None or r.method == method)
                ]
                if hits:
                    return hits[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LabError(f"no {method or 'request'} to {path} within {timeout}s")
                self._cond.wait(remaining)
