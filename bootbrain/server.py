"""gunicorn, embedded: ``bootbrain serve``.

Workers are forked after the app is created (``preload_app``), so each builds its
own database pool and event-writer thread after the fork; ``worker_exit`` drains the
event queue so a clean shutdown (SIGTERM, a reload) loses no boot record.
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.sync import SyncWorker

from bootbrain.app import create_app


class _ClientSocket(socket.socket):
    """A client connection that is closed at once after the response when the client
    has sent nothing more, and otherwise as gunicorn closes it.

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

    def shutdown(self, how: int) -> None:
        super().shutdown(how)
        if how == socket.SHUT_WR:
            self._after_response = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._after_response:
            self._after_response = False
            waiting = select.poll()  # not select(): descriptors can be above FD_SETSIZE
            waiting.register(self, select.POLLIN)
            if not waiting.poll(0):
                return b""  # the client sent nothing more: read as its end, close now
        return super().recv(bufsize, flags)


class BootWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker, not waiting after an answer for a client that has sent
    nothing more to hang up (see :class:`_ClientSocket`)."""

    def accept(self, listener: Any) -> None:
        accepted, addr = listener.accept()
        client = _ClientSocket(
            accepted.family, accepted.type, accepted.proto, fileno=accepted.detach()
        )
        client.setblocking(True)
        util.close_on_exec(client)
        self.handle(listener, client, addr)


def _worker_exit(server: Any, worker: Any) -> None:
    app = worker.wsgi
    services = getattr(app, "extensions", {}).get("bootbrain")
    if services is not None:
        services.events.close()


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


def run(bind: str, workers: int | None = None, access_log: bool = True) -> None:
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
        "post_fork": _post_fork,
        "worker_exit": _worker_exit,
        # gunicorn's control socket lives at one path per user: two brains on a host
        # would share it. Nothing of ours uses it.
        "control_socket_disable": True,
    }
    if access_log:
        options["accesslog"] = "-"
    _Server(options).run()
