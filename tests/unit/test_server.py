"""The client connections of ``bootbrain serve``'s worker, without gunicorn around them."""

from __future__ import annotations

import socket
import threading
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


def test_after_the_answer_a_silent_client_is_not_waited_for(
    pair: tuple[_ClientSocket, socket.socket],
) -> None:
    server, client = pair
    server.shutdown(socket.SHUT_WR)
    server.settimeout(2.0)  # as gunicorn's close sets it
    assert server.recv(10) == b""  # the client is silent but still there: done
    assert client.recv(10) == b""  # and it saw the answer end


def test_after_the_answer_a_client_still_sending_is_read_to_its_end(
    pair: tuple[_ClientSocket, socket.socket],
) -> None:
    """Bytes waiting after the response mean the client is not done: read it all, as
    gunicorn does, so the close cannot become a RST."""
    server, client = pair
    client.sendall(b"more")
    server.shutdown(socket.SHUT_WR)
    server.settimeout(2.0)
    assert server.recv(10) == b"more"
    later = threading.Timer(0.2, lambda: (client.sendall(b"rest"), client.shutdown(socket.SHUT_WR)))
    later.start()
    try:
        assert server.recv(10) == b"rest"  # waited for it
        assert server.recv(10) == b""  # the client's end
    finally:
        later.join()
