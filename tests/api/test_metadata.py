"""The booted OS's configuration against the per-boot token, on SQLite and PostgreSQL:
every document, every token failure, the operator's preview and redaction."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bootbrain.db import Database
from bootbrain.models import Boot, Machine, utcnow
from tests.api.test_boot import boot, flush
from tests.conftest import Api, add_rack1
from tests.unit.test_documents import EC, ED, ED2

BASE = "http://bootbrain.test"
UUID_A = "4c4c4544-0042-3610-8052-b4c04f4e3232"
MAC_A = "52:54:00:aa:cc:01"
MAC_B = "52:54:00:aa:cc:02"
SECRET = "s3cret-root-pw"
DOCS = ("meta-data", "user-data", "vendor-data", "network-config", "metadata.json")

USER_DATA = f"""#cloud-config
hostname: {{{{ hostname }}}}
fqdn: {{{{ fqdn }}}}
chpasswd:
  expire: false
  users:
  - name: root
    password: {SECRET}
    type: text
ntp:
  enabled: true
  servers: {{{{ metadata.ntp | tojson }}}}
phone_home:
  url: {{{{ done_url }}}}
  post: [instance_id, hostname]
  tries: 5
"""


@pytest.fixture
def lab(api: Api) -> dict[str, Any]:
    add_rack1(api)
    api.post(
        "/profiles",
        {
            "name": "installer",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} net.ifnames=0 "
            "ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL} "
            "bootbrain.meta=${IPXE_BOOT_METADATA_URL}meta-data",
            "complete_state": "deployed",
            "tags": ["os:debian"],
            "ssh_keys": [ED],
            "metadata": {"ntp": ["ntp1.lab.example"], "site": "ams"},
            "user_data": USER_DATA,
            "vendor_data": "#cloud-config\npackage_update: true\n",
        },
        expect=201,
    )
    a = api.post(
        "/machines",
        {
            "hostname": "node-var",
            "uuid": UUID_A,
            "nics": [{"mac": MAC_A}],
            "network": "rack1",
            "address": "10.200.0.50",
            "profile": "installer",
            "tags": ["gpu"],
            "ssh_keys": [ED2],
            "metadata": {"rack": "r1", "site": None},
        },
        expect=201,
    ).json
    b = api.post(
        "/machines",
        {"hostname": "node-b", "nics": [{"mac": MAC_B}], "profile": "installer"},
        expect=201,
    ).json
    return {"a": a, "b": b}


def metadata_path(script: str) -> str:
    m = re.search(r"^set IPXE_BOOT_METADATA_URL (\S+)$", script, re.M)
    assert m, script
    assert m.group(1).endswith("/")  # NoCloud appends "meta-data" to the seed URL as is
    return m.group(1).removeprefix(BASE)


def boot_a(client: FlaskClient, app: Flask) -> tuple[str, str]:
    """Boot machine A; (its metadata path, its script)."""
    script = boot(client)
    flush(app)  # boot rows are written off the hot path
    return metadata_path(script), script


def refused(resp: Any) -> None:
    assert resp.status_code == 403, resp.get_data(as_text=True)
    body = resp.get_data(as_text=True)
    for secret in (SECRET, "ssh-ed25519", "node-var", "10.200.0.50"):
        assert secret not in body


def refusals(api: Api, app: Flask) -> list[dict[str, Any]]:
    flush(app)
    return list(api.get("/events?kind=metadata_refused&limit=1000", expect=200).json["items"])


# --- serving ------------------------------------------------------------------------


def test_every_document_is_served_against_the_token(
    client: FlaskClient, app: Flask, lab: dict[str, Any]
) -> None:
    path, script = boot_a(client, app)
    got = {}
    for name in DOCS:
        resp = client.get(path + name)
        assert resp.status_code == 200, (name, resp.get_data(as_text=True))
        assert resp.mimetype == ("application/json" if name.endswith(".json") else "text/plain")
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Content-Length"] == str(len(resp.data))
        got[name] = resp.get_data(as_text=True)

    mid = lab["a"]["id"]
    assert got["meta-data"].splitlines()[0] == f"instance-id: bootbrain-machine-{mid}"
    assert yaml.safe_load(got["meta-data"]) == {
        "instance-id": f"bootbrain-machine-{mid}",
        "local-hostname": "node-var.lab.example",
        "public-keys": [ED, ED2],
    }

    done = re.search(r"^set IPXE_BOOT_DONE_URL (\S+)$", script, re.M)
    assert done
    user = yaml.safe_load(got["user-data"])
    assert got["user-data"].startswith("#cloud-config\n")
    assert user["hostname"] == "node-var"
    assert user["fqdn"] == "node-var.lab.example"
    assert user["ntp"]["servers"] == ["ntp1.lab.example"]
    assert user["phone_home"]["url"] == done.group(1)
    assert user["chpasswd"]["users"][0]["password"] == SECRET
    assert got["vendor-data"] == "#cloud-config\npackage_update: true\n"

    # network-config and IPXE_BOOT_LINUX_IP_CONFIG come from one StaticNet
    ip_config = re.search(r"^set IPXE_BOOT_LINUX_IP_CONFIG (\S+)$", script, re.M)
    assert ip_config
    ip, _, gw, mask, host, iface, _, dns0, dns1 = ip_config.group(1)[3:].split(":")
    net = yaml.safe_load(got["network-config"])
    assert net["version"] == 2
    eth = net["ethernets"][iface]
    assert eth["match"] == {"macaddress": MAC_A}
    assert eth["set-name"] == iface == "eth0"
    assert eth["addresses"] == [f"{ip}/24"] and mask == "255.255.255.0"
    assert eth["routes"] == [{"to": "0.0.0.0/0", "via": gw}]
    assert eth["nameservers"] == {"addresses": [dns0, dns1], "search": ["lab.example"]}

    doc = json.loads(got["metadata.json"])
    assert doc["machine_id"] == mid
    assert doc["hostname"] == host == "node-var"
    assert doc["ssh_keys"] == [ED, ED2]
    assert doc["tags"] == ["gpu", "os:debian"]
    assert doc["metadata"] == {"ntp": ["ntp1.lab.example"], "rack": "r1"}  # "site" removed
    assert doc["profile"] == "installer"
    assert doc["network"]["ip_config"] == ip_config.group(1)
    assert doc["urls"]["done"] == done.group(1)
    assert re.fullmatch(r"[0-9a-f]{16}", doc["boot_id"])


def test_kernel_line_carries_the_nocloud_seed(
    client: FlaskClient, app: Flask, lab: dict[str, Any]
) -> None:
    path, script = boot_a(client, app)
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert " ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL} " in kernel
    assert " bootbrain.meta=${IPXE_BOOT_METADATA_URL}meta-data " in kernel
    # what the initrd fetches after iPXE expanded the variable
    assert client.get(path + "meta-data").get_data(as_text=True).startswith("instance-id: ")


def test_served_documents_are_recorded(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any]
) -> None:
    path, _ = boot_a(client, app)
    client.get(path + "user-data")
    flush(app)
    events = api.get(f"/events?kind=metadata&machine_id={lab['a']['id']}").json["items"]
    assert [e["data"]["document"] for e in events] == ["user-data"]
    assert SECRET not in json.dumps(events)


def test_machine_without_static_assignment_gets_dhcp_network_config(
    client: FlaskClient, app: Flask, lab: dict[str, Any]
) -> None:
    script = boot(client, uuid="", mac=MAC_B)
    flush(app)
    assert "set IPXE_BOOT_LINUX_IP_CONFIG" not in script
    net = yaml.safe_load(client.get(metadata_path(script) + "network-config").data)
    assert net == {
        "version": 2,
        "ethernets": {"eth0": {"match": {"macaddress": MAC_B}, "set-name": "eth0", "dhcp4": True}},
    }


# --- refusals ---------------------------------------------------------------------------


def test_no_token_opens_nothing(client: FlaskClient, app: Flask, lab: dict[str, Any]) -> None:
    boot_a(client, app)
    for path in ("/boot/meta-data", "/boot//meta-data", "/boot/user-data", "/boot/"):
        resp = client.get(path)
        assert resp.status_code in (403, 404), path
        assert SECRET not in resp.get_data(as_text=True)


@pytest.mark.parametrize("token", ["A" * 32, "not-a-token-but-long-enough", "short", "x" * 300])
def test_a_wrong_token_is_refused_and_recorded(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any], token: str
) -> None:
    boot_a(client, app)
    for name in DOCS:
        refused(client.get(f"/boot/{token}/{name}"))
    # metadata.json is a JSON route: its refusal is problem+json, as every JSON error.
    resp = client.get(f"/boot/{token}/metadata.json")
    assert resp.mimetype == "application/problem+json"
    assert resp.json["status"] == 403 and "not valid" in resp.json["detail"]
    events = refusals(api, app)
    assert len(events) == len(DOCS) + 1
    assert events[0]["data"]["reason"] in ("unknown boot token", "malformed boot token")
    assert events[0]["machine_id"] is None


def test_another_machines_token_opens_only_that_machines_documents(
    client: FlaskClient, app: Flask, lab: dict[str, Any]
) -> None:
    path_a, _ = boot_a(client, app)
    path_b = metadata_path(boot(client, uuid="", mac=MAC_B))
    flush(app)
    assert path_a != path_b
    # B's token, whatever identity the request claims, gives B's documents
    claims = f"?mac={MAC_A.replace(':', '-')}&uuid={UUID_A}"
    headers = {"X-Forwarded-For": "10.200.0.50", "User-Agent": "node-var"}
    doc = json.loads(client.get(path_b + "metadata.json" + claims, headers=headers).data)
    assert doc["machine_id"] == lab["b"]["id"]
    assert doc["hostname"] == "node-b"
    assert doc["network"]["dhcp"] is True
    meta = yaml.safe_load(client.get(path_b + "meta-data" + claims, headers=headers).data)
    assert meta["instance-id"] == f"bootbrain-machine-{lab['b']['id']}"
    assert meta["public-keys"] == [ED]  # the profile's; not A's own key
    assert "10.200.0.50" not in client.get(path_b + "network-config" + claims).get_data(
        as_text=True
    )


def test_a_completed_boots_token_is_revoked(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any]
) -> None:
    path, _ = boot_a(client, app)
    assert client.get(path + "user-data").status_code == 200
    assert client.post(path + "done", data={"meta": "instance-id: x"}).status_code == 200
    for name in DOCS:
        refused(client.get(path + name))
    events = refusals(api, app)
    assert len(events) == len(DOCS)
    assert {e["data"]["reason"] for e in events} == {"the boot has completed: its token is revoked"}
    assert {e["machine_id"] for e in events} == {lab["a"]["id"]}
    assert all(e["data"]["boot_id"] for e in events)


def test_an_expired_token_is_refused(
    client: FlaskClient, app: Flask, api: Api, db: Database, lab: dict[str, Any]
) -> None:
    path, _ = boot_a(client, app)
    assert client.get(path + "meta-data").status_code == 200
    with db.write() as s:
        s.execute(update(Boot).values(expires_at=utcnow() - timedelta(seconds=1)))
    for name in DOCS:
        refused(client.get(path + name))
    assert {e["data"]["reason"] for e in refusals(api, app)} == {"boot token expired"}


def test_token_lifetime_is_the_setting(
    client: FlaskClient, app: Flask, db: Database, lab: dict[str, Any]
) -> None:
    boot_a(client, app)
    with db.read() as s:
        b = s.scalar(select(Boot))
    assert b is not None
    assert b.expires_at - b.created_at == timedelta(seconds=app.config["BOOTBRAIN"].boot_token_ttl)


def test_deleting_the_machine_revokes_its_token(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any]
) -> None:
    path, _ = boot_a(client, app)
    api.delete(f"/machines/{lab['a']['id']}", expect=204)
    refused(client.get(path + "user-data"))


def test_refusal_events_are_capped_per_minute(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any]
) -> None:
    app.extensions["bootbrain"].refusals.per_minute = 3
    for _ in range(10):
        refused(client.get("/boot/AAAAAAAAAAAAAAAAAAAAAAAA/meta-data"))
    assert len(refusals(api, app)) == 3
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'kind="metadata_refused"\} ([0-9]+)', metrics)


def test_a_template_failing_at_serve_time_is_500_and_recorded(
    client: FlaskClient, app: Flask, api: Api, db: Database, lab: dict[str, Any]
) -> None:
    path, _ = boot_a(client, app)
    with db.write() as s:  # bypasses the API's check, as a later profile edit could
        s.execute(update(Machine).values(meta={"ntp": None}))
    resp = client.get(path + "user-data")
    assert resp.status_code == 500
    assert resp.mimetype == "text/plain"
    assert SECRET not in resp.get_data(as_text=True)
    assert client.get(path + "meta-data").status_code == 200  # the others still work
    flush(app)
    errors = api.get("/events?kind=metadata_error").json["items"]
    assert errors[0]["data"]["document"] == "user-data"
    assert "profile.user_data" in errors[0]["message"]


# --- inventory and operator side ------------------------------------------------------------


def test_secrets_are_redacted_in_listings_and_for_readers(
    api: Api, reader: Api, lab: dict[str, Any]
) -> None:
    mid = lab["a"]["id"]
    api.patch(f"/machines/{mid}", {"user_data": "#!/bin/sh\necho " + SECRET + "\n"}, expect=200)
    for who in (api, reader):
        listed = who.get("/machines", expect=200).json["items"]
        assert SECRET not in json.dumps(listed)
        mine = next(m for m in listed if m["id"] == mid)
        assert mine["user_data"] is None and mine["redacted"] == ["user_data"]
        assert mine["ssh_keys"] == [ED2]  # public keys are not secret
        profiles = who.get("/profiles", expect=200).json["items"]
        assert SECRET not in json.dumps(profiles)
        assert profiles[0]["redacted"] == ["user_data", "vendor_data"]
    assert SECRET in api.get(f"/machines/{mid}", expect=200).json["user_data"]
    one = reader.get(f"/machines/{mid}", expect=200).json
    assert one["user_data"] is None and one["redacted"] == ["user_data"]
    assert reader.get("/profiles/1", expect=200).json["user_data"] is None
    assert SECRET in api.get("/profiles/1", expect=200).json["user_data"]
    events = api.get(f"/events?machine_id={mid}&kind=change").json["items"]
    assert SECRET not in json.dumps(events)
    assert "user_data" in events[-1]["data"]["fields"]


def test_config_preview(api: Api, reader: Api, app: Flask, lab: dict[str, Any]) -> None:
    mid = lab["a"]["id"]
    out = api.get(f"/machines/{mid}/config-preview", expect=200).json
    assert (out["step"], out["profile"]) == ("assigned", "installer")
    assert out["instance_id"] == f"bootbrain-machine-{mid}"
    assert out["meta_data"].startswith(f"instance-id: bootbrain-machine-{mid}\n")
    assert SECRET in out["user_data"]
    assert "/boot/PREVIEW-TOKEN/done" in out["user_data"]
    assert yaml.safe_load(out["network_config"])["ethernets"]["eth0"]["addresses"] == [
        "10.200.0.50/24"
    ]
    assert out["metadata"]["network"]["ip_config"].startswith("ip=10.200.0.50::10.200.0.1:")
    assert out["redacted"] == []
    hidden = reader.get(f"/machines/{mid}/config-preview", expect=200).json
    assert hidden["user_data"] is None and hidden["vendor_data"] is None
    assert hidden["redacted"] == ["user_data", "vendor_data"]
    assert SECRET not in json.dumps(hidden)
    # another profile, as asked; unknown ones and machines are errors
    api.post("/profiles", {"name": "disk", "kind": "local"}, expect=201)
    other = api.get(f"/machines/{mid}/config-preview?profile=disk", expect=200).json
    assert (other["step"], other["profile"], other["user_data"]) == ("query", "disk", "")
    assert other["metadata"]["ssh_keys"] == [ED2]
    api.get(f"/machines/{mid}/config-preview?profile=nope", expect=422)
    api.get("/machines/999/config-preview", expect=404)
    # a machine booting from disk gets no token, and the preview says so
    api.patch(f"/machines/{mid}", {"profile": "disk"}, expect=200)
    local = api.get(f"/machines/{mid}/config-preview", expect=200).json
    assert "nothing would be served" in local["reason"]
    flush(app)
    assert api.get("/events?kind=metadata").json["items"] == []


def test_templates_are_checked_when_saved(api: Api, lab: dict[str, Any]) -> None:
    mid = lab["a"]["id"]

    def problem(path: str, body: dict[str, Any], method: str = "patch") -> dict[str, Any]:
        resp = getattr(api, method)(path, body, expect=422)
        return dict(resp.json["errors"][0])

    e = problem("/profiles/1", {"user_data": "#cloud-config\nhostname: {{ hostname\n"})
    assert (e["field"], e["line"]) == ("user_data", 2)
    e = problem("/profiles/1", {"vendor_data": "#cloud-config\na: 1\nb: {{ nope }}\n"})
    assert (e["field"], e["line"]) == ("vendor_data", 3)
    assert "nope" in e["message"]
    e = problem("/profiles/1", {"user_data": "#cloud-config\na: [1\nb: 2\n"})
    assert e["field"] == "user_data" and "not valid YAML" in e["message"]
    e = problem(f"/machines/{mid}", {"user_data": "echo hi\n"})
    assert e["field"] == "user_data" and "#cloud-config" in e["message"]
    # a machine's metadata that removes what its profile's user-data uses
    e = problem(f"/machines/{mid}", {"metadata": {"ntp": None}})
    assert e["field"] == "profile.user_data"
    e = problem(f"/machines/{mid}", {"ssh_keys": [ED + "\n" + EC]})
    assert e["field"] == "ssh_keys.0"
    e = problem(f"/machines/{mid}", {"ssh_keys": [ED2, ED2 + " again"]})
    assert "twice" in e["message"]
    e = problem(f"/machines/{mid}", {"metadata": {"x": "y" * 20000}})
    assert e["field"] == "metadata"
    e = problem(f"/machines/{mid}", {"user_data": "#cloud-config\r\na: 1\r\n"})
    assert "Unix line endings" in e["message"]
    e = problem("/profiles/1", {"tags": ["bad tag"]})
    assert e["field"].startswith("tags")


def test_patch_semantics_of_the_os_fields(api: Api, lab: dict[str, Any]) -> None:
    mid = lab["a"]["id"]
    m = api.patch(f"/machines/{mid}", {"user_data": ""}, expect=200).json
    assert m["user_data"] == ""  # "none at all", not the profile's
    m = api.patch(
        f"/machines/{mid}",
        {"ssh_keys": None, "metadata": None, "user_data": None},
        expect=200,
    ).json
    assert (m["ssh_keys"], m["metadata"], m["user_data"]) == ([], {}, None)
    p = api.patch("/profiles/1", {"ssh_keys": [EC], "tags": ["a", "a", "b"]}, expect=200).json
    assert (p["ssh_keys"], p["tags"]) == ([EC], ["a", "b"])
    assert p["metadata"] == {"ntp": ["ntp1.lab.example"], "site": "ams"}  # unchanged


def test_export_keeps_the_secrets_for_a_faithful_backup(db: Database, lab: dict[str, Any]) -> None:
    from bootbrain.inventory import transfer

    doc = yaml.safe_load(transfer.export(db, "yaml"))
    assert doc["profiles"][0]["user_data"] == USER_DATA
    assert doc["machines"][0]["ssh_keys"] == [ED2]


def test_cli_prints_the_documents(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app: Flask, lab: dict[str, Any]
) -> None:
    from click.testing import CliRunner

    from bootbrain.cli import main

    settings = app.config["BOOTBRAIN"]
    (tmp_path / "c.toml").write_text("")
    monkeypatch.setenv("BOOTBRAIN_CONFIG", str(tmp_path / "c.toml"))
    monkeypatch.setenv("BOOTBRAIN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BOOTBRAIN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOOTBRAIN_SECRET_KEY", "x" * 32)
    runner = CliRunner()
    mid = str(lab["a"]["id"])
    out = runner.invoke(main, ["machine", "config", mid, "--document", "user-data"])
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.stdout)["chpasswd"]["users"][0]["password"] == SECRET
    out = runner.invoke(main, ["machine", "config", mid])
    assert out.exit_code == 0, out.output
    for name in DOCS:
        assert f"# ---------- {name} ----------" in out.stdout
    out = runner.invoke(main, ["machine", "config", mid, "--profile", "nope"])
    assert out.exit_code == 2
