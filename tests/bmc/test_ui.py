"""Power through the dashboard, against OpenIPMI's ``ipmi_sim``: a write token's
buttons reach the BMC, a read token has none and its forged POST is refused."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Api, make_token
from tests.ui.conftest import login

from .conftest import PASSWORD, USER, IpmiSim


def test_power_through_the_dashboard(
    app: Flask, client: FlaskClient, api: Api, ipmi_sim: IpmiSim
) -> None:
    mid = int(api.post("/machines", {"hostname": "node-1"}, expect=201).get_json()["id"])
    api.put(
        f"/machines/{mid}/bmc",
        {"kind": "ipmi", "address": "127.0.0.1", "port": ipmi_sim.port,
         "username": USER, "password": PASSWORD},
        expect=200,
    )  # fmt: skip

    reader = app.test_client()
    csrf = login(reader, make_token(app, "viewer", "read"))
    page = reader.get(f"/ui/machines/{mid}?power=1").get_data(as_text=True)
    assert '<dd id="power-state">off</dd>' in page
    assert 'id="power-on"' not in page
    assert (
        reader.post(
            f"/ui/machines/{mid}/power", data={"action": "on", "csrf_token": csrf}
        ).status_code
        == 403
    )
    assert ipmi_sim.power() == "off"

    csrf = login(client, make_token(app, "operator", "write"))
    assert 'id="power-on"' in client.get(f"/ui/machines/{mid}").get_data(as_text=True)
    resp = client.post(f"/ui/machines/{mid}/power", data={"action": "on", "csrf_token": csrf})
    assert resp.status_code == 302
    assert ipmi_sim.power() == "on"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Power on: the machine is on." in page
    assert '<dd id="power-state">on</dd>' in page
    client.post(f"/ui/machines/{mid}/power", data={"action": "off", "csrf_token": csrf})
    assert ipmi_sim.power() == "off"
    assert (
        client.post(
            f"/ui/machines/{mid}/power", data={"action": "reinstall", "csrf_token": csrf}
        ).status_code
        == 400
    )
    assert PASSWORD not in page


def test_reinstall_through_the_dashboard(
    app: Flask, client: FlaskClient, api: Api, ipmi_sim: IpmiSim
) -> None:
    api.post("/profiles", {"name": "install", "kind": "local"}, expect=201)
    mid = int(api.post("/machines", {"hostname": "node-2"}, expect=201).get_json()["id"])
    bmc = {"kind": "ipmi", "address": "127.0.0.1", "port": ipmi_sim.port, "username": USER}
    api.put(f"/machines/{mid}/bmc", {**bmc, "password": PASSWORD}, expect=200)

    reader = app.test_client()
    csrf = login(reader, make_token(app, "viewer", "read"))
    assert 'id="reinstall"' not in reader.get(f"/ui/machines/{mid}").get_data(as_text=True)
    forged = reader.post(
        f"/ui/machines/{mid}/reinstall", data={"profile": "install", "csrf_token": csrf}
    )
    assert forged.status_code == 403
    assert ipmi_sim.actions() == []

    csrf = login(client, make_token(app, "operator", "write"))
    assert 'id="reinstall"' in client.get(f"/ui/machines/{mid}").get_data(as_text=True)
    resp = client.post(
        f"/ui/machines/{mid}/reinstall", data={"profile": "install", "csrf_token": csrf}
    )
    assert resp.status_code == 302
    assert ipmi_sim.actions() == ["boot pxe", "power 1"]  # network boot once, then on
    assert api.get(f"/machines/{mid}").get_json()["next_boot"]["profile"] == "install"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Reinstall done: next boot install, the machine is on." in page

    # A BMC that refuses the credentials: nothing rebooted, the next boot withdrawn.
    api.delete(f"/machines/{mid}/next-boot", expect=204)
    api.put(f"/machines/{mid}/bmc", {**bmc, "password": "wrong-password"}, expect=200)
    resp = client.post(
        f"/ui/machines/{mid}/reinstall", data={"profile": "install", "csrf_token": csrf}
    )
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Not reinstalled:" in page and "wrong-password" not in page
    assert api.get(f"/machines/{mid}").get_json()["next_boot"] is None
    assert ipmi_sim.actions() == ["boot pxe", "power 1"]
