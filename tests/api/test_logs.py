"""Logs: a full boot through ``bootbrain serve`` (gunicorn, JSON logs, access log on)
leaves no per-boot token, API token or user-data in any line, and every line is one
JSON object with the documented fields; request ids are generated, echoed, and a
trusted proxy's is kept."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from bootbrain import migrate
from bootbrain.app import create_app
from tests.api.serving import bootbrain_env, start_serve
from tests.api.test_boot import ipxe_query
from tests.conftest import Api, make_settings, make_token

pytestmark = pytest.mark.slow

MAC = "52:54:00:aa:dd:01"
#: In the machine's user-data: it must reach the machine and never a log line.
MARKER = "userdata-marker-" + uuid.uuid4().hex
#: Fields every JSON line carries (README "Logs").
FIELDS = {"time", "level", "logger", "message", "request_id", "machine_id", "boot_id", "step"}


def _setting(script: str, name: str) -> str:
    m = re.search(rf"^set {name} (\S+)$", script, re.M)
    assert m, script
    return m.group(1)


class _Http:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.auth = {"Authorization": f"Bearer {token}"}

    def api(self, method: str, path: str, body: Any, expect: int) -> Any:
        r = requests.request(
            method, f"{self.base}/api/v1{path}", json=body, headers=self.auth, timeout=30
        )
        assert r.status_code == expect, r.text
        return r.json()


def test_a_full_boot_logs_no_secret_and_every_line_is_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bootbrain.db"
    migrate.upgrade(url)
    env = bootbrain_env(url, tmp_path)
    app = create_app(make_settings(url, tmp_path, secret_key=env["BOOTBRAIN_SECRET_KEY"]))
    api_token = make_token(app, "admin", "write")
    app.extensions["bootbrain"].events.close()
    app.extensions["bootbrain"].db.dispose()

    env["BOOTBRAIN_LOG_FORMAT"] = "json"
    log = tmp_path / "serve.log"
    proc, base = start_serve(env, log, "--workers", "2")
    try:
        http = _Http(base, api_token)
        http.api("POST", "/networks", {"name": "rack1", "cidr": "10.200.0.0/24"}, 201)
        linux = {
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "initrds": ["{{ assets }}/initrd.img"],
            "cmdline": "ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL}",
            "user_data": f"#cloud-config\nruncmd:\n  - echo {MARKER}\n",
        }
        http.api("POST", "/profiles", {"name": "installer", **linux}, 201)
        machine = http.api(
            "POST",
            "/machines",
            {
                "hostname": "node-log",
                "nics": [{"mac": MAC, "boot": True}],
                "network": "rack1",
                "address": "10.200.0.60",
                "profile": "installer",
            },
            201,
        )
        lease = {
            "id": str(uuid.uuid4()),
            "source": "dnsmasq",
            "action": "add",
            "mac": MAC,
            "ip": "10.200.0.60",
        }
        http.api("POST", "/lease-events", lease, 202)

        assert requests.get(f"{base}/boot.ipxe", timeout=10).status_code == 200
        # Not behind a trusted proxy: a client's X-Request-Id is replaced.
        r = requests.get(base + ipxe_query(mac=MAC), headers={"X-Request-Id": "forged"}, timeout=10)
        ipxe_request_id = r.headers["X-Request-Id"]
        assert ipxe_request_id != "forged" and re.fullmatch(r"[0-9a-f]{32}", ipxe_request_id)
        script = r.text
        token_url = _setting(script, "IPXE_BOOT_METADATA_URL")
        boot_token = token_url.rstrip("/").rsplit("/", 1)[-1]
        assert len(boot_token) >= 16, token_url
        # The boot record is written off the request path: it opens the token shortly.
        deadline = time.monotonic() + 20
        while (user_data := requests.get(token_url + "user-data", timeout=10)).status_code == 403:
            assert time.monotonic() < deadline, user_data.text
            time.sleep(0.2)
        assert MARKER in user_data.text
        # A wrong token is refused (and its refusal logged); the right one completes.
        wrong = token_url[:-5] + "xxxxx/done"
        assert requests.post(wrong, data={"ip": "10.200.0.60/24"}, timeout=10).status_code == 403
        done = requests.post(token_url + "done", data={"ip": "10.200.0.60/24"}, timeout=10)
        assert done.status_code == 200
        boot_id = done.text.split()[1]
        # serve's stuck-boot watcher (a child process) has made a pass: its gauge is
        # on the host's /metrics, which every worker answers.
        deadline = time.monotonic() + 60
        while "\nbootbrain_boots_stuck 0.0" not in requests.get(f"{base}/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "no bootbrain_boots_stuck on /metrics"
            time.sleep(0.5)
        # The API reads what was booted, user-data included (a write token sees it).
        got = http.api("GET", f"/machines/{machine['id']}/config-preview", None, 200)
        assert MARKER in json.dumps(got)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    wrong_token = wrong.rsplit("/", 2)[-2]
    for secret, what in (
        (boot_token, "per-boot token"),
        (wrong_token, "refused boot token"),
        (api_token, "API token"),
    ):
        assert secret not in text, f"a {what} is in the log"
    assert MARKER not in text, "user-data is in the log"
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert record.keys() >= FIELDS, line
        assert record["level"] in ("debug", "info", "warning", "error", "critical"), line
        records.append(record)
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert {"method", "path", "status", "bytes", "latency_ms", "remote_addr"} <= access[0].keys()
    # The /ipxe line: its request id (the one answered), machine, boot and step.
    (ipxe,) = [r for r in access if r["path"] == "/ipxe"]
    assert ipxe["request_id"] == ipxe_request_id
    assert (ipxe["machine_id"], ipxe["boot_id"], ipxe["step"]) == (
        machine["id"],
        boot_id,
        "assigned",
    )
    assert ipxe["status"] == 200 and ipxe["latency_ms"] >= 0
    # Token paths are logged masked, each with its own request id.
    masked = [r for r in access if r["path"].startswith("/boot/<token>/")]
    assert {r["path"] for r in masked} >= {"/boot/<token>/user-data", "/boot/<token>/done"}
    assert len({r["request_id"] for r in access}) == len(access)
    assert any(r["logger"] == "gunicorn.error" for r in records)  # gunicorn's own lines too
    assert any("completion refused" in r["message"] for r in records)


def test_a_trusted_proxy_s_request_id_is_kept_and_a_bad_one_replaced(
    db_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(db_url, tmp_path, trusted_proxies=1))
    app.testing = True
    try:
        client = app.test_client()
        r = client.get("/boot.ipxe", headers={"X-Request-Id": "nginx-4f2a.17"})
        assert r.headers["X-Request-Id"] == "nginx-4f2a.17"
        r = client.get("/boot.ipxe", headers={"X-Request-Id": "a b\u00e9" * 30})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
        api = Api(client, make_token(app, "admin", "read"))
        r = api.client.get("/api/v1/machines", headers=api.headers)
        assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()
