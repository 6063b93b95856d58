"""Ignition configs for Flatcar and Fedora CoreOS, as the booted OS and the operator
see them, on SQLite and PostgreSQL: the example profiles of docs/examples/flatcar.yaml
saved through the API, ``ignition.json`` behind the per-boot token with Ignition's
media type, the real ``ignition-validate`` accepting what is served, save-time
refusals naming the field, and the round trip through export and apply."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from bootbrain.db import Database
from bootbrain.models import Profile
from tests.api.test_boot import boot, flush
from tests.api.test_metadata import MAC_A, MAC_B, UUID_A, metadata_path
from tests.conftest import Api, add_rack1
from tests.unit.test_documents import ED2

EXAMPLE = Path(__file__).resolve().parents[2] / "docs/examples/flatcar.yaml"
MEDIA_TYPE = "application/vnd.coreos.ignition+json"
IGNITION_VALIDATE = shutil.which("ignition-validate")


def example_profiles() -> list[dict[str, Any]]:
    profiles: list[dict[str, Any]] = yaml.safe_load(EXAMPLE.read_text())["profiles"]
    return profiles


@pytest.fixture
def lab(api: Api) -> dict[str, Any]:
    """The example profiles; machine A (static, rack1) boots flatcar, B (DHCP) fedora-coreos."""
    add_rack1(api)
    for profile in example_profiles():
        api.post("/profiles", profile, expect=201)
    a = api.post(
        "/machines",
        {
            "hostname": "node-var",
            "uuid": UUID_A,
            "nics": [{"mac": MAC_A}],
            "network": "rack1",
            "address": "10.200.0.50",
            "profile": "flatcar",
            "ssh_keys": [ED2],
            "metadata": {"rack": "r1"},
        },
        expect=201,
    ).json
    b = api.post(
        "/machines",
        {"hostname": "node-b", "nics": [{"mac": MAC_B}], "profile": "fedora-coreos"},
        expect=201,
    ).json
    return {"a": a, "b": b}


def boot_path(client: FlaskClient, app: Flask, **kw: Any) -> tuple[str, str]:
    script = boot(client, **kw)
    flush(app)
    return metadata_path(script), script


def data_url(source: str) -> str:
    assert source.startswith("data:,")
    return unquote(source.removeprefix("data:,"))


def test_the_config_is_served_behind_the_token(
    client: FlaskClient, app: Flask, lab: dict[str, Any]
) -> None:
    path, script = boot_path(client, app)
    assert re.search(
        r"^kernel .* net\.ifnames=0 flatcar\.first_boot=1 "
        r"ignition\.config\.url=\$\{IPXE_BOOT_METADATA_URL\}ignition\.json ",
        script,
        re.M,
    ), script
    resp = client.get(path + "ignition.json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == MEDIA_TYPE
    assert resp.headers["Cache-Control"] == "no-store"
    config = json.loads(resp.data)
    assert config["ignition"]["version"] == "3.3.0"
    assert config["passwd"]["users"] == [{"name": "core", "sshAuthorizedKeys": [ED2]}]
    files = {f["path"]: data_url(f["contents"]["source"]) for f in config["storage"]["files"]}
    assert files["/etc/hostname"] == "node-var.lab.example"
    network = files["/etc/systemd/network/00-eth0.network"]
    assert "Address=10.200.0.50/24\nGateway=10.200.0.1\n" in network
    assert "DNS=10.200.0.2\nDNS=10.200.0.3\nDomains=lab.example\n" in network
    assert json.loads(files["/etc/bootbrain/metadata.json"]) == {"rack": "r1"}
    (unit,) = config["systemd"]["units"]
    done = re.search(r"^set IPXE_BOOT_DONE_URL (\S+)$", script, re.M)
    assert done
    assert f" {done.group(1)}\n" in unit["contents"]
    flush(app)


def test_the_config_is_recorded_and_refused_without_the_token(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any]
) -> None:
    path, _ = boot_path(client, app)
    for wrong in ("/boot/" + "A" * 32 + "/ignition.json", "/boot/ignition.json"):
        resp = client.get(wrong)
        assert resp.status_code in (403, 404), wrong
        assert "node-var" not in resp.get_data(as_text=True)
    assert client.get(path + "ignition.json").status_code == 200
    # the boot completes (the config's own unit calls this): the token opens nothing more
    assert client.post(path + "done", data={"instance_id": "x"}).status_code == 200
    resp = client.get(path + "ignition.json")
    assert resp.status_code == 403 and ED2 not in resp.get_data(as_text=True)
    flush(app)
    served = api.get("/events?kind=metadata").json["items"]
    assert [e["data"]["document"] for e in served] == ["ignition.json"]
    refused = api.get("/events?kind=metadata_refused").json["items"]
    assert {e["data"]["document"] for e in refused} == {"ignition.json"}


def test_a_profile_without_a_config_answers_404(
    client: FlaskClient, app: Flask, api: Api, lab: dict[str, Any]
) -> None:
    api.post("/profiles", {"name": "plain", "kind": "linux", "kernel": "http://a/k"}, expect=201)
    api.patch(f"/machines/{lab['a']['id']}", {"profile": "plain"}, expect=200)
    path, _ = boot_path(client, app)
    resp = client.get(path + "ignition.json")
    assert resp.status_code == 404
    assert "no Ignition config" in resp.get_data(as_text=True)
    assert client.get(path + "user-data").status_code == 200  # empty, as before


def test_a_config_failing_at_boot_is_500_logged_by_name_never_the_template(
    client: FlaskClient, app: Flask, api: Api, db: Database, lab: dict[str, Any]
) -> None:
    broken = '{"ignition": {"version": "3.3.0"}, "x": "{{ metadata.site }}"}'
    with db.write() as s:  # bypasses the API's check, as a later metadata edit could
        s.execute(update(Profile).where(Profile.name == "flatcar").values(ignition=broken))
    path, _ = boot_path(client, app)
    resp = client.get(path + "ignition.json")
    assert resp.status_code == 500
    assert resp.mimetype == "text/plain"
    body = resp.get_data(as_text=True)
    assert body == "error: ignition.json failed to render on the server\n"
    assert client.get(path + "meta-data").status_code == 200  # the others still work
    flush(app)
    (error,) = api.get("/events?kind=metadata_error").json["items"]
    assert error["data"]["document"] == "ignition.json"
    assert "profile.ignition" in error["message"] and "site" in error["message"]
    assert '"x"' not in error["message"]


@pytest.mark.skipif(IGNITION_VALIDATE is None, reason="ignition-validate (Debian ignition) missing")
@pytest.mark.parametrize(("mac", "uuid"), [(MAC_A, UUID_A), (MAC_B, "")], ids=["flatcar", "fcos"])
def test_ignition_validate_accepts_what_is_served(
    client: FlaskClient, app: Flask, lab: dict[str, Any], tmp_path: Path, mac: str, uuid: str
) -> None:
    path, _ = boot_path(client, app, mac=mac, uuid=uuid)
    resp = client.get(path + "ignition.json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    config = tmp_path / "config.ign"
    config.write_bytes(resp.data)
    assert IGNITION_VALIDATE is not None
    done = subprocess.run(
        [IGNITION_VALIDATE, str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # and it does refuse a config Ignition cannot use (the check above can fail)
    config.write_text('{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "x"}]}}')
    bad = subprocess.run(
        [IGNITION_VALIDATE, str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode != 0 and "path not absolute" in bad.stdout + bad.stderr


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ('{"ignition": {"version": "3.3.0"}', "not JSON"),
        ('{"ignition": {"version": "2.3.0"}}', "$.ignition.version: must be an Ignition spec 3.x"),
        (
            '{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "etc/x"}]}}',
            "$.storage.files[0].path: must be an absolute path",
        ),
        ('{"ignition": {"version": "3.3.0"}, "system": {}}', "$: unknown key"),
        ('{"ignition": {"version": "{{ nope }}"}}', "nope"),
        ('{"ignition": {"version": "3.3.0"}}\x07', "control character"),
    ],
    ids=["bad-json", "wrong-version", "relative-path", "unknown-key", "unknown-variable", "ctrl"],
)
def test_bad_configs_are_refused_when_saved(
    api: Api, lab: dict[str, Any], config: str, expected: str
) -> None:
    (flatcar,) = [p for p in api.get("/profiles").json["items"] if p["name"] == "flatcar"]
    for method, path in (("patch", f"/profiles/{flatcar['id']}"), ("post", "/profiles")):
        body = {"ignition": config} | ({"name": "new", "kind": "local"} if method == "post" else {})
        resp = getattr(api, method)(path, body, expect=422)
        assert resp.mimetype == "application/problem+json"
        (error,) = resp.json["errors"]
        assert error["field"] == "ignition", error
        assert expected in error["message"], error


def test_user_data_still_refuses_anything_but_cloud_init(api: Api, lab: dict[str, Any]) -> None:
    (error,) = api.patch(
        "/profiles/1", {"user_data": '{"ignition": {"version": "3.3.0"}}'}, expect=422
    ).json["errors"]
    assert error["field"] == "user_data" and "#cloud-config" in error["message"]


def test_the_config_is_a_secret_in_listings_and_for_readers(
    api: Api, reader: Api, lab: dict[str, Any]
) -> None:
    for who in (api, reader):
        listed = who.get("/profiles", expect=200).json["items"]
        assert all(p["ignition"] is None and p["redacted"] == ["ignition"] for p in listed)
    assert reader.get("/profiles/1", expect=200).json["ignition"] is None
    assert api.get("/profiles/1", expect=200).json["ignition"] == example_profiles()[0]["ignition"]
    preview = reader.get(f"/machines/{lab['a']['id']}/config-preview", expect=200).json
    assert preview["ignition"] is None and "ignition" in preview["redacted"]
    preview = api.get(f"/machines/{lab['a']['id']}/config-preview", expect=200).json
    assert json.loads(preview["ignition"])["passwd"]["users"][0]["sshAuthorizedKeys"] == [ED2]


def test_export_and_apply_round_trip_the_config(
    db: Database, api: Api, lab: dict[str, Any]
) -> None:
    from bootbrain.inventory import transfer

    exported = transfer.export(db, "yaml")
    profiles = {p["name"]: p for p in yaml.safe_load(exported)["profiles"]}
    assert profiles["flatcar"]["ignition"] == example_profiles()[0]["ignition"]
    again = api.post("/apply", {"document": exported}, expect=200).json
    assert (again["applied"], again["changes"]) == (False, [])
    doc = yaml.safe_load(exported)
    doc["profiles"][0]["ignition"] = doc["profiles"][0]["ignition"].replace("3.3.0", "3.2.0")
    changed = yaml.safe_dump(doc, sort_keys=False)
    plan = api.post("/apply", {"document": changed}, expect=200).json
    assert [(c["key"], c["fields"]) for c in plan["changes"]] == [
        ("flatcar", [{"field": "ignition", "old": None, "new": None}])  # a secret: not shown
    ]
    assert "ignition: (secret, changed)" in plan["diff"]
    assert '"3.2.0"' in api.get("/profiles/1", expect=200).json["ignition"]
    doc["profiles"][0]["ignition"] = doc["profiles"][0]["ignition"].replace("3.2.0", "4.0.0")
    bad = yaml.safe_dump(doc, sort_keys=False)
    problem = api.post("/apply", {"document": bad}, expect=422).json
    assert problem["errors"][0]["field"].endswith("ignition")


def test_cli_prints_the_config(
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
    args = ["machine", "config", str(lab["a"]["id"]), "--document", "ignition.json"]
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["ignition"]["version"] == "3.3.0"
    out = runner.invoke(main, [*args, "--profile", "plain"])
    assert out.exit_code != 0
