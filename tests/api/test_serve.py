"""``bootbrain serve``: sized by the CPUs it may run on, and refusing a stale schema."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bootbrain import migrate
from tests.api.serving import bootbrain_env, start_serve
from tests.ports import free_port

pytestmark = pytest.mark.slow


def _booted_workers(log: Path, expect: int) -> int:
    """Workers gunicorn reported booting, once ``expect`` have (or after 10 s)."""
    for _ in range(100):
        if len(re.findall(r"Booting worker with pid", log.read_text())) >= expect:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # one more than expected would have been booted by now
    return len(re.findall(r"Booting worker with pid", log.read_text()))


@pytest.mark.parametrize(("extra", "expect"), [((), 1), (("--workers", "3"), 3)])
def test_workers_default_to_the_cpus_it_may_use(
    tmp_path: Path, extra: tuple[str, ...], expect: int
) -> None:
    """Pinned to one CPU (as systemd's CPUAffinity= or taskset would), serve starts one
    worker; --workers still wins."""
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    cpu = min(os.sched_getaffinity(0))
    env = bootbrain_env(url, tmp_path)
    log = tmp_path / "gunicorn.log"
    proc, base = start_serve(
        env, log, *extra, "--no-access-log", preexec_fn=lambda: os.sched_setaffinity(0, {cpu})
    )
    try:
        assert _booted_workers(log, expect) == expect, log.read_text()
        assert requests.get(f"{base}/boot.ipxe", timeout=5).text.startswith("#!ipxe\n")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _serve_refusal(url: str, data_dir: Path) -> str:
    """What ``bootbrain serve`` says when it refuses to start (it must)."""
    result = subprocess.run(
        [sys.executable, "-m", "bootbrain", "serve", "--bind", "127.0.0.1:1"],
        env=bootbrain_env(url, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_serve_refuses_an_empty_database(tmp_path: Path) -> None:
    said = _serve_refusal(f"sqlite:///{tmp_path}/bootbrain.db", tmp_path)
    assert "the database has no schema: run `bootbrain init`" in said


def test_serve_refuses_an_older_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url, "0003")
    said = _serve_refusal(url, tmp_path)
    assert f"schema is at 0003, this bootbrain needs {migrate.newest()}" in said
    assert "run `bootbrain db upgrade`" in said


def test_serve_refuses_a_schema_from_a_newer_bootbrain(tmp_path: Path) -> None:
    """Brains sharing a PostgreSQL: one was upgraded and migrated, this one was not."""
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "bootbrain.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    said = _serve_refusal(url, tmp_path)
    assert "schema is at 0999, which this bootbrain does not know" in said
    assert "upgrade bootbrain on this host" in said


def test_serve_says_when_it_cannot_reach_the_database(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://bootbrain:x@127.0.0.1:{free_port()}/bootbrain"
    assert "cannot read the database: connection" in _serve_refusal(url, tmp_path)


# --- closing connections ---------------------------------------------------------------


def _request(path: str = "/boot.ipxe") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: iPXE/1.21\r\n\r\n".encode()


def _read_response(conn: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one response, read by its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed before the headers: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed inside the body"
        body += chunk
    return head, body


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[tuple[str, int]]:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    log = tmp_path / "gunicorn.log"
    proc, base = start_serve(bootbrain_env(url, tmp_path), log, "--workers", "1")
    try:
        yield "127.0.0.1", int(base.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_client_that_does_not_hang_up_does_not_hold_the_worker(
    one_worker: tuple[str, int],
) -> None:
    """The one worker answers the next machine while the last one still holds its
    connection open (gunicorn's own close waits up to 2 s for the client's FIN)."""
    with socket.create_connection(one_worker, timeout=10) as lingering:
        lingering.sendall(_request())
        head, body = _read_response(lingering)
        assert head.startswith(b"HTTP/1.1 200") and body.startswith(b"#!ipxe\n")
        started = time.monotonic()
        answer = requests.get(f"http://{one_worker[0]}:{one_worker[1]}/boot.ipxe", timeout=10)
        waited = time.monotonic() - started
        assert answer.text.startswith("#!ipxe\n")
        assert waited < 1.0, f"the worker waited {waited:.1f} s for the first client"
        assert lingering.recv(1) == b""  # the server closed its side


def test_a_pipelined_request_gets_one_whole_answer_and_a_clean_end(
    one_worker: tuple[str, int],
) -> None:
    """Bytes after the request (a second request, junk) are not answered and do not
    break the first answer. (That they are drained before the close, so the kernel
    sends FIN and not RST, is tests/unit/test_server.py: on loopback the client
    reads its answer either way.)"""
    for _ in range(20):
        with socket.create_connection(one_worker, timeout=10) as conn:
            conn.sendall(_request() + _request() + b"X" * 30000)
            time.sleep(0.05)  # the extra bytes are in the server's buffer before it answers
            head, body = _read_response(conn)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: close" in head.lower()
            assert body.startswith(b"#!ipxe\n") and body.rstrip().endswith(b"exit")
            assert conn.recv(65536) == b""  # one answer, then a clean end (no reset)
