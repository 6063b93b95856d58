"""Machines over the API: canonical forms, conflicts, ETags, filters, pagination."""

from __future__ import annotations

from tests.conftest import Api


def _network(api: Api, name: str = "rack1", cidr: str = "10.20.0.0/24") -> dict:
    return api.post(
        "/networks",
        {
            "name": name,
            "cidr": cidr,
            "gateway": cidr.replace("0/24", "1"),
            "dns": ["10.20.0.2"],
            "domain": "dc1.example.net",
        },
        expect=201,
    ).json


def test_create_canonicalises_identity(api: Api) -> None:
    resp = api.post(
        "/machines",
        {
            "hostname": "Node-01",
            "uuid": "4C4C4544-0042-3610-8052-B4C04F4E3232",
            "nics": [{"mac": "AA-BB-CC-DD-EE-01"}, {"mac": "aabbccddee02"}],
            "tags": ["rack1"],
        },
        expect=201,
    )
    m = resp.json
    assert m["hostname"] == "node-01"
    assert m["uuid"] == "4c4c4544-0042-3610-8052-b4c04f4e3232"
    assert [n["mac"] for n in m["nics"]] == ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
    assert [n["boot"] for n in m["nics"]] == [True, False]
    assert resp.headers["ETag"] == f'"{m["version"]}"'
    assert resp.headers["Location"] == f"/api/v1/machines/{m['id']}"
    assert api.get(f"/machines/{m['id']}", expect=200).json == m


def test_duplicate_mac_is_409_naming_the_holder(api: Api) -> None:
    first = api.post("/machines", {"nics": [{"mac": "aa:bb:cc:dd:ee:01"}]}, expect=201).json
    resp = api.post("/machines", {"nics": [{"mac": "AA:BB:CC:DD:EE:01"}]}, expect=409)
    assert resp.mimetype == "application/problem+json"
    assert resp.json["holder"] == first["id"]
    assert resp.json["errors"][0]["field"] == "nics"
    assert f"machine {first['id']}" in resp.json["detail"]


def test_address_in_use_is_409_and_outside_network_is_422(api: Api) -> None:
    _network(api)
    a = api.post(
        "/machines", {"hostname": "a", "network": "rack1", "address": "10.20.0.10"}, expect=201
    ).json
    resp = api.post(
        "/machines", {"hostname": "b", "network": "rack1", "address": "10.20.0.10"}, expect=409
    )
    assert resp.json["holder"] == a["id"]
    assert resp.json["errors"][0]["field"] == "address"
    resp = api.post(
        "/machines", {"hostname": "c", "network": "rack1", "address": "10.99.0.10"}, expect=422
    )
    assert resp.json["errors"][0]["field"] == "address"
    resp = api.post("/machines", {"hostname": "d", "address": "10.20.0.11"}, expect=422)
    assert resp.json["errors"][0]["field"] == "network"


def test_junk_uuid_is_stored_but_never_unique(api: Api) -> None:
    junk = "03000200-0400-0500-0006-000700080009"
    a = api.post("/machines", {"uuid": junk}, expect=201).json
    b = api.post("/machines", {"uuid": junk}, expect=201).json
    assert a["uuid"] == b["uuid"] == junk
    api.post("/machines", {"uuid": "00000000-0000-0000-0000-000000000000"}, expect=201)
    api.post("/machines", {"uuid": "00000000-0000-0000-0000-000000000000"}, expect=201)
    real = "4c4c4544-0042-3610-8052-b4c04f4e3232"
    holder = api.post("/machines", {"uuid": real}, expect=201).json
    dup = api.post("/machines", {"uuid": real}, expect=409).json
    assert dup["errors"][0]["field"] == "uuid"
    assert dup["holder"] == holder["id"]


def test_stale_if_match_is_412_and_current_one_writes(api: Api) -> None:
    m = api.post("/machines", {"hostname": "n1"}, expect=201).json
    etag = f'"{m["version"]}"'
    changed = api.patch(
        f"/machines/{m['id']}", {"notes": "first"}, headers={"If-Match": etag}, expect=200
    )
    assert changed.headers["ETag"] != etag
    resp = api.patch(
        f"/machines/{m['id']}", {"notes": "second"}, headers={"If-Match": etag}, expect=412
    )
    assert resp.json["status"] == 412
    assert api.get(f"/machines/{m['id']}").json["notes"] == "first"
    api.delete(f"/machines/{m['id']}", headers={"If-Match": etag}, expect=412)
    api.delete(f"/machines/{m['id']}", headers={"If-Match": changed.headers["ETag"]}, expect=204)
    api.get(f"/machines/{m['id']}", expect=404)


def test_filters(api: Api) -> None:
    api.post(
        "/machines",
        {
            "hostname": "a",
            "serial": "S1",
            "tags": ["gpu"],
            "state": "ready",
            "nics": [{"mac": "aa:bb:cc:dd:ee:01"}],
        },
        expect=201,
    )
    api.post(
        "/machines",
        {"hostname": "b", "serial": "S2", "tags": ["cpu"], "nics": [{"mac": "aa:bb:cc:dd:ee:02"}]},
        expect=201,
    )

    def names(q: str) -> list[str]:
        return [m["hostname"] for m in api.get(f"/machines?{q}", expect=200).json["items"]]

    assert names("mac=AA-BB-CC-DD-EE-02") == ["b"]
    assert names("tag=gpu") == ["a"]
    assert names("state=ready") == ["a"]
    assert names("serial=S2") == ["b"]
    assert names("hostname=a") == ["a"]
    assert names("") == ["a", "b"]


def test_pagination_is_stable_and_complete(api: Api) -> None:
    for i in range(7):
        api.post("/machines", {"hostname": f"n{i}"}, expect=201)
    seen, after = [], None
    while True:
        page = api.get("/machines?limit=3" + (f"&after={after}" if after else ""), expect=200).json
        seen += [m["hostname"] for m in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"n{i}" for i in range(7)]


def test_patch_replaces_nics_and_tags(api: Api) -> None:
    m = api.post(
        "/machines", {"nics": [{"mac": "aa:bb:cc:dd:ee:01"}], "tags": ["x"]}, expect=201
    ).json
    out = api.patch(
        f"/machines/{m['id']}",
        {"nics": [{"mac": "aa:bb:cc:dd:ee:09"}], "tags": ["y", "z"]},
        expect=200,
    ).json
    assert [n["mac"] for n in out["nics"]] == ["aa:bb:cc:dd:ee:09"]
    assert out["tags"] == ["y", "z"]
    # the freed MAC can be used by another machine
    api.post("/machines", {"nics": [{"mac": "aa:bb:cc:dd:ee:01"}]}, expect=201)


def test_null_clears_a_list_like_an_empty_one(api: Api) -> None:
    m = api.post(
        "/machines",
        {"nics": [{"mac": "aa:bb:cc:dd:ee:21"}], "tags": ["a"], "ssh_keys": []},
        expect=201,
    ).json
    out = api.patch(f"/machines/{m['id']}", {"nics": None, "tags": None}, expect=200).json
    assert out["nics"] == []
    assert out["tags"] == []


def test_changes_are_recorded_as_events(api: Api) -> None:
    m = api.post("/machines", {"hostname": "n1"}, expect=201).json
    api.patch(f"/machines/{m['id']}", {"state": "ready"}, expect=200)
    events = api.get(f"/events?machine_id={m['id']}&kind=change", expect=200).json["items"]
    assert [e["message"] for e in events] == [
        f"machine {m['id']} created by token:admin",
        f"machine {m['id']} changed by token:admin",
    ]
    assert events[1]["data"]["fields"] == ["state"]


def test_history_outlives_a_deleted_machine(api: Api) -> None:
    m = api.post("/machines", {"hostname": "gone"}, expect=201).json
    api.delete(f"/machines/{m['id']}", expect=204)
    events = api.get(f"/events?machine_id={m['id']}", expect=200).json["items"]
    assert [e["message"] for e in events] == [
        f"machine {m['id']} created by token:admin",
        f"machine {m['id']} deleted by token:admin",
    ]
