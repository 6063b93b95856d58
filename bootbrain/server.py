"""gunicorn, embedded: ``bootbrain serve``.

Workers are forked after the app is created (``preload_app``), so each builds its
own database pool and event-writer thread after the fork; ``worker_exit`` drains the
event queue so a clean shutdown (SIGTERM, a reload) loses no boot record.
"""

from __future__ import annotations

import errno
import json
import os
import select
import selectors
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.sync import SyncWorker

from bootbrain import logs
from bootbrain.app import create_app
from bootbrain.boot.render import render_error
from bootbrain.machine.flow import count_failure
from bootbrain.metrics import process_exited
from bootbrain.vocabulary import SCRIPT_PATHS

#: gunicorn's largest request line and header field (its own maxima); longer ones are
#: answered by the front door, in the route's own format, before gunicorn sees them.
MAX_REQUEST_LINE: Final = 8190
MAX_HEADER_LINE: Final = 8190
MAX_HEADERS: Final = 100
MAX_HEAD: Final = MAX_REQUEST_LINE + MAX_HEADERS * (MAX_HEADER_LINE + 2) + 4
#: Flask's MAX_CONTENT_LENGTH in :func:`bootbrain.app.create_app`.
MAX_BODY: Final = 1024 * 1024
#: Connections a worker holds while their requests arrive; beyond it the oldest goes.
MAX_PENDING: Final = 4096
#: Connections a worker accepts each time the listening socket is ready.
ACCEPT_BATCH: Final = 8
#: How long a worker waits on a client reading its answer.
SEND_TIMEOUT: Final = 10.0
_SCRIPT_PATHS: Final = frozenset(p.encode() for p in SCRIPT_PATHS)


class _ClientSocket(socket.socket):
    """A client connection: the request the front door read comes first, and the
    connection is closed at once after the response when the client has sent nothing
    more.

    gunicorn (since 26, benoitc/gunicorn#3590) closes each connection by sending FIN,
    then reading until the client hangs up (at most 2 s or 64 KB), so that unread
    request bytes cannot make the kernel answer with a RST that cuts the response
    short. For a sync worker that is a wait, after every answer, for the client to be
    scheduled and close; without it the workers answered 9-33 % more boots per second
    in 5 of 6 paired boot-storm runs on PostgreSQL (README, "Performance"). Here the
    wait is kept only where it protects something: when bytes from the client are
    already waiting after the response (an unread body, a pipelined request), the
    rest is read as gunicorn reads it; when none are, the connection is closed now.
    """

    _after_response = False
    _prebuffer = b""

    def shutdown(self, how: int) -> None:
        super().shutdown(how)
        if how == socket.SHUT_WR:
            self._after_response = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._prebuffer:
            data, self._prebuffer = self._prebuffer[:bufsize], self._prebuffer[bufsize:]
            return data
        if self._after_response:
            self._after_response = False
            waiting = select.poll()  # not select(): descriptors can be above FD_SETSIZE
            waiting.register(self, select.POLLIN)
            if not waiting.poll(0):
                return b""  # the client sent nothing more: read as its end, close now
        return super().recv(bufsize, flags)


@dataclass(eq=False)
class _Arriving:
    """A connection whose request is still arriving."""

    sock: _ClientSocket
    addr: Any
    listener: Any
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    #: Bytes of head and body together, once the head is complete.
    total: int | None = None


def _problem(status: int, title: str, detail: str) -> tuple[int, str, bytes]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return status, "application/problem+json", body.encode()


def _refusal(path: bytes | None, status: int, title: str, detail: str) -> tuple[int, str, bytes]:
    """What the front door answers itself: on a script route, a script iPXE runs (a
    message and a safe action, as :mod:`bootbrain.machine.errors` answers), else
    problem+json."""
    if path in _SCRIPT_PATHS:
        count_failure("oversized" if status != 408 else "timeout")
        retry = 10 if status == 408 else None
        return 200, "text/plain; charset=utf-8", render_error(detail, retry_seconds=retry).encode()
    return _problem(status, title, detail)


def _path_of(head: bytes) -> bytes | None:
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return parts[1].split(b"?", 1)[0] if len(parts) >= 2 else None


def _examine(buf: bytearray) -> tuple[int | None, tuple[int, str, bytes] | None]:
    """(bytes the whole request takes, or None while the head is incomplete; or an
    answer to send instead, for a request that breaks a limit)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        line_end = buf.find(b"\r\n")
        if (line_end < 0 and len(buf) > MAX_REQUEST_LINE) or line_end > MAX_REQUEST_LINE:
            return None, _refusal(
                _path_of(bytes(buf[:256])), 414, "URI Too Long", "request too long"
            )
        if len(buf) > MAX_HEAD:
            return None, _refusal(
                _path_of(bytes(buf[:256])),
                431,
                "Request Header Fields Too Large",
                "request headers too large",
            )
        return None, None
    head = bytes(buf[:end])
    lines = head.split(b"\r\n")
    path = _path_of(head)
    if len(lines[0]) > MAX_REQUEST_LINE:
        return None, _refusal(path, 414, "URI Too Long", "request too long")
    if len(lines) - 1 > MAX_HEADERS or any(len(h) > MAX_HEADER_LINE for h in lines[1:]):
        return None, _refusal(
            path, 431, "Request Header Fields Too Large", "request headers too large"
        )
    length = 0
    for h in lines[1:]:
        name, _, value = h.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return end + 4, None  # chunked: gunicorn reads the body as it comes
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return end + 4, None  # gunicorn answers the malformed header
    if length > MAX_BODY:
        return None, _refusal(path, 413, "Content Too Large", "request body too large")
    return end + 4 + max(length, 0), None


def _send_now(sock: socket.socket, answer: tuple[int, str, bytes]) -> None:
    status, ctype, body = answer
    reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.setblocking(False)
        sock.send(head.encode() + body)  # small: fits the socket buffer, or is cut short
    except OSError:
        pass
    finally:
        sock.close()


class BootWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker with a front door: a worker handles a request only once
    all of it has arrived.

    A sync worker serves one connection at a time, so a client that sends its request
    slowly, or not at all, would hold it (and with two workers, two such clients hold
    every boot). Here each worker waits for its connections' requests with one
    ``epoll``; a request is handed to gunicorn's handler, already in memory, only when
    its head and body are complete, so the handler never waits on a client's sending.
    A client gets ``client_timeout`` seconds for its whole request. Requests over
    gunicorn's limits are answered here in the route's own format (a script on
    ``/ipxe`` and ``/boot.ipxe``, problem+json elsewhere), where gunicorn would send
    HTML. The worker still waits on a client's reading of the answer, for at most
    ``SEND_TIMEOUT``; answers to machines fit the socket buffer.
    """

    def run(self) -> None:
        services = getattr(self.wsgi, "extensions", {}).get("bootbrain")
        timeout = services.settings.client_timeout if services is not None else 10.0
        heartbeat = min(self.timeout or 1.0, 1.0) / 2
        selector = selectors.DefaultSelector()
        for listener in self.sockets:
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ, None)
        pipe: int = self.PIPE[0]  # gunicorn's wake-up pipe (signals)
        selector.register(pipe, selectors.EVENT_READ, None)
        arriving: dict[int, _Arriving] = {}  # insertion order: oldest first
        try:
            while self.alive:
                self.notify()
                now = time.monotonic()
                wait = heartbeat
                if arriving:
                    wait = max(0.0, min(wait, next(iter(arriving.values())).deadline - now))
                ready: list[_Arriving] = []
                for key, _ in selector.select(wait):
                    if key.data is not None:
                        if self._receive(key.data, selector, arriving):
                            ready.append(key.data)
                    elif key.fileobj == pipe:
                        with suppress(OSError):
                            os.read(pipe, 1)
                    else:
                        self._accept_all(key.fileobj, selector, arriving, timeout)
                for conn in ready:
                    if not self.alive:
                        break
                    self._hand_over(conn)
                    self.notify()
                now = time.monotonic()
                for conn in list(arriving.values()):
                    if conn.deadline > now:
                        break  # deadlines are in arrival order
                    # The worker may have been busy serving past this deadline while
                    # the request sat complete in the socket: read before refusing.
                    if self._receive(conn, selector, arriving):
                        self._hand_over(conn)
                        self.notify()
                        continue
                    if conn.sock.fileno() not in arriving:
                        continue  # refused or gone while reading
                    self._drop(conn, selector, arriving)
                    _send_now(
                        conn.sock,
                        _refusal(
                            _path_of(bytes(conn.buf[:256])),
                            408,
                            "Request Timeout",
                            "request timed out",
                        ),
                    )
                if not self.is_parent_alive():
                    break
        finally:
            for conn in list(arriving.values()):
                conn.sock.close()
            selector.close()

    def _accept_all(
        self,
        listener: Any,
        selector: selectors.BaseSelector,
        arriving: dict[int, _Arriving],
        timeout: float,
    ) -> None:
        # A few at a time: what this worker accepts, only it can serve, one after
        # another, while the rest wait in the kernel's queue for whichever worker
        # is free first.
        for _ in range(ACCEPT_BATCH):
            try:
                accepted, addr = listener.accept()
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                raise
            client = _ClientSocket(
                accepted.family, accepted.type, accepted.proto, fileno=accepted.detach()
            )
            client.setblocking(False)
            util.close_on_exec(client)
            if len(arriving) >= MAX_PENDING:
                oldest = next(iter(arriving.values()))
                self._drop(oldest, selector, arriving)
                oldest.sock.close()
            conn = _Arriving(client, addr, listener, time.monotonic() + timeout)
            arriving[client.fileno()] = conn
            selector.register(client, selectors.EVENT_READ, conn)

    def _drop(
        self, conn: _Arriving, selector: selectors.BaseSelector, arriving: dict[int, _Arriving]
    ) -> None:
        selector.unregister(conn.sock)
        del arriving[conn.sock.fileno()]

    def _receive(
        self, conn: _Arriving, selector: selectors.BaseSelector, arriving: dict[int, _Arriving]
    ) -> bool:
        """Read what has arrived; True when the request is complete."""
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self._drop(conn, selector, arriving)
            conn.sock.close()
            return False
        conn.buf += data
        if conn.total is None:
            conn.total, refusal = _examine(conn.buf)
            if refusal is not None:
                self._drop(conn, selector, arriving)
                _send_now(conn.sock, refusal)
                return False
        if conn.total is not None and len(conn.buf) >= conn.total:
            self._drop(conn, selector, arriving)
            return True
        return False

    def _hand_over(self, conn: _Arriving) -> None:
        sock = conn.sock
        sock._prebuffer = bytes(conn.buf)
        sock.settimeout(SEND_TIMEOUT)
        self.handle(conn.listener, sock, conn.addr)


class BootLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logs in bootbrain's format (:mod:`bootbrain.logs`): its error log as
    every other line, and one access line per request that carries the request's id and
    what the answer learned (machine, boot, step), with per-boot tokens masked."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            logs.apply(handler, logs.current())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not getattr(self, "access_log_enabled", self.cfg.accesslog):
            return
        path = logs.redact_path(req.path or "")
        query = f"?{req.query}" if req.query else ""
        status = int(str(resp.status).split(None, 1)[0])
        latency_ms = round(request_time.total_seconds() * 1000, 3)
        remote = environ.get("REMOTE_ADDR") or "-"
        agent = (environ.get("HTTP_USER_AGENT") or "")[:200]
        sent = getattr(resp, "sent", 0) or 0
        ctx = environ.get(logs.ENVIRON_KEY) or {}
        fields = {name: ctx.get(name) for name in logs.CONTEXT_FIELDS}
        try:
            self.access_log.info(
                '%s "%s %s%s" %s %s %.1f ms "%s"',
                remote, req.method, path, query, status, sent, latency_ms, agent,
                extra={
                    **fields,
                    "method": req.method,
                    "path": path,
                    "query": req.query or None,
                    "status": status,
                    "bytes": sent,
                    "latency_ms": latency_ms,
                    "remote_addr": remote,
                    "user_agent": agent,
                },
            )  # fmt: skip
        except Exception:
            self.exception("access log line failed")


def _worker_exit(server: Any, worker: Any) -> None:
    app = worker.wsgi
    services = getattr(app, "extensions", {}).get("bootbrain")
    if services is not None:
        services.events.close()


def _child_exit(server: Any, worker: Any) -> None:
    process_exited(worker.pid)


def _post_fork(server: Any, worker: Any) -> None:
    app = worker.app.wsgi()
    # Never share the parent's connections.
    app.extensions["bootbrain"].db.engine.dispose(close=False)


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # older gunicorns lack some (control_socket_*)
                self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app()


def default_workers() -> int:
    """One worker per CPU this process may run on.

    A boot is CPU work with one short database round trip. On the 2-core benchmark host,
    with PostgreSQL on the same cores, 2 workers answered 5 to 45 % more boots per second
    than 4 (bench/ipxe_storm.py, paired runs): each extra process costs every boot CPU
    in context switches and cold caches, more than the round trips it overlaps. With
    the database on another host a round trip is longer, and more workers can pay off.
    """
    return max(1, len(os.sched_getaffinity(0)))


def _children_hooks(commands: list[list[str]]) -> dict[str, Any]:
    """gunicorn hooks that run ``bootbrain`` commands beside the workers (the
    reconciler, the stuck-boot watcher), for as long as the master runs (each exits by
    itself if the master dies without stopping it)."""
    child: list[subprocess.Popen[bytes]] = []

    def start(_server: Any) -> None:
        for command in commands:
            child.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bootbrain", *command, "--parent", str(os.getpid())]
                )
            )

    def stop(_server: Any) -> None:
        for proc in child:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    return {"on_starting": start, "on_exit": stop}


def run(
    bind: str,
    workers: int | None = None,
    access_log: bool = True,
    reconcile: bool = False,
    watch_stuck: bool = False,
) -> None:
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers or default_workers(),
        # Sync workers: /ipxe is short CPU work, and under a boot storm they keep the
        # latency tail far tighter than threads contending for one GIL (measured with
        # bench/ipxe_storm.py: p99 ~220 ms vs ~540 ms at 64 connections, same req/s).
        # They do not keep connections alive, which is why nginx sits in front and
        # buffers slow clients.
        "worker_class": "bootbrain.server.BootWorker",
        "preload_app": True,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        # The front door (BootWorker) answers longer ones itself, in the route's format.
        "limit_request_line": MAX_REQUEST_LINE,
        "limit_request_field_size": MAX_HEADER_LINE,
        "limit_request_fields": MAX_HEADERS,
        "post_fork": _post_fork,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        # gunicorn's control socket lives at one path per user: two brains on a host
        # would share it. Nothing of ours uses it.
        "control_socket_disable": True,
        "logger_class": "bootbrain.server.BootLogger",
    }
    if access_log:
        options["accesslog"] = "-"
    children = [["reconcile"]] if reconcile else []
    if watch_stuck:
        children.append(["boots", "watch"])
    if children:
        options.update(_children_hooks(children))
    _Server(options).run()
