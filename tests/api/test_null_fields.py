"""An explicit null in a PATCH body either clears the field or is a 422 naming it, and
never leaves a row that breaks reading it back for every caller (issue 16, case 18)."""

from __future__ import annotations

import pytest

from bootbrain import schemas
from tests.conftest import Api

PROFILE = {"name": "p1", "kind": "linux", "kernel": "http://x/vmlinuz", "tags": ["a"]}
NETWORK = {"name": "n1", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1", "dns": ["10.9.0.2"]}
RULE = {"name": "r1", "profile": "p1", "priority": 5, "tags": ["a"], "manufacturer": "Acme"}
MACHINE = {"hostname": "m1", "tags": ["a"], "nics": [{"mac": "52:54:00:12:34:56"}]}
GROUP = {"name": "g1", "state": "ready", "labels": ["a=b"], "variables": {"x": "y"}}

RESOURCES = {
    "rules": (schemas.RuleUpdate, RULE),
    "networks": (schemas.NetworkUpdate, NETWORK),
    "profiles": (schemas.ProfileUpdate, PROFILE),
    "machines": (schemas.MachineUpdate, MACHINE),
    "groups": (schemas.GroupUpdate, GROUP),
}
CASES = [
    (resource, field)
    for resource, (model, _) in RESOURCES.items()
    for field in model.model_fields
]


@pytest.mark.parametrize(("resource", "field"), CASES)
def test_patch_with_null_never_breaks_reads(api: Api, resource: str, field: str) -> None:
    api.post("/profiles", PROFILE, expect=201)
    body = RESOURCES[resource][1]
    item = (
        api.get("/profiles").json["items"][0]
        if resource == "profiles"
        else api.post(f"/{resource}", body, expect=201).json
    )
    resp = api.patch(f"/{resource}/{item['id']}", {field: None})
    assert resp.status_code in (200, 422), (resp.status_code, resp.get_data(as_text=True))
    if resp.status_code == 422:
        assert resp.mimetype == "application/problem+json"
        assert field in [e["field"] for e in resp.json["errors"]], resp.json
    listed = api.get(f"/{resource}", expect=200).json["items"]
    one = api.get(f"/{resource}/{item['id']}", expect=200).json
    assert [i["id"] for i in listed] == [item["id"]]
    if resp.status_code == 200:
        assert one == resp.json
    else:
        assert one["version"] == item["version"]
