"""Reinstall now, through the API, against real emulated BMCs (ipmi_sim, sushy-tools):
the one-shot next boot, network-boot-once as the BMC records it, the power-cycle, each
step an event; a BMC failure withdraws the next boot and answers problem+json; the
password is in no answer, event or log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.ports import free_port

from .conftest import PASSWORD, USER, IpmiSim, Redfish


def _machine(api: Api, hostname: str = "node-1", tags: list[str] | None = None) -> int:
    r = api.post("/machines", {"hostname": hostname, "tags": tags or []}, expect=201)
    return int(r.get_json()["id"])


def _profile(api: Api, name: str = "install") -> None:
    api.post("/profiles", {"name": name, "kind": "local"}, expect=201)


def _ipmi(api: Api, mid: int, sim: IpmiSim, password: str = PASSWORD) -> None:
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "ipmi", "address": "127.0.0.1", "port": sim.port,
         "username": USER, "password": password},
        expect=200,
    )


def _events(api: Api, mid: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"/events?machine_id={mid}&limit=500").get_json()["items"]
    return sorted(items, key=lambda e: e["id"])


def _steps(api: Api, mid: int) -> list[str]:
    return [e["data"]["step"] for e in _events(api, mid) if e["kind"].startswith("reinstall")]


def _no_password_anywhere(api: Api, mid: int, caplog: pytest.LogCaptureFixture) -> None:
    for path in (f"/machines/{mid}", f"/machines/{mid}/bmc", "/events?limit=500"):
        assert PASSWORD not in api.get(path).get_data(as_text=True)
    assert PASSWORD not in caplog.text


def test_reinstall_over_ipmi(
    api: Api, ipmi_sim: IpmiSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _profile(api)
    mid = _machine(api)
    _ipmi(api, mid, ipmi_sim)

    r = api.post(f"/machines/{mid}/reinstall", {"profile": "install"}, expect=200)
    body = r.get_json()
    assert body["status"] == "done" and body["power"] == "on"
    assert [s["step"] for s in body["steps"]] == [
        "next-boot", "power-state", "boot-once", "power-on", "done"
    ]
    # What the BMC itself did: boot device PXE, then power on (it was off).
    assert ipmi_sim.actions() == ["boot pxe", "power 1"]
    machine = api.get(f"/machines/{mid}", expect=200).get_json()
    assert machine["next_boot"]["profile"] == "install"
    assert machine["power"] == "on" and machine["bmc_error"] is None
    assert _steps(api, mid) == ["next-boot", "power-state", "boot-once", "power-on", "done"]

    # On now: a hard reset, not a power-on.
    api.post(f"/machines/{mid}/reinstall", {"profile": "install"}, expect=200)
    assert ipmi_sim.actions()[2:] == ["boot pxe", "reset 1"]
    _no_password_anywhere(api, mid, caplog)


def test_reinstall_over_redfish(
    api: Api, redfish: Redfish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _profile(api)
    mid = _machine(api)
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "redfish", "address": "http://127.0.0.1", "port": redfish.port,
         "username": USER, "password": PASSWORD, "system_id": redfish.system_id},
        expect=200,
    )
    body = api.post(
        f"/machines/{mid}/reinstall", {"profile": "install", "expires_in": 3600}, expect=200
    ).get_json()
    assert body["status"] == "done" and body["boot_confirmed"] is True
    system = redfish.system()
    boot = system["Boot"]
    assert isinstance(boot, dict)
    # sushy-tools always reports Enabled "Continuous" (it ignores the field): the
    # target is what this emulator can record.
    assert boot["BootSourceOverrideTarget"] == "Pxe"
    assert system["PowerState"] == "On"
    assert api.get(f"/machines/{mid}").get_json()["next_boot"]["profile"] == "install"
    assert "power-on" in _steps(api, mid)
    _no_password_anywhere(api, mid, caplog)


def test_wrong_password_withdraws_the_next_boot(
    api: Api, ipmi_sim: IpmiSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _profile(api)
    mid = _machine(api)
    _ipmi(api, mid, ipmi_sim, password=PASSWORD + "-wrong")
    r = api.post(f"/machines/{mid}/reinstall", {"profile": "install"}, expect=502)
    assert r.mimetype == "application/problem+json"
    detail = r.get_json()["detail"]
    assert "node-1" in detail and f"ipmi://127.0.0.1:{ipmi_sim.port}" in detail
    assert "withdrawn" in detail
    machine = api.get(f"/machines/{mid}").get_json()
    assert machine["next_boot"] is None
    assert "refused the credentials" in machine["bmc_error"]
    assert ipmi_sim.actions() == [] and ipmi_sim.power() == "off"
    assert _steps(api, mid) == ["next-boot", "failed"]
    assert PASSWORD not in r.get_data(as_text=True)
    _no_password_anywhere(api, mid, caplog)


def test_unreachable_bmc_is_a_504(api: Api) -> None:
    _profile(api)
    mid = _machine(api)
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "redfish", "address": "http://127.0.0.1", "port": free_port(),
         "username": USER, "password": PASSWORD},
        expect=200,
    )
    r = api.post(f"/machines/{mid}/reinstall", {"profile": "install"}, expect=504)
    assert r.mimetype == "application/problem+json"
    assert "no answer" in r.get_json()["detail"] and "node-1" in r.get_json()["detail"]
    assert api.get(f"/machines/{mid}").get_json()["next_boot"] is None


def test_rejected_boot_device_withdraws_and_leaves_power_alone(
    api: Api, ipmi_sim: IpmiSim
) -> None:
    chassis = ipmi_sim.dir / "chassis.sh"
    chassis.write_text(
        chassis.read_text().replace("while", '[ "$1" = boot ] && exit 1\nwhile', 1)
    )
    _profile(api)
    mid = _machine(api)
    _ipmi(api, mid, ipmi_sim)
    r = api.post(f"/machines/{mid}/reinstall", {"profile": "install"}, expect=502)
    assert "reinstall stopped at boot-once" in r.get_json()["detail"]
    assert api.get(f"/machines/{mid}").get_json()["next_boot"] is None
    assert ipmi_sim.power() == "off" and ipmi_sim.actions() == []


def test_no_bmc_bad_profile_and_power_on_false(api: Api, ipmi_sim: IpmiSim) -> None:
    _profile(api)
    mid = _machine(api)
    r = api.post(f"/machines/{mid}/reinstall", {"profile": "install"}, expect=409)
    assert "no BMC record" in r.get_json()["detail"]
    _ipmi(api, mid, ipmi_sim)
    r = api.post(f"/machines/{mid}/reinstall", {"profile": "nope"}, expect=422)
    assert r.get_json()["errors"][0]["field"] == "profile"
    assert ipmi_sim.actions() == []

    body = api.post(
        f"/machines/{mid}/reinstall", {"profile": "install", "power_on": False}, expect=200
    ).get_json()
    assert body["status"] == "left-off" and "power_on is false" in body["detail"]
    assert ipmi_sim.actions() == ["boot pxe"] and ipmi_sim.power() == "off"
    # Pending: the machine reinstalls when someone powers it on.
    assert api.get(f"/machines/{mid}").get_json()["next_boot"]["profile"] == "install"


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = most = 0
    for _, d in edges:  # an end sorts before a start at the same instant
        now += d
        most = max(most, now)
    return most


def _timestamp(at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(at).timestamp()


def test_rolling_reinstall_never_more_than_k_in_flight(
    api: Api, ipmi_sims: Any, tmp_path: Path
) -> None:
    """6 BMCs, K = 2: the events (and the BMCs' own clocks) never show 3 machines in
    their sequence at once; then with two wrong passwords and max_failures 2, none
    starts after the second failure and the rest are skipped, untouched."""
    sims: list[IpmiSim] = ipmi_sims(6, 0.3)
    _profile(api)
    ids = []
    for i, sim in enumerate(sims):
        ids.append(_machine(api, f"rack-{i}", ["rack1"]))
        _ipmi(api, ids[-1], sim)

    out = api.post(
        "/reinstalls", {"tag": "rack1", "profile": "install", "concurrency": 2}, expect=200
    ).get_json()
    assert out["counts"]["done"] == 6 and out["stopped"] is None
    spans = []
    for mid in ids:
        at = [_timestamp(e["at"]) for e in _events(api, mid) if e["kind"] == "reinstall"]
        spans.append((min(at), max(at)))
    assert _max_overlap(spans) == 2  # it did run two at once, and never three
    bmc_side = [(min(a for a, _ in s.busy()), max(b for _, b in s.busy())) for s in sims]
    assert _max_overlap(bmc_side) <= 2
    assert all(s.actions() == ["boot pxe", "power 1"] for s in sims)

    for mid in ids[1:3]:
        _ipmi(api, mid, sims[ids.index(mid)], password="wrong-one")
    out = api.post(
        "/reinstalls",
        {"hostnames": [f"rack-{i}" for i in range(6)], "profile": "install",
         "concurrency": 2, "max_failures": 2},
        expect=200,
    ).get_json()
    status = [item["status"] for item in out["items"]]
    assert status.count("failed") == 2 and status.count("skipped") >= 1
    assert "stopped after 2 failure" in out["stopped"]
    failed_at = sorted(
        _timestamp(e["at"]) for mid in ids for e in _events(api, mid)
        if e["kind"] == "reinstall.error"
    )
    for mid, item, sim in zip(ids, out["items"], sims, strict=True):
        runs = [e for e in _events(api, mid) if e["kind"].startswith("reinstall")]
        second_run = runs[5:]  # the first run recorded five steps per machine
        if item["status"] == "skipped":
            assert second_run == [] and sim.actions() == ["boot pxe", "power 1"]
        else:
            assert _timestamp(second_run[0]["at"]) < failed_at[1]
    assert "wrong-one" not in api.get("/events?limit=500").get_data(as_text=True)
