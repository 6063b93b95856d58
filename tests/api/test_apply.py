"""``POST /api/v1/apply``: a desired-state document planned (``dry_run``) and applied
in one transaction; a plan made against objects someone changed since is refused
with 409 naming them; bad rows and inconsistencies are a 422 with each line.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

DOC = """\
networks:
  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1}
profiles:
  - {name: disk, kind: local}
  - name: inst
    kind: linux
    kernel: '{{ assets }}/vmlinuz'
    user_data: "#cloud-config\\nhostname: {{ hostname }}\\n"
rules:
  - {name: dell, manufacturer: Dell Inc., profile: inst}
machines:
  - hostname: node-01
    nics: [{mac: '52:54:00:aa:cc:01'}]
    network: rack1
    address: 10.20.0.50
    profile: disk
  - hostname: node-02
    nics: [{mac: '52:54:00:aa:cc:02'}]
"""


def apply(api: Api, document: str, expect: int = 200, **flags: Any) -> Any:
    return api.post("/apply", {"document": document, **flags}, expect=expect).get_json()


def export_of(api: Api) -> dict[str, list[str]]:
    """What an operator lists: each kind's names (hostnames for machines)."""
    return {
        "networks": [n["name"] for n in api.get("/networks").get_json()["items"]],
        "profiles": [p["name"] for p in api.get("/profiles").get_json()["items"]],
        "rules": [r["name"] for r in api.get("/rules").get_json()["items"]],
        "machines": [m["hostname"] for m in api.get("/machines").get_json()["items"]],
    }


def test_dry_run_then_apply_then_nothing_left_to_do(api: Api) -> None:
    plan = apply(api, DOC, dry_run=True)
    assert plan["applied"] is False
    assert plan["counts"] == {"create": 6, "update": 0, "delete": 0}
    assert [(c["action"], c["kind"], c["key"], c["line"]) for c in plan["changes"]] == [
        ("create", "network", "rack1", 2),
        ("create", "profile", "disk", 4),
        ("create", "profile", "inst", 5),
        ("create", "rule", "dell", 10),
        ("create", "machine", "node-01", 12),
        ("create", "machine", "node-02", 17),
    ]
    assert plan["versions"] == {f"{c['kind']} {c['key']}": 0 for c in plan["changes"]}
    assert export_of(api) == {"networks": [], "profiles": [], "rules": [], "machines": []}

    done = apply(api, DOC, versions=plan["versions"])
    assert done["applied"] is True and done["counts"] == plan["counts"]
    assert export_of(api) == {
        "networks": ["rack1"],
        "profiles": ["disk", "inst"],
        "rules": ["dell"],
        "machines": ["node-01", "node-02"],
    }
    again = apply(api, DOC, prune=True)
    assert (again["applied"], again["changes"], again["diff"]) == (False, [], "no changes\n")


def test_an_update_names_the_fields_and_hides_secrets(api: Api) -> None:
    apply(api, DOC)
    changed = DOC.replace("hostname: {{ hostname }}", "fqdn: {{ hostname }}").replace(
        "manufacturer: Dell Inc.", "manufacturer: HPE"
    )
    plan = apply(api, changed, dry_run=True)
    assert [(c["key"], c["fields"]) for c in plan["changes"]] == [
        ("inst", [{"field": "user_data", "old": None, "new": None}]),
        ("dell", [{"field": "manufacturer", "old": "Dell Inc.", "new": "HPE"}]),
    ]
    assert "    user_data: (secret, changed)\n" in plan["diff"]
    assert "fqdn" not in plan["diff"]
    apply(api, changed)
    (rule,) = api.get("/rules").get_json()["items"]
    assert rule["manufacturer"] == "HPE"


def test_a_plan_made_before_someone_changed_a_planned_object_is_refused(api: Api) -> None:
    apply(api, DOC)
    changed = DOC.replace("address: 10.20.0.50", "address: 10.20.0.51")
    plan = apply(api, changed, dry_run=True)
    assert plan["versions"] == {"machine node-01": 1}
    (one,) = api.get("/machines?hostname=node-01").get_json()["items"]
    api.patch(f"/machines/{one['id']}", {"notes": "someone else"}, expect=200)

    problem = apply(api, changed, expect=409, versions=plan["versions"])
    assert problem["errors"] == [
        {"field": "versions", "message": "machine node-01 changed since the plan was made"}
    ]
    after = api.get(f"/machines/{one['id']}").get_json()
    assert (after["address"], after["notes"]) == ("10.20.0.50", "someone else")
    # A change the reviewed plan did not show is refused too.
    api.post("/networks", {"name": "rack9", "cidr": "10.9.0.0/24"}, expect=201)
    fresh = apply(api, changed, dry_run=True, prune=True)
    problem = apply(api, changed, expect=409, prune=True, versions=plan["versions"])
    messages = [e["message"] for e in problem["errors"]]
    assert "network rack9 would change, and the plan you reviewed did not say so" in messages
    # With the versions of a fresh plan it goes through.
    apply(api, changed, prune=True, versions=fresh["versions"])
    assert api.get(f"/machines/{one['id']}").get_json()["address"] == "10.20.0.51"
    assert export_of(api)["networks"] == ["rack1"]


def test_bad_rows_and_an_inconsistent_plan_are_a_422_with_every_line(api: Api) -> None:
    apply(api, DOC)
    bad = (
        "networks:\n"  # 1
        "  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1}\n"  # 2
        "profiles:\n"  # 3
        "  - {name: disk, kind: local}\n"  # 4
        "rules:\n"  # 5
        "  - {name: dell, manufacturer: Dell Inc., profile: inst}\n"  # 6: inst is pruned
        "machines:\n"  # 7
        "  - {hostname: node-01, nics: [{mac: '52:54:00:aa:cc:01'}], network: rack1,"
        " address: 10.30.0.5}\n"  # 8: outside rack1
        "  - {hostname: node-02, nics: [{mac: '52:54:00:aa:cc:01'}]}\n"  # 9: node-01's MAC
        "  - {hostname: node-03, state: bogus}\n"  # 10
    )
    problem = apply(api, bad, expect=422, prune=True)
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [
        (6, "profile"),
        (8, "address"),
        (9, "nics"),
        (10, "state"),
    ]
    assert problem["errors"][0]["message"] == "profile inst is deleted by this plan (prune)"
    assert export_of(api)["profiles"] == ["disk", "inst"]
    assert apply(api, "machines: {hostname: a}\n", expect=422)["errors"][0]["line"] == 1


def test_a_read_token_may_not_apply(api: Api, reader: Api) -> None:
    reader.post("/apply", {"document": DOC, "dry_run": True}, expect=403)
