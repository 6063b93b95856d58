"""Bad input is a 4xx problem+json naming the field, never a 500, and changes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import Api

BAD_MACHINES = [
    ({"nics": [{"mac": "zz:bb:cc:dd:ee:01"}]}, "nics.0.mac"),
    ({"nics": [{"mac": "aa:bb:cc:dd:ee"}]}, "nics.0.mac"),
    ({"uuid": "not-a-uuid"}, "uuid"),
    ({"hostname": "bad_host"}, "hostname"),
    ({"hostname": "-lead"}, "hostname"),
    ({"hostname": "a" * 64}, "hostname"),
    ({"hostname": "two.labels"}, "hostname"),
    ({"address": "10.0.0.300"}, "address"),
    ({"interface": "eth0 ip=1"}, "interface"),
    ({"interface": "a" * 16}, "interface"),
    ({"serial": "A\nB"}, "serial"),
    ({"serial": "x" * 129}, "serial"),
    ({"manufacturer": "nul\x00byte"}, "manufacturer"),
    ({"state": "exploded"}, "state"),
    ({"tags": ["has space"]}, "tags.0"),
    ({"tags": "notalist"}, "tags"),
    ({"hostname": 42}, "hostname"),
    ({"unknown_field": 1}, "unknown_field"),
    ({"nics": [{"mac": "aa:bb:cc:dd:ee:01"}, {"mac": "AA-BB-CC-DD-EE-01"}]}, "nics"),
]


@pytest.mark.parametrize(("body", "field"), BAD_MACHINES)
def test_bad_machine_is_422_naming_the_field(api: Api, body: dict, field: str) -> None:
    resp = api.post("/machines", body, expect=422)
    assert resp.mimetype == "application/problem+json"
    fields = [e["field"] for e in resp.json["errors"]]
    assert field in fields, resp.json
    assert api.get("/machines").json["items"] == []


BAD_NETWORKS = [
    ({"name": "n", "cidr": "10.0.0.1/24"}, "cidr"),
    ({"name": "n", "cidr": "300.0.0.0/24"}, "cidr"),
    ({"name": "n", "cidr": "10.0.0.0/24", "gateway": "10.0.1.1"}, "gateway"),
    ({"name": "n", "cidr": "10.0.0.0/24", "dns": ["nope"]}, "dns.0"),
    ({"name": "n", "cidr": "10.0.0.0/24", "domain": "bad domain"}, "domain"),
    ({"name": "n", "cidr": "10.0.0.0/24", "vlan_id": 5000}, "vlan_id"),
    ({"name": "has space", "cidr": "10.0.0.0/24"}, "name"),
]


@pytest.mark.parametrize(("body", "field"), BAD_NETWORKS)
def test_bad_network_is_422_naming_the_field(api: Api, body: dict, field: str) -> None:
    resp = api.post("/networks", body, expect=422)
    assert field in [e["field"] for e in resp.json["errors"]], resp.json


BAD_PROFILES = [
    ({"name": "p", "kind": "linux"}, "kernel"),
    ({"name": "p", "kind": "ipxe"}, "script"),
    ({"name": "p", "kind": "chain"}, "chain_url"),
    ({"name": "p", "kind": "menu"}, "menu"),
    (
        {"name": "p", "kind": "linux", "kernel": "http://x/vmlinuz", "cmdline": "a\nchain evil"},
        "cmdline",
    ),
    ({"name": "p", "kind": "linux", "kernel": "http://x/{{ nope }"}, "kernel"),
    ({"name": "p", "kind": "ipxe", "script": "#!ipxe\necho {{ machine.hostname\n"}, "script"),
    ({"name": "p", "kind": "sideways"}, "kind"),
]


@pytest.mark.parametrize(("body", "field"), BAD_PROFILES)
def test_bad_profile_is_422_naming_the_field(api: Api, body: dict, field: str) -> None:
    resp = api.post("/profiles", body, expect=422)
    assert field in [e["field"] for e in resp.json["errors"]], resp.json


def test_template_error_names_the_line(api: Api) -> None:
    resp = api.post(
        "/profiles",
        {"name": "p", "kind": "ipxe", "script": "#!ipxe\necho ok\necho {{ broken\n"},
        expect=422,
    )
    err = resp.json["errors"][0]
    assert err["field"] == "script"
    assert err["line"] == 3


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe\x00", b"[1,2,3]", b"null", b'"s"'])
def test_malformed_bodies_are_4xx(api: Api, payload: bytes) -> None:
    resp = api.client.post(
        "/api/v1/machines",
        data=payload,
        headers={**api.headers, "Content-Type": "application/json"},
    )
    assert 400 <= resp.status_code < 500
    assert resp.mimetype == "application/problem+json"


def test_unknown_route_and_method_are_problem_json(api: Api) -> None:
    resp = api.get("/nothing-here")
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    resp = api.call("PUT", "/machines")
    assert resp.status_code == 405
    assert resp.mimetype == "application/problem+json"


def test_missing_resources_are_404(api: Api) -> None:
    for path in ("/machines/999", "/networks/999", "/profiles/999", "/rules/999"):
        assert api.get(path).status_code == 404
        assert api.patch(path, {}).status_code == 404
        assert api.delete(path).status_code == 404


def test_oversized_body_is_413(api: Api) -> None:
    resp = api.post("/machines", {"notes": "x" * (2 * 1024 * 1024)})
    assert resp.status_code == 413


def test_events_since_a_date_without_time_is_422_naming_since(api: Api) -> None:
    resp = api.get("/events?since=2026-01-01", expect=422)
    assert resp.mimetype == "application/problem+json"
    assert "since" in [e["field"] for e in resp.json["errors"]], resp.json
    assert api.get("/events?since=2099-01-01T00:00:00Z", expect=200).json["items"] == []


def test_lease_event_with_a_naive_time_is_422_naming_at(api: Api) -> None:
    body = {
        "id": "naive-time-0001",
        "source": "dnsmasq",
        "action": "add",
        "mac": "52:54:00:aa:cc:01",
        "ip": "10.0.0.5",
        "at": "2026-01-01T00:00:00",
    }
    resp = api.post("/lease-events", body, expect=422)
    assert resp.mimetype == "application/problem+json"
    assert "at" in [e["field"] for e in resp.json["errors"]], resp.json
    assert api.get("/events?kind=lease").json["items"] == []


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_body_is_400_naming_the_body(api: Api, depth: int) -> None:
    raw = '{"notes": ' + "[" * depth + "]" * depth + "}"
    resp = api.client.post(
        "/api/v1/machines", data=raw, content_type="application/json", headers=api.headers
    )
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    assert [e["field"] for e in resp.json["errors"]] == ["body"]
    assert api.get("/machines").json["items"] == []


def test_brackets_inside_strings_do_not_count_as_nesting(api: Api) -> None:
    notes = '[{"\\"' * 200
    m = api.post("/machines", {"notes": notes, "metadata": {"a": [[1]]}}, expect=201).json
    assert m["notes"] == notes
