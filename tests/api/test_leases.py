"""Lease events from the DHCP hooks."""

from __future__ import annotations

import uuid

from tests.conftest import Api
from tests.ports import free_port


def lease(
    action: str = "add", mac: str = "52:54:00:aa:cc:01", ip: str = "10.0.0.5", **kw: object
) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "source": "dnsmasq",
        "action": action,
        "mac": mac,
        "ip": ip,
        "hostname": "n1",
        "user_class": "iPXE",
        "arch": 7,
        **kw,
    }


def test_lease_updates_last_seen_and_is_recorded_once(api: Api) -> None:
    m = api.post("/machines", {"nics": [{"mac": "52:54:00:aa:cc:01"}]}, expect=201).json
    body = lease()
    first = api.post("/lease-events", body, expect=202).json
    assert first == {"accepted": True, "duplicate": False, "machine_id": m["id"]}
    again = api.post("/lease-events", body, expect=202).json
    assert again["duplicate"] is True
    events = api.get("/events?kind=lease", expect=200).json["items"]
    assert len(events) == 1
    assert events[0]["data"] == {
        "source": "dnsmasq",
        "action": "add",
        "hostname": "n1",
        "user_class": "iPXE",
        "arch": 7,
    }
    after = api.get(f"/machines/{m['id']}", expect=200).json
    assert after["last_seen_ip"] == "10.0.0.5"
    assert after["version"] == m["version"]  # last-seen is not an operator change


def test_unknown_mac_is_recorded_without_a_machine(api: Api) -> None:
    out = api.post("/lease-events", lease(mac="AA-BB-CC-00-00-01"), expect=202).json
    assert out["machine_id"] is None
    assert (
        api.get("/events?kind=lease&mac=aa:bb:cc:00:00:01").json["items"][0]["mac"]
        == "aa:bb:cc:00:00:01"
    )
    assert api.get("/machines").json["items"] == []


def test_bad_lease_events_are_422(api: Api) -> None:
    for bad, field in (
        (lease(mac="nope"), "mac"),
        (lease(ip="10.0.0.999"), "ip"),
        (lease(action="explode"), "action"),
        (lease(id="x"), "id"),
    ):
        resp = api.post("/lease-events", bad, expect=422)
        assert field in [e["field"] for e in resp.json["errors"]]
    assert api.get("/events?kind=lease").json["items"] == []


def test_events_spooled_while_bootbrain_is_down_are_recorded_at_start_up(
    api: Api,
    app,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """The real hook, run as dnsmasq runs it, against a port nobody listens on."""
    import subprocess
    import sys

    from bootbrain.integrations import leasehook
    from bootbrain.integrations.sync import replay_spools

    settings = app.config["BOOTBRAIN"]
    m = api.post("/machines", {"nics": [{"mac": "52:54:00:aa:cc:07"}]}, expect=201).json
    port = free_port()  # refuses connections: bootbrain is down
    env = {
        "BOOTBRAIN_HOOK_URL": f"http://127.0.0.1:{port}",
        "BOOTBRAIN_HOOK_TOKEN": "bbt_x_y",
        "BOOTBRAIN_HOOK_SPOOL_DIR": str(settings.dnsmasq.spool_dir),
        "BOOTBRAIN_HOOK_CONFIG": str(tmp_path / "absent.conf"),
        "DNSMASQ_USER_CLASS0": "iPXE",
        "DNSMASQ_VENDOR_CLASS": "PXEClient:Arch:00007:UNDI:003016",
    }
    for action, ip in (("add", "10.0.0.7"), ("old", "10.0.0.7"), ("del", "10.0.0.7")):
        done = subprocess.run(
            [sys.executable, leasehook.__file__, action, "52:54:00:aa:cc:07", ip, "n7"],
            env=env,
            timeout=10,
            capture_output=True,
        )
        assert done.returncode == 0
    assert len(leasehook.spooled(settings.dnsmasq.spool_dir)) == 3
    assert api.get("/events?kind=lease").json["items"] == []

    assert replay_spools(settings, app.extensions["bootbrain"].db) == 3
    events = api.get("/events?kind=lease", expect=200).json["items"]
    assert [e["data"]["action"] for e in events] == ["add", "old", "del"]
    assert {e["machine_id"] for e in events} == {m["id"]}
    assert events[0]["data"]["arch"] == 7
    assert leasehook.spooled(settings.dnsmasq.spool_dir) == []
    assert replay_spools(settings, app.extensions["bootbrain"].db) == 0
