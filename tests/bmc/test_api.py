"""BMC records and power control through the API, against real emulated BMCs: the
password is encrypted in the database row and absent from every answer, event and log."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from bootbrain.db import Database
from tests.conftest import Api
from tests.ports import free_port

from .conftest import PASSWORD, USER, IpmiSim, Redfish


def _machine(api: Api, hostname: str = "node-1") -> int:
    r = api.post("/machines", {"hostname": hostname}, expect=201)
    return int(r.get_json()["id"])


def _leaks(api: Api, mid: int) -> list[str]:
    bodies = [
        api.get(f"/machines/{mid}/bmc").get_data(as_text=True),
        api.get(f"/machines/{mid}").get_data(as_text=True),
        api.get("/events?limit=500").get_data(as_text=True),
    ]
    return [b for b in bodies if PASSWORD in b]


def test_ipmi_power_through_the_api(
    api: Api, db: Database, ipmi_sim: IpmiSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mid = _machine(api)
    put = api.put(
        f"/machines/{mid}/bmc",
        {"kind": "ipmi", "address": "127.0.0.1", "port": ipmi_sim.port,
         "username": USER, "password": PASSWORD},
        expect=200,
    )
    assert "password" not in put.get_json()
    assert api.get(f"/machines/{mid}/power", expect=200).get_json()["power"] == "off"
    got = api.post(f"/machines/{mid}/power", {"action": "cycle"}, expect=200).get_json()
    assert got["power"] == "on" and ipmi_sim.power() == "on"
    api.post(f"/machines/{mid}/power", {"action": "network-boot-once"}, expect=200)
    assert ipmi_sim.boot() == "pxe"
    api.post(f"/machines/{mid}/power", {"action": "off"}, expect=200)
    assert ipmi_sim.power() == "off"

    with db.read() as s:
        stored = s.execute(text("SELECT password_enc FROM bmc")).scalar_one()
    assert PASSWORD not in stored and stored.startswith("gAAAA")  # a Fernet token
    assert _leaks(api, mid) == []
    assert PASSWORD not in caplog.text


def test_wrong_password_is_a_502_naming_machine_and_bmc(api: Api, ipmi_sim: IpmiSim) -> None:
    mid = _machine(api)
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "ipmi", "address": "127.0.0.1", "port": ipmi_sim.port,
         "username": USER, "password": "wrong-one"},
        expect=200,
    )
    r = api.post(f"/machines/{mid}/power", {"action": "on"}, expect=502)
    detail = r.get_json()["detail"]
    assert "node-1" in detail and f"ipmi://127.0.0.1:{ipmi_sim.port}" in detail
    assert "wrong-one" not in detail and ipmi_sim.power() == "off"


def test_redfish_power_through_the_api(
    api: Api, redfish: Redfish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mid = _machine(api)
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "redfish", "address": "http://127.0.0.1", "port": redfish.port,
         "username": USER, "password": PASSWORD, "system_id": redfish.system_id},
        expect=200,
    )
    api.post(f"/machines/{mid}/power", {"action": "on"}, expect=200)
    assert redfish.system()["PowerState"] == "On"
    got = api.post(f"/machines/{mid}/power", {"action": "network-boot-once"}, expect=200)
    assert got.get_json()["boot_confirmed"] is True
    assert _leaks(api, mid) == []
    assert PASSWORD not in caplog.text


def test_no_bmc_and_unreachable(api: Api) -> None:
    mid = _machine(api)
    api.get(f"/machines/{mid}/power", expect=404)
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "redfish", "address": "http://127.0.0.1", "port": free_port(),
         "username": USER, "password": PASSWORD},
        expect=200,
    )
    assert "no answer" in api.get(f"/machines/{mid}/power", expect=502).get_json()["detail"]
