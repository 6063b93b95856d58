"""The boot funnel: a simulated boot through every stage the brain sees, joined into
one attempt; a boot that stops after the decision, flagged stuck after its limit."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bootbrain.app import create_app
from bootbrain.cli import watch_stuck_once
from bootbrain.db import Database
from bootbrain.inventory import funnel
from bootbrain.metrics import exposition
from bootbrain.models import Boot, Event, utcnow
from tests.api.test_boot import ipxe_query
from tests.conftest import Api, add_rack1, make_settings, make_token

MAC = "52:54:00:aa:cc:01"
IP = "10.200.0.50"
OTHER_IP = "10.200.0.77"


def flush(app: Flask) -> None:
    app.extensions["bootbrain"].events.flush()


def lease(ip: str = IP, mac: str = MAC, ago: float = 0.0, action: str = "add") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "source": "dnsmasq",
        "action": action,
        "mac": mac,
        "ip": ip,
        "user_class": "iPXE",
        "arch": 7,
        "at": (utcnow() - timedelta(seconds=ago)).isoformat(),
    }


def nginx_line(path: str, ip: str = IP, size: int = 0, took: float = 0.0, ago: float = 0.0) -> str:
    """A line of the ``bootbrain_assets`` log format, as nginx writes it at the end of a
    request that began ``ago`` seconds ago and took ``took``."""
    end = (utcnow() + timedelta(seconds=took - ago)).timestamp()
    return (
        f'{{"msec":"{end:.3f}","ip":"{ip}","uri":"{path}","status":"200",'
        f'"bytes":"{size}","request_time":"{took:.3f}"}}'
    )


def ingest(db: Database, *lines: str) -> int:
    fetches = [funnel.parse_nginx_line(line) for line in lines]
    return funnel.record_asset_fetches(db, [f for f in fetches if f is not None])


def script_setting(script: str, name: str) -> str:
    m = re.search(rf"^set {name} (\S+)$", script, re.M)
    assert m, script
    return m.group(1)


@pytest.fixture
def machine(api: Api) -> dict[str, Any]:
    add_rack1(api)
    api.post("/profiles", {"name": "disk", "kind": "local"}, expect=201)
    api.post(
        "/profiles",
        {
            "name": "installer",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "initrds": ["{{ assets }}/initrd.img"],
            "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} "
            "ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL} bootbrain.done=${IPXE_BOOT_DONE_URL}",
            "user_data": "#cloud-config\nhostname: node-var\n",
        },
        expect=201,
    )
    m: dict[str, Any] = api.post(
        "/machines",
        {
            "hostname": "node-var",
            "nics": [{"mac": MAC, "boot": True}],
            "network": "rack1",
            "address": IP,
            "profile": "installer",
            "state": "ready",
        },
        expect=201,
    ).json
    return m


def pxe_boot_until_decision(client: FlaskClient, api: Api, lease_ago: float = 0.0) -> str:
    """DHCP (the hook's lease event), /boot.ipxe and /ipxe, from the machine's address."""
    api.post("/lease-events", lease(ago=lease_ago), expect=202)
    env = {"REMOTE_ADDR": IP}
    bootstrap = client.get("/boot.ipxe", environ_overrides=env)
    assert bootstrap.status_code == 200
    assert "/ipxe?uuid=" in bootstrap.get_data(as_text=True)
    resp = client.get(ipxe_query(mac=MAC), environ_overrides=env)
    assert resp.status_code == 200
    script = resp.get_data(as_text=True)
    assert re.search(r"^kernel .*/vmlinuz ", script, re.M), script
    flush(client.application)  # the boot record, which the token opens
    return script


def test_a_boot_through_every_stage_is_one_attempt_with_every_stage(
    api: Api, client: FlaskClient, app: Flask, db: Database, machine: dict[str, Any]
) -> None:
    # Another machine's bootstrap fetch at the same moment is not this boot's.
    client.get("/boot.ipxe", environ_overrides={"REMOTE_ADDR": OTHER_IP})
    script = pxe_boot_until_decision(client, api, lease_ago=20)
    # nginx serves the kernel and initrd; its log is ingested (a second time: no change).
    log = [
        nginx_line("/assets/vmlinuz", size=8_000_000, took=0.0),
        nginx_line("/assets/initrd.img", size=30_000_000, took=0.0),
        nginx_line("/assets/vmlinuz", ip=OTHER_IP, size=8_000_000),
        "not json",
    ]
    assert ingest(db, *log) == 3
    assert ingest(db, *log) == 0
    base = script_setting(script, "IPXE_BOOT_METADATA_URL").removeprefix("http://bootbrain.test")
    env = {"REMOTE_ADDR": IP}
    for name in ("meta-data", "user-data"):
        assert client.get(base + name, environ_overrides=env).status_code == 200
    done = script_setting(script, "IPXE_BOOT_DONE_URL").removeprefix("http://bootbrain.test")
    resp = client.post(done, data={"ip": f"{IP}/24"}, environ_overrides=env)
    assert resp.status_code == 200
    boot_id = resp.get_data(as_text=True).split()[1]
    flush(app)

    attempts = api.get(f"/machines/{machine['id']}/boots", expect=200).json["items"]
    assert len(attempts) == 1
    a = attempts[0]
    assert [s["stage"] for s in a["stages"]] == [
        "lease",
        "bootstrap",
        "decision",
        "kernel",
        "initrd",
        "document",
        "document",
        "completion",
    ]
    assert a["status"] == "complete"
    assert a["boot_id"] == boot_id
    assert (a["step"], a["profile"], a["mac"], a["ip"]) == ("assigned", "installer", MAC, IP)
    assert a["stages"][1]["data"] == {"ip": IP, "matched_by": "ip"}
    assert a["stages"][3]["data"] == {
        "path": "/assets/vmlinuz",
        "status": 200,
        "bytes": 8_000_000,
        "duration_s": 0.0,
    }
    assert a["stages"][4]["data"]["bytes"] == 30_000_000
    assert [s["data"].get("document") for s in a["stages"][5:7]] == ["meta-data", "user-data"]
    assert a["not_seen"] == []
    # Timings: the lease came 20 s before the bootstrap, everything else within seconds.
    offsets = [s["after_start_s"] for s in a["stages"]]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert 19 <= offsets[1] <= 25, offsets
    assert offsets[-1] - offsets[1] < 10, offsets
    # nginx logs whole seconds: a fetch's start is at most a second before the decision.
    for stage in a["stages"][3:5]:
        assert stage["after_start_s"] >= offsets[2] - 1
    assert a["duration_s"] == offsets[-1]
    assert a["last_stage"] == "completion"
    assert api.get("/boots?stuck=true", expect=200).json["items"] == []


def test_a_boot_that_stops_after_the_decision_is_stuck_after_its_limit(
    api: Api, client: FlaskClient, app: Flask, db: Database, machine: dict[str, Any]
) -> None:
    pxe_boot_until_decision(client, api)
    flush(app)
    mid = machine["id"]
    assert api.get("/boots?stuck=true", expect=200).json["items"] == []
    (a,) = api.get(f"/machines/{mid}/boots", expect=200).json["items"]
    assert (a["status"], a["last_stage"], a["stuck_after_s"]) == ("in_progress", "decision", 1800)

    # 31 minutes pass (the default limit is 30).
    with db.write() as s:
        for row in [*s.scalars(select(Event)), *s.scalars(select(Boot))]:
            for col in ("at", "created_at", "expires_at"):
                if hasattr(row, col):
                    setattr(row, col, getattr(row, col) - timedelta(minutes=31))
    (stuck,) = api.get("/boots?stuck=true", expect=200).json["items"]
    assert stuck["machine_id"] == mid
    assert (stuck["status"], stuck["last_stage"]) == ("stuck", "decision")
    assert [s["stage"] for s in stuck["stages"]] == ["lease", "bootstrap", "decision"]
    assert stuck["summary"] == (
        "/ipxe decided by assigned: profile installer 31 min ago; "
        "never fetched its kernel, documents or reported completion"
    )
    assert stuck["not_seen"] == ["kernel", "initrd"]

    # The profile's own limit: an hour, so not stuck yet.
    profile = api.get("/profiles?limit=10", expect=200).json["items"]
    pid = next(p["id"] for p in profile if p["name"] == "installer")
    api.patch(f"/profiles/{pid}", {"stuck_after": 3600}, expect=200)
    assert api.get("/boots?stuck=true", expect=200).json["items"] == []
    (a,) = api.get(f"/machines/{mid}/boots", expect=200).json["items"]
    assert (a["status"], a["stuck_after_s"]) == ("in_progress", 3600)

    # Booting again starts a new attempt: the old one is superseded, the new one in progress.
    api.patch(f"/profiles/{pid}", {"stuck_after": 60}, expect=200)
    assert len(api.get("/boots?stuck=true", expect=200).json["items"]) == 1
    pxe_boot_until_decision(client, api)
    flush(app)
    newest, older = api.get(f"/machines/{mid}/boots", expect=200).json["items"]
    assert (newest["status"], older["status"]) == ("in_progress", "superseded")
    assert [s["stage"] for s in newest["stages"]] == ["lease", "bootstrap", "decision"]
    assert api.get("/boots?stuck=true", expect=200).json["items"] == []


def test_a_local_boot_is_handed_to_the_disk_and_never_stuck(
    api: Api, client: FlaskClient, app: Flask, machine: dict[str, Any]
) -> None:
    api.patch(f"/machines/{machine['id']}", {"profile": "disk"}, expect=200)
    client.get("/boot.ipxe?mac=52-54-00-AA-CC-01", environ_overrides={"REMOTE_ADDR": "10.9.9.9"})
    client.get(ipxe_query(mac=MAC), environ_overrides={"REMOTE_ADDR": IP})
    flush(app)
    (a,) = api.get(f"/machines/{machine['id']}/boots?limit=3", expect=200).json["items"]
    assert (a["status"], a["boot_id"], a["not_seen"]) == ("local", None, [])
    # The bootstrap came from another address but named the MAC: it is attributed.
    assert a["stages"][0]["stage"] == "bootstrap"
    assert a["stages"][0]["data"]["matched_by"] == "mac"


def test_boots_of_an_unknown_machine_is_404_and_reading_needs_a_token(
    api: Api, reader: Api, client: FlaskClient
) -> None:
    api.get("/machines/999/boots", expect=404)
    reader.get("/boots?stuck=true", expect=200)
    assert client.get("/api/v1/boots?stuck=true").status_code == 401
    api.get("/boots?stuck=false", expect=422)


def test_a_boot_that_stops_after_the_kernel_says_so(
    api: Api, client: FlaskClient, app: Flask, db: Database, machine: dict[str, Any]
) -> None:
    pxe_boot_until_decision(client, api)
    ingest(db, nginx_line("/assets/vmlinuz", size=8_000_000, took=2.5))
    with db.write() as s:
        for row in [*s.scalars(select(Event)), *s.scalars(select(Boot))]:
            for col in ("at", "created_at", "expires_at"):
                if hasattr(row, col):
                    setattr(row, col, getattr(row, col) - timedelta(minutes=40))
    (stuck,) = api.get("/boots?stuck=true", expect=200).json["items"]
    assert (stuck["last_stage"], stuck["not_seen"]) == ("kernel", ["initrd"])
    assert stuck["summary"] == (
        "fetched /assets/vmlinuz (8000000 bytes in 2.5 s, HTTP 200) 40 min ago; "
        "never fetched its initrd, documents or reported completion"
    )

    # The watcher (serve's child) records the event once an attempt, and the gauge.
    settings = app.config["BOOTBRAIN"]
    for _ in range(2):
        assert watch_stuck_once(db, settings) == 1
        (event,) = api.get("/events?kind=boot.stuck", expect=200).json["items"]
    assert event["machine_id"] == machine["id"]
    assert event["data"]["boot_id"] == stuck["boot_id"]
    assert event["data"]["last_stage"] == "kernel"
    assert "never fetched its initrd" in event["message"]
    assert "bootbrain_boots_stuck 1.0" in exposition().decode()
    # Power-cycled, it boots again: not stuck now, the gauge falls; the event stays.
    pxe_boot_until_decision(client, api)
    flush(app)
    assert watch_stuck_once(db, settings) == 0
    assert "bootbrain_boots_stuck 0.0" in exposition().decode()
    assert len(api.get("/events?kind=boot.stuck", expect=200).json["items"]) == 1


def test_behind_nginx_the_machine_address_comes_from_x_forwarded_for(
    db_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(db_url, tmp_path, trusted_proxies=1))
    app.testing = True
    try:
        client = app.test_client()
        api = Api(client, make_token(app, "admin", "write"))
        mid = api.post("/machines", {"nics": [{"mac": MAC}]}, expect=201).json["id"]
        nginx = {"REMOTE_ADDR": "127.0.0.1"}
        for path in ("/boot.ipxe", ipxe_query(mac=MAC)):
            client.get(path, environ_overrides=nginx, headers={"X-Forwarded-For": IP})
        flush(app)
        (a,) = api.get(f"/machines/{mid}/boots", expect=200).json["items"]
        assert a["ip"] == IP
        assert [s["stage"] for s in a["stages"]] == ["bootstrap", "decision"]
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()
