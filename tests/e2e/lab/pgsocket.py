"""PostgreSQL for processes inside network namespaces.

The test PostgreSQL listens on the host's loopback only, which a namespace cannot
reach. A unix socket can: it is a file, and every namespace shares the file system.
:class:`PgSocket` offers PostgreSQL's TCP port as ``<dir>/.s.PGSQL.<port>``, pumped by
threads of the test process, so a brain or a kea-dhcp4 inside a namespace connects
with libpq's socket-directory URL (``postgresql://user:pw@/db?host=<dir>&port=<port>``)
and no link joins the namespace to the host.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import socketserver
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit


class _Pump(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        host, port = self.server.upstream  # type: ignore[attr-defined]
        with socket.create_connection((host, port), timeout=10) as up:
            up.settimeout(None)
            ends = [self.request, up]
            self.server.live.update(ends)  # type: ignore[attr-defined]
            try:
                while True:
                    ready, _, _ = select.select(ends, [], [], 60)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (up if s is self.request else self.request).sendall(data)
            except OSError:
                return
            finally:
                self.server.live.difference_update(ends)  # type: ignore[attr-defined]


class PgSocket:
    """PostgreSQL's TCP port offered as a unix socket in a directory of its own;
    :meth:`cut` takes PostgreSQL away from whoever uses it, :meth:`restore` brings it back."""

    def __init__(self, host: str, port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bbpg-"))
        self.path = self.dir / f".s.PGSQL.{port}"
        self.upstream = (host, port)
        self.restore()

    @classmethod
    def for_url(cls, url: str) -> PgSocket:
        """A forwarder to the server of this (SQLAlchemy or libpq) URL."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def url(self, url: str) -> str:
        """``url`` (same scheme, credentials and database) through this socket."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        # No percent-encoding in the query: Alembic's configuration reads the URL with
        # ConfigParser, whose interpolation takes "%" for its own.
        return (
            f"{parts.scheme}://{credentials}@/{parts.path.lstrip('/')}"
            f"?host={self.dir}&port={self.upstream[1]}"
        )

    def restore(self) -> None:
        self.server = socketserver.ThreadingUnixStreamServer(str(self.path), _Pump)
        self.server.daemon_threads = True
        self.server.upstream = self.upstream  # type: ignore[attr-defined]
        self.server.live = set()  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)
        for end in list(self.server.live):  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.cut()
        shutil.rmtree(self.dir, ignore_errors=True)
