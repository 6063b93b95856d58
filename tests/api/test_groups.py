"""Variables by group over the API, on SQLite and PostgreSQL: CRUD, what a boot and its
documents get, what the previews say, and bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_boot import MAC, UUID, boot, flush
from tests.api.test_metadata import metadata_path
from tests.conftest import Api, add_rack1
from tests.unit.test_documents import ED, ED2


@pytest.fixture
def lab(api: Api) -> dict[str, Any]:
    add_rack1(api)
    api.post(
        "/profiles",
        {
            "name": "installer",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "cmdline": "ntp={{ vars.ntp }} disk={{ vars.disk }} "
            "ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL}",
            "variables": {"ntp": "pool.example", "disk": "sda"},
            "tags": ["os:debian"],
            "ssh_keys": [ED],
            "metadata": {"site": "ams"},
            "user_data": "#cloud-config\nntp:\n  servers: [{{ vars.ntp | tojson }}]\n",
        },
        expect=201,
    )
    api.post(
        "/groups",
        {
            "name": "rack-a",
            "network": "rack1",
            "variables": {"ntp": "10.0.0.1"},
            "metadata": {"rack": "a"},
            "os_tags": ["rack:a"],
        },
        expect=201,
    )
    api.post(
        "/groups",
        {
            "name": "gpu-ready",
            "state": "ready",
            "labels": ["accel=gpu"],
            "variables": {"disk": "nvme0n1"},
            "ssh_keys": [ED2],
        },
        expect=201,
    )
    api.post("/groups", {"name": "retired", "state": "retired", "variables": {"disk": "x"}})
    m = api.post(
        "/machines",
        {
            "hostname": "node-1",
            "uuid": UUID,
            "nics": [{"mac": MAC}],
            "network": "rack1",
            "address": "10.200.0.50",
            "profile": "installer",
            "state": "ready",
            "labels": ["accel=gpu", "room=2"],
        },
        expect=201,
    ).json
    return m


def kernel_line(script: str) -> str:
    return next(line for line in script.splitlines() if line.startswith("kernel "))


def test_crud(api: Api) -> None:
    created = api.post(
        "/groups", {"name": "rack-a", "labels": ["rack=a"], "variables": {"ntp": "10.0.0.1"}}
    )
    assert created.status_code == 201, created.json
    gid = created.json["id"]
    assert created.headers["Location"].endswith(f"/groups/{gid}")
    got = api.get(f"/groups/{gid}", expect=200)
    assert got.json["variables"] == {"ntp": "10.0.0.1"}
    changed = api.patch(
        f"/groups/{gid}",
        {"variables": {"ntp": "10.0.0.2"}},
        headers={"If-Match": got.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["labels"] == ["rack=a"]
    assert changed.json["variables"] == {"ntp": "10.0.0.2"}
    assert [g["name"] for g in api.get("/groups", expect=200).json["items"]] == ["rack-a"]
    api.post("/groups", {"name": "rack-a"}, expect=409)
    api.delete(f"/groups/{gid}", expect=204)
    api.get(f"/groups/{gid}", expect=404)


def test_boot_merges_profile_groups_machine(
    api: Api, client: FlaskClient, app: Flask, lab: dict[str, Any]
) -> None:
    script = boot(client)
    assert kernel_line(script).startswith(
        "kernel --name vmlinuz http://bootbrain.test/assets/vmlinuz ntp=10.0.0.1 disk=nvme0n1 ds="
    ), script
    # The machine's own variable wins over every group's.
    api.patch(f"/machines/{lab['id']}", {"variables": {"ntp": "10.9.9.9"}}, expect=200)
    assert " ntp=10.9.9.9 disk=nvme0n1 " in kernel_line(boot(client))
    # Off the network and without the label, only the profile's values are left.
    api.patch(
        f"/machines/{lab['id']}",
        {"variables": None, "labels": [], "network": None, "address": None},
        expect=200,
    )
    assert " ntp=pool.example disk=sda " in kernel_line(boot(client))
    flush(app)
    events = api.get("/events?kind=boot&limit=10", expect=200).json["items"]
    assert events[-1]["data"]["groups"] is None
    assert any(e["data"]["groups"] == ["rack-a", "gpu-ready"] for e in events)


def test_documents_get_group_values(client: FlaskClient, app: Flask, lab: dict[str, Any]) -> None:
    path = metadata_path(boot(client))
    flush(app)
    doc = json.loads(client.get(path + "metadata.json").get_data(as_text=True))
    assert doc["ssh_keys"] == [ED, ED2]
    assert doc["tags"] == ["os:debian", "rack:a"]
    assert doc["metadata"] == {"site": "ams", "rack": "a"}
    user_data = client.get(path + "user-data").get_data(as_text=True)
    assert yaml.safe_load(user_data) == {"ntp": {"servers": ["10.0.0.1"]}}


def test_previews_name_groups_and_sources(api: Api, lab: dict[str, Any]) -> None:
    out = api.get(f"/machines/{lab['id']}/boot-preview", expect=200).json
    assert out["groups"] == ["rack-a", "gpu-ready"]
    assert out["reason"] == (
        "machine 1 is assigned profile 'installer'; groups applied (least specific first): "
        "rack-a, gpu-ready"
    ).replace("machine 1", f"machine {lab['id']}")
    assert out["variables"] == [
        {"name": "disk", "value": "nvme0n1", "source": "group gpu-ready"},
        {"name": "ntp", "value": "10.0.0.1", "source": "group rack-a"},
    ]
    config = api.get(f"/machines/{lab['id']}/config-preview", expect=200).json
    assert config["groups"] == ["rack-a", "gpu-ready"]
    assert {"name": "ntp", "value": "10.0.0.1", "source": "group rack-a"} in config["variables"]
    assert config["metadata"]["metadata"] == {"site": "ams", "rack": "a"}


def test_a_variable_no_one_sets_is_named_in_the_preview(api: Api, lab: dict[str, Any]) -> None:
    api.post(
        "/profiles",
        {"name": "needs-x", "kind": "linux", "kernel": "{{ assets }}/k", "cmdline": "{{ vars.x }}"},
        expect=201,
    )
    api.patch(f"/machines/{lab['id']}", {"profile": "needs-x"}, expect=200)
    out = api.get(f"/machines/{lab['id']}/boot-preview", expect=200).json
    assert out["step"] == "error"
    assert out["problem"]["field"] == "cmdline"
    assert "x" in out["problem"]["message"]


BAD = [
    ({"name": "g", "variables": {"1ntp": "a"}}, "variables"),
    ({"name": "g", "variables": {"ntp-server": "a"}}, "variables"),
    ({"name": "g", "variables": {"ntp": "a b"}}, "variables"),
    ({"name": "g", "variables": {"ntp": "a\nb"}}, "variables"),
    ({"name": "g", "variables": {"ntp": "${net0/ip}"}}, "variables"),
    ({"name": "g", "variables": {"ntp": "{{ 7 * 7 }}"}}, "variables"),
    ({"name": "g", "variables": {"ntp": "a;b"}}, "variables"),
    ({"name": "g", "labels": ["rack"]}, "labels"),
    ({"name": "g", "labels": ["rack=a b"]}, "labels"),
    ({"name": "g", "labels": ["rack=a", "rack=b"]}, "labels"),
    ({"name": "g", "state": "asleep"}, "state"),
    ({"name": "g", "network": "rack 1"}, "network"),
    ({"name": "g", "ssh_keys": ["ssh-dss AAAA"]}, "ssh_keys"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_bad_group_is_422_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    resp = api.post("/groups", body, expect=422)
    fields = [e["field"] for e in resp.json["errors"]]
    assert any(f.split(".")[0] == field for f in fields), resp.json
    assert api.get("/groups", expect=200).json["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"labels": ["=x"]}, "labels"),
        ({"labels": ["k=v\n"]}, "labels"),
        ({"variables": {"ntp": "$x"}}, "variables"),
    ],
)
def test_bad_machine_labels_and_variables_are_422(
    api: Api, body: dict[str, Any], field: str
) -> None:
    resp = api.post("/machines", {"hostname": "n1", **body}, expect=422)
    assert any(e["field"].split(".")[0] == field for e in resp.json["errors"]), resp.json
    resp = api.post("/profiles", {"name": "p", "kind": "local", "variables": {"a b": "c"}})
    assert resp.status_code == 422
    assert resp.json["errors"][0]["field"].startswith("variables"), resp.json
