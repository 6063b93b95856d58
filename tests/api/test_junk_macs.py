"""Junk MACs (all-zero, broadcast, multicast) never become boot keys (issue 16, case 10):
the API refuses them naming the field, and /ipxe ignores them the way it ignores junk
UUIDs, so no machine is found or registered by one."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bootbrain.models import Machine
from tests.api.test_boot import boot
from tests.api.test_leases import lease
from tests.conftest import Api, make_settings

JUNK = ["00:00:00:00:00:00", "FF-FF-FF-FF-FF-FF", "01:00:5e:00:00:fb", "33:33:00:00:00:01"]


@pytest.mark.parametrize("mac", JUNK)
def test_api_refuses_a_junk_nic_mac(api: Api, mac: str) -> None:
    resp = api.post("/machines", {"nics": [{"mac": mac}]}, expect=422)
    assert resp.mimetype == "application/problem+json"
    assert "nics.0.mac" in [e["field"] for e in resp.json["errors"]], resp.json
    m = api.post("/machines", {"hostname": "ok1"}, expect=201).json
    resp = api.patch(f"/machines/{m['id']}", {"nics": [{"mac": mac}]}, expect=422)
    assert "nics.0.mac" in [e["field"] for e in resp.json["errors"]], resp.json
    assert api.get(f"/machines/{m['id']}").json["nics"] == []


@pytest.mark.parametrize("mac", JUNK)
def test_lease_event_with_a_junk_mac_is_refused(api: Api, mac: str) -> None:
    resp = api.post("/lease-events", lease(mac=mac), expect=422)
    assert "mac" in [e["field"] for e in resp.json["errors"]], resp.json


def test_a_locally_administered_mac_is_a_boot_key(api: Api) -> None:
    m = api.post("/machines", {"nics": [{"mac": "02:00:00:00:00:01"}]}, expect=201).json
    assert m["nics"][0]["mac"] == "02:00:00:00:00:01"


@pytest.mark.parametrize("mac", JUNK)
def test_ipxe_ignores_a_junk_mac(tmp_path, db_url, mac: str) -> None:  # type: ignore[no-untyped-def]
    from bootbrain.app import create_app

    app = create_app(make_settings(db_url, tmp_path, discovery=True))
    try:
        client = app.test_client()
        script = boot(client, uuid="", mac=mac.replace(":", "-"))
        assert "#!ipxe" in script
        with app.extensions["bootbrain"].db.read() as s:
            assert s.scalar(select(func.count()).select_from(Machine)) == 0
    finally:
        app.extensions["bootbrain"].events.close()
