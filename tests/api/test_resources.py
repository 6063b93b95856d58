"""Networks, profiles and rules: one CRUD test, parameterised per resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Api


@dataclass
class Case:
    path: str
    create: dict[str, Any]
    change: dict[str, Any]
    needs: list[tuple[str, dict[str, Any]]]


LOCAL = ("/profiles", {"name": "disk", "kind": "local"})
CASES = [
    Case(
        "/networks",
        {"name": "rack1", "cidr": "10.1.0.0/24", "gateway": "10.1.0.1"},
        {"dns": ["10.1.0.2", "10.1.0.3"]},
        [],
    ),
    Case(
        "/profiles",
        {
            "name": "deb",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "initrds": ["{{ assets }}/initrd.img"],
            "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} quiet",
        },
        {"cmdline": "console=ttyS0"},
        [],
    ),
    Case(
        "/rules",
        {"name": "efi", "platform": "efi", "profile": "disk", "priority": 5},
        {"priority": 7},
        [LOCAL],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.path.strip("/"))
def test_crud(api: Api, case: Case) -> None:
    for path, body in case.needs:
        api.post(path, body, expect=201)
    created = api.post(case.path, case.create, expect=201)
    obj = created.json
    assert {k: obj[k] for k in case.create} == case.create
    assert api.get(f"{case.path}/{obj['id']}", expect=200).json == obj
    assert [o["id"] for o in api.get(case.path, expect=200).json["items"]] == [obj["id"]]
    dup = api.post(case.path, case.create, expect=409)
    assert dup.json["errors"][0]["field"] == "name"
    changed = api.patch(
        f"{case.path}/{obj['id']}",
        case.change,
        headers={"If-Match": created.headers["ETag"]},
        expect=200,
    ).json
    assert {k: changed[k] for k in case.change} == case.change
    assert changed["version"] == obj["version"] + 1
    api.patch(
        f"{case.path}/{obj['id']}",
        case.change,
        headers={"If-Match": created.headers["ETag"]},
        expect=412,
    )
    api.delete(f"{case.path}/{obj['id']}", expect=204)
    api.get(f"{case.path}/{obj['id']}", expect=404)


def test_profile_in_use_cannot_be_deleted(api: Api) -> None:
    p = api.post(*LOCAL, expect=201).json
    m = api.post("/machines", {"profile": "disk"}, expect=201).json
    resp = api.delete(f"/profiles/{p['id']}", expect=409)
    assert resp.json["holder"] == m["id"]


def test_network_in_use_cannot_be_deleted(api: Api) -> None:
    n = api.post("/networks", {"name": "r", "cidr": "10.1.0.0/24"}, expect=201).json
    m = api.post("/machines", {"network": "r", "address": "10.1.0.5"}, expect=201).json
    resp = api.delete(f"/networks/{n['id']}", expect=409)
    assert resp.json["holder"] == m["id"]
    assert f"used by machine {m['id']}" in resp.json["detail"]
    api.get(f"/networks/{n['id']}", expect=200)  # still there


def test_menu_items_must_exist_and_not_be_menus(api: Api) -> None:
    api.post(*LOCAL, expect=201)
    menu = {
        "name": "m",
        "kind": "menu",
        "menu": {
            "items": [{"key": "disk", "label": "Disk", "profile": "disk"}],
            "default": "disk",
            "timeout": 5,
        },
    }
    api.post("/profiles", menu, expect=201)
    bad = {
        "name": "m2",
        "kind": "menu",
        "menu": {"items": [{"key": "x", "label": "X", "profile": "missing"}]},
    }
    assert (
        api.post("/profiles", bad, expect=422).json["errors"][0]["field"] == "menu.items.0.profile"
    )
    nested = {
        "name": "m3",
        "kind": "menu",
        "menu": {"items": [{"key": "x", "label": "X", "profile": "m"}]},
    }
    api.post("/profiles", nested, expect=422)
    wrong_default = {
        "name": "m4",
        "kind": "menu",
        "menu": {"items": [{"key": "x", "label": "X", "profile": "disk"}], "default": "y"},
    }
    api.post("/profiles", wrong_default, expect=422)


def test_rule_needs_existing_profile(api: Api) -> None:
    resp = api.post("/rules", {"name": "r", "profile": "nope"}, expect=422)
    assert resp.json["errors"][0]["field"] == "profile"
