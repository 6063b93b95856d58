"""Slow and idle clients of ``bootbrain serve`` delay no machine's boot, and requests
over gunicorn's limits get an answer in the route's own format (issue 16, cases 1, 16).

Real gunicorn workers, real sockets on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bootbrain import migrate
from tests.api.serving import bootbrain_env, start_serve

pytestmark = pytest.mark.slow

WORKERS = 2


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("slow")
    url = f"sqlite:///{tmp}/bootbrain.db"
    migrate.upgrade(url)
    env = bootbrain_env(url, tmp)
    env["BOOTBRAIN_CLIENT_TIMEOUT"] = "3"
    log = tmp / "gunicorn.log"
    proc, base = start_serve(env, log, "--workers", str(WORKERS))
    try:
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _raw(base: str, request: bytes) -> bytes:
    with _connect(base) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _timed_ipxe(base: str) -> tuple[float, str]:
    start = time.monotonic()
    r = requests.get(f"{base}/ipxe", params={"mac": "52:54:00:00:00:01"}, timeout=30)
    return time.monotonic() - start, r.text


def test_idle_and_trickling_clients_do_not_delay_a_boot(served: tuple[str, Path]) -> None:
    """The drill: more idle connections and trickling requests than there are
    workers, held open; a machine's /ipxe still answers at once."""
    base, _ = served
    n = 4 * WORKERS
    idle = [_connect(base) for _ in range(n)]
    trickling = [_connect(base) for _ in range(n)]
    stop = threading.Event()

    def trickle() -> None:
        request = b"GET /ipxe?mac=52:54:00:00:00:02 HTTP/1.1\r\nHost: x\r\n"
        for i in range(len(request)):
            if stop.is_set():
                return
            for s in trickling:
                try:
                    s.send(request[i : i + 1])
                except OSError:
                    return
            time.sleep(0.2)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.5)  # every connection accepted and holding what it could
        for _ in range(5):
            elapsed, script = _timed_ipxe(base)
            assert script.startswith("#!ipxe\n")
            assert elapsed < 1.0, f"/ipxe waited {elapsed:.1f} s behind slow clients"
    finally:
        stop.set()
        t.join()
        for s in idle + trickling:
            s.close()


def test_a_client_that_never_finishes_is_cut_off(served: tuple[str, Path]) -> None:
    """After client_timeout, a half-sent /ipxe gets a retry script and the connection
    is closed; an idle one is closed."""
    base, _ = served
    with _connect(base) as s:
        s.sendall(b"GET /ipxe?mac=52:54:00:00:00:03 HTTP/1.1\r\n")
        s.settimeout(10)
        start = time.monotonic()
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        assert 2.0 < time.monotonic() - start < 8.0
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body.startswith(b"#!ipxe\n") and b"request timed out" in body
    assert b"chain" in body  # a retry, through the bootstrap
    with _connect(base) as s:
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 408")


def test_a_request_line_over_the_limit_gets_a_script(served: tuple[str, Path]) -> None:
    base, _ = served
    answer = _raw(base, b"GET /ipxe?mac=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body.startswith(b"#!ipxe\n") and b"request too long" in body
    # Between the app's limit and gunicorn's, the app's own script answers.
    r = requests.get(f"{base}/ipxe?mac={'a' * 5000}", timeout=10)
    assert r.status_code == 200 and "request too long" in r.text


def test_oversized_headers_get_problem_json_on_the_api(served: tuple[str, Path]) -> None:
    base, _ = served
    r = requests.get(
        f"{base}/api/v1/machines", headers={"Authorization": "Bearer " + "x" * 9000}, timeout=10
    )
    assert r.status_code == 431
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 431
    many = {f"X-Header-{i}": "1" for i in range(150)}
    r = requests.get(f"{base}/api/v1/machines", headers=many, timeout=10)
    assert r.status_code == 431 and r.json()["title"] == "Request Header Fields Too Large"
    r = requests.get(f"{base}/boot.ipxe", headers={"Cookie": "x" * 9000}, timeout=10)
    assert r.text.startswith("#!ipxe\n") and "request headers too large" in r.text


@pytest.mark.parametrize("path", ["/ipxe", "/boot.ipxe"])
@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PROPFIND", "DELETE"])
def test_other_methods_on_script_routes_get_a_script(
    served: tuple[str, Path], path: str, method: str
) -> None:
    base, log = served
    r = requests.request(method, f"{base}{path}", timeout=10)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text.startswith("#!ipxe\n") and "method not allowed" in r.text
    assert "Traceback" not in log.read_text()


def test_a_body_arriving_slowly_holds_no_worker(served: tuple[str, Path]) -> None:
    """An API request whose body trickles in waits in the front door, not in a
    worker; once complete it is answered as usual."""
    base, _ = served
    body = b'{"hostname": "x"}'
    conns = []
    for _ in range(2 * WORKERS):
        s = _connect(base)
        s.sendall(
            b"POST /api/v1/machines HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:3]
        )
        conns.append(s)
    try:
        elapsed, script = _timed_ipxe(base)
        assert script.startswith("#!ipxe\n") and elapsed < 1.0
        conns[0].sendall(body[3:])
        conns[0].settimeout(10)
        assert conns[0].recv(65536).startswith(b"HTTP/1.1 401")  # no token: refused, whole
    finally:
        for s in conns:
            s.close()
