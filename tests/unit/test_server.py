"""The client connections of ``bootbrain serve``'s worker, without gunicorn around them."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bootbrain.server import _ClientSocket


@pytest.fixture
def pair() -> Iterator[tuple[_ClientSocket, socket.socket]]:
    server_end, client_end = socket.socketpair()
    server = _ClientSocket(
        server_end.family, server_end.type, server_end.proto, fileno=server_end.detach()
    )
    with server, client_end:
        yield server, client_end


def test_reads_wait_for_the_client_until_the_answer_is_sent(
    pair: tuple[_ClientSocket, socket.socket],
) -> None:
    server, client = pair
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.recv(10)  # the request is still to come: a read waits for it
    client.sendall(b"GET /")
    assert server.recv(10) == b"GET /"


def test_after_the_answer_only_bytes_already_sent_are_read(
    pair: tuple[_ClientSocket, socket.socket],
) -> None:
    server, client = pair
    client.sendall(b"more")
    server.shutdown(socket.SHUT_WR)
    server.settimeout(2.0)  # as gunicorn's close sets it
    assert server.recv(10) == b"more"
    assert server.recv(10) == b""  # the client is silent but still there: done
    assert client.recv(10) == b""  # and it saw the answer end
