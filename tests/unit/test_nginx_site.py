"""The role's nginx site sheds a boot storm the iPXE way: when gunicorn cannot take a
booting machine's request, nginx itself answers bootbrain's own retry script."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.boot_storm import nginx_conf
from bootbrain.boot.render import render_error
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


@pytest.fixture
def nginx_without_gunicorn(tmp_path: Path) -> Iterator[str]:
    """nginx with the role's site, in front of a gunicorn address nothing listens on."""
    tmp_path.chmod(0o755)
    (tmp_path / "assets").mkdir()
    web = free_port()
    conf = nginx_conf(tmp_path, web, f"127.0.0.1:{free_port()}", tmp_path / "assets")
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{web}"
    try:
        for _ in range(100):
            try:
                requests.get(base + "/assets/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("path", ["/boot.ipxe", "/ipxe?mac=52-54-00-aa-cc-01&buildarch=x86_64"])
def test_a_machine_gets_bootbrains_retry_script_from_nginx(
    nginx_without_gunicorn: str, path: str
) -> None:
    r = requests.get(nginx_without_gunicorn + path, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Cache-Control"] == "no-store"
    m = re.search(r"^sleep (\d+)$", r.text, re.MULTILINE)
    assert m, r.text
    retry = int(m.group(1))
    assert 10 <= retry <= 40
    # Word for word what bootbrain answers when it sheds a boot itself.
    assert r.text == render_error("boot server busy", retry_seconds=retry)


def test_the_machines_shed_together_do_not_come_back_together(
    nginx_without_gunicorn: str,
) -> None:
    waits = {
        re.search(r"^sleep (\d+)$", requests.get(nginx_without_gunicorn + "/ipxe", timeout=5).text,
                  re.MULTILINE).group(1)  # type: ignore[union-attr]
        for _ in range(40)
    }  # fmt: skip
    assert len(waits) >= 5


def test_operators_still_get_nginx_status_codes(nginx_without_gunicorn: str) -> None:
    assert requests.get(nginx_without_gunicorn + "/api/v1/machines", timeout=5).status_code == 502
