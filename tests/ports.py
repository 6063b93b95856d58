"""Loopback ports for tests (nothing here listens on any other address)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on now: free to bind, or to be refused on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
