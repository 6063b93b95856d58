"""The boot flow against a real inventory: /ipxe, one-shot actions, completion, preview."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from bootbrain.models import Boot, Machine, NextBoot, utcnow
from tests.conftest import Api, add_rack1

UUID = "4c4c4544-0042-3610-8052-b4c04f4e3232"
MAC = "52:54:00:aa:cc:01"


def hexraw(s: str) -> str:
    return s.encode().hex()


def ipxe_query(
    uuid: str = UUID,
    mac: str = MAC,
    serial: str = "",
    manufacturer: str = "",
    product: str = "",
    buildarch: str = "x86_64",
    platform: str = "efi",
) -> str:
    return (
        f"/ipxe?uuid={uuid}&mac={mac.replace(':', '-')}&serial={hexraw(serial)}"
        f"&board-serial=&manufacturer={hexraw(manufacturer)}&product={hexraw(product)}"
        f"&asset=&buildarch={buildarch}&platform={platform}"
    )


def boot(client: FlaskClient, **kw: Any) -> str:
    resp = client.get(ipxe_query(**kw), headers={"User-Agent": "iPXE/1.0.0+git"})
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert resp.headers["Content-Length"] == str(len(resp.data))
    text = resp.get_data(as_text=True)
    assert text.startswith("#!ipxe\n")
    return text


def done_url(script: str) -> str:
    m = re.search(r"^set IPXE_BOOT_DONE_URL (\S+)$", script, re.M)
    assert m, script
    return m.group(1)


def flush(app: Flask) -> None:
    app.extensions["bootbrain"].events.flush()


def boots_from_disk(script: str, step: str) -> None:
    """The script boots profile ``disk`` (kind local) by ``step``: its header says so,
    no kernel is fetched, and the first command after the static settings is ``exit``."""
    assert script.splitlines()[1] == f"# bootbrain: {step} -> profile disk", script
    assert not re.search(r"^\s*(kernel|chain|initrd)\b", script, re.M), script
    commands = [ln for ln in script.splitlines()[2:] if not ln.startswith(("set ", "clear "))]
    assert commands[:2] == ["echo bootbrain: disk, booting from local disk", "exit"], script


@pytest.fixture
def inventory(api: Api) -> dict[str, Any]:
    add_rack1(api)
    api.post("/profiles", {"name": "disk", "kind": "local"}, expect=201)
    api.post(
        "/profiles",
        {
            "name": "installer",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "initrds": ["{{ assets }}/initrd.img"],
            "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0 "
            "bootbrain.done=${IPXE_BOOT_DONE_URL}",
            "complete_state": "deployed",
        },
        expect=201,
    )
    m = api.post(
        "/machines",
        {
            "hostname": "node-var",
            "uuid": UUID,
            "nics": [{"mac": MAC}],
            "network": "rack1",
            "address": "10.200.0.50",
            "profile": "disk",
            "state": "ready",
        },
        expect=201,
    ).json
    return m


def test_assigned_profile_with_static_variables(client: FlaskClient, inventory: dict) -> None:
    script = boot(client)
    assert (
        "set IPXE_BOOT_LINUX_IP_CONFIG ip=10.200.0.50::10.200.0.1:255.255.255.0:"
        "node-var:eth0:none:10.200.0.2:10.200.0.3"
    ) in script
    boots_from_disk(script, "assigned")


def test_next_boot_survives_rerequests_and_is_consumed_by_completion(
    api: Api, client: FlaskClient, app: Flask, inventory: dict
) -> None:
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    first = boot(client)
    second = boot(client)  # firmware re-requests: the action stays
    for script in (first, second):
        assert re.search(r"^kernel .*http://bootbrain.test/assets/vmlinuz ", script, re.M)
    url = done_url(second)
    flush(app)
    path = url.removeprefix("http://bootbrain.test")
    resp = client.post(path, data={"ip": "10.200.0.50/24", "hostname": "node-var"})
    assert resp.status_code == 200, resp.data
    m = api.get(f"/machines/{mid}", expect=200).json
    assert m["next_boot"] is None
    assert m["state"] == "deployed"
    boots_from_disk(boot(client), "assigned")  # the assigned profile again: disk
    # replay: refused, nothing changes
    assert client.post(path, data={}).status_code == 403
    events = api.get(f"/events?machine_id={mid}&kind=completion", expect=200).json["items"]
    assert len(events) == 1
    assert events[0]["data"]["consumed_action"] == "installer"
    assert events[0]["data"]["report"]["ip"] == "10.200.0.50/24"


def test_wrong_and_expired_tokens_are_403_and_change_nothing(
    api: Api,
    client: FlaskClient,
    app: Flask,
    db,
    inventory: dict,  # type: ignore[no-untyped-def]
) -> None:
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    assert client.post("/boot/not-a-token/done").status_code == 403
    url = done_url(boot(client))
    flush(app)
    with db.write() as s:
        s.execute(update(Boot).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.post(url.removeprefix("http://bootbrain.test")).status_code == 403
    assert api.get(f"/machines/{mid}").json["next_boot"]["profile"] == "installer"


def test_refused_completions_are_recorded(
    api: Api,
    client: FlaskClient,
    app: Flask,
    db,
    inventory: dict,  # type: ignore[no-untyped-def]
) -> None:
    """A refusal's 403 must not take its event with it (it used to be rolled back)."""
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    path = done_url(boot(client)).removeprefix("http://bootbrain.test")
    flush(app)
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 403  # replayed
    assert client.post("/boot/" + "x" * 43 + "/done").status_code == 403  # wrong
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    path = done_url(boot(client)).removeprefix("http://bootbrain.test")
    flush(app)
    with db.write() as s:
        s.execute(update(Boot).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.post(path).status_code == 403  # expired
    flush(app)
    refused = api.get("/events?kind=completion_refused", expect=200).json["items"]
    assert [(e["machine_id"], e["data"]["reason"]) for e in refused] == [
        (mid, "this boot has already completed"),
        (None, "unknown boot token"),
        (mid, "boot token expired"),
    ]
    assert all(e["data"]["boot_id"] for e in (refused[0], refused[2]))
    assert all(e["ip"] for e in refused)


@pytest.mark.parametrize("reset", ["cancel-and-set", "set-again"])
def test_a_stale_token_does_not_consume_a_newly_set_action(
    api: Api, client: FlaskClient, app: Flask, inventory: dict, reset: str
) -> None:
    """A token left unused from an earlier action with the same profile completes its
    own boot, and leaves the action set since then to the boot that action issues."""
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    stale = done_url(boot(client)).removeprefix("http://bootbrain.test")
    if reset == "cancel-and-set":
        api.delete(f"/machines/{mid}/next-boot", expect=204)
    api.put(
        f"/machines/{mid}/next-boot",
        {"profile": "installer", "complete_state": "deployed"},
        expect=200,
    )
    flush(app)
    assert client.post(stale).status_code == 200  # its own boot did complete
    m = api.get(f"/machines/{mid}", expect=200).json
    assert m["next_boot"]["profile"] == "installer"
    assert m["state"] == "ready"
    fresh = done_url(boot(client)).removeprefix("http://bootbrain.test")
    flush(app)
    assert client.post(fresh).status_code == 200
    m = api.get(f"/machines/{mid}", expect=200).json
    assert m["next_boot"] is None
    assert m["state"] == "deployed"
    events = api.get(f"/events?machine_id={mid}&kind=completion", expect=200).json["items"]
    assert ["consumed_action" in e["data"] for e in events] == [False, True]


def test_expired_action_is_ignored(api: Api, client: FlaskClient, db, inventory: dict) -> None:  # type: ignore[no-untyped-def]
    api.put(f"/machines/{inventory['id']}/next-boot", {"profile": "installer"}, expect=200)
    with db.write() as s:
        nb = s.scalar(select(NextBoot))
        nb.expires_at = nb.created_at - timedelta(seconds=1)
    assert "vmlinuz" not in boot(client)


def test_cancel_next_boot(api: Api, client: FlaskClient, inventory: dict) -> None:
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    api.delete(f"/machines/{mid}/next-boot", expect=204)
    api.delete(f"/machines/{mid}/next-boot", expect=404)
    assert "vmlinuz" not in boot(client)


def test_identity_conflict_fails_closed(
    api: Api, client: FlaskClient, app: Flask, inventory: dict
) -> None:
    other = api.post(
        "/machines", {"nics": [{"mac": "52:54:00:aa:cc:99"}], "profile": "installer"}, expect=201
    ).json
    script = boot(client, mac="52:54:00:aa:cc:99")  # uuid says one machine, MAC another
    assert "vmlinuz" not in script
    flush(app)
    events = api.get("/events?kind=conflict", expect=200).json["items"]
    assert len(events) == 1
    assert str(other["id"]) in events[0]["message"]


def test_unknown_machine_gets_the_default(
    client: FlaskClient, app: Flask, api: Api, inventory: dict
) -> None:
    script = boot(client, uuid="11111111-2222-3333-4444-555555555555", mac="52:54:00:00:00:09")
    assert "vmlinuz" not in script
    flush(app)
    ev = api.get("/events?kind=boot", expect=200).json["items"][-1]
    assert ev["machine_id"] is None
    assert ev["data"]["step"] == "default"
    assert ev["data"]["facts"]["mac"] == "52:54:00:00:00:09"


def test_rule_by_platform_picks_the_arch_specific_profile(api: Api, client: FlaskClient) -> None:
    api.post(
        "/profiles", {"name": "bios-k", "kind": "linux", "kernel": "http://x/bios"}, expect=201
    )
    api.post("/profiles", {"name": "efi-k", "kind": "linux", "kernel": "http://x/efi"}, expect=201)
    api.post("/rules", {"name": "bios", "platform": "pcbios", "profile": "bios-k"}, expect=201)
    api.post(
        "/rules",
        {"name": "efi", "platform": "efi", "buildarch": "x86_64", "profile": "efi-k"},
        expect=201,
    )
    api.post("/machines", {"nics": [{"mac": MAC}]}, expect=201)
    assert " http://x/bios " in boot(client, uuid="", buildarch="i386", platform="pcbios")
    assert " http://x/efi " in boot(client, uuid="")


def test_boot_records_event_and_last_seen(
    api: Api, client: FlaskClient, app: Flask, inventory: dict
) -> None:
    boot(client, serial="SN-1", manufacturer="Lab Vendor Inc.")
    flush(app)
    ev = api.get(f"/events?machine_id={inventory['id']}&kind=boot", expect=200).json["items"]
    assert ev[-1]["data"]["facts"]["serial"] == "SN-1"
    assert ev[-1]["data"]["facts"]["manufacturer"] == "Lab Vendor Inc."
    assert ev[-1]["data"]["step"] == "assigned"
    assert api.get(f"/machines/{inventory['id']}").json["last_seen_at"] is not None


def test_preview_records_nothing(api: Api, app: Flask, inventory: dict) -> None:
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    out = api.get(f"/machines/{mid}/boot-preview", expect=200).json
    assert out["step"] == "action"
    assert out["profile"] == "installer"
    assert out["script"].startswith("#!ipxe\n")
    assert "ip=10.200.0.50::10.200.0.1" in out["script"]
    flush(app)
    assert api.get("/events?kind=boot").json["items"] == []


def test_preview_explains_a_render_failure(
    api: Api, client: FlaskClient, inventory: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """The preview shows what /ipxe serves when the profile fails for this machine
    (the error script, local boot) and names the field, instead of a 500. The failure
    is logged by the profile's name and the error: never its script or user-data."""
    api.post(
        "/profiles",
        {
            "name": "tagged",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "cmdline": "console=ttyS0 tags={{ machine.tags|join(' ') }}",
            "user_data": "#cloud-config\nruncmd: [echo userdata-secret-7f3a]\n",
        },
        expect=201,  # the sample machine has one tag
    )
    mid = inventory["id"]
    api.patch(f"/machines/{mid}", {"profile": "tagged", "tags": ["gpu", "rack1"]}, expect=200)
    out = api.get(f"/machines/{mid}/boot-preview", expect=200).json
    served = boot(client)
    (logged,) = [r for r in caplog.records if "rendering profile" in r.getMessage()]
    assert logged.getMessage().startswith(f"rendering profile tagged for machine {mid} failed: ")
    assert logged.exc_info is None
    assert "userdata-secret-7f3a" not in caplog.text and "console=ttyS0" not in caplog.text
    assert out["script"] == served
    assert "vmlinuz" not in served
    assert out["step"] == "error"
    assert out["profile"] == "tagged"
    assert out["problem"]["field"] == "cmdline"
    assert "splits or removes words" in out["problem"]["message"]
    assert "profile tagged failed to render for this machine (cmdline" in out["reason"]


def test_a_template_too_costly_for_this_machine_fails_closed(
    api: Api, client: FlaskClient, app: Flask, inventory: dict
) -> None:
    """Cheap for the sample machine (so it is saved), some 10^10 loop iterations for
    node-var: the boot gets the error script (local boot) within the render bound,
    counted on /metrics, instead of holding the worker for seconds."""
    api.post(
        "/profiles",
        {
            "name": "costly",
            "kind": "ipxe",
            "script": "{% if machine.hostname != 'node-1' %}{% for a in range(100000) %}"
            "{% for b in range(100000) %}{% endfor %}{% endfor %}{% endif %}echo hi\n",
        },
        expect=201,
    )
    mid = inventory["id"]
    api.patch(f"/machines/{mid}", {"profile": "costly"}, expect=200)
    start = time.monotonic()
    script = boot(client)
    assert time.monotonic() - start < 2
    assert "echo bootbrain: boot script failed to render on the server" in script
    assert "echo hi" not in script
    assert re.search(r"^exit$", script, re.M)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'kind="render_limit"\} [1-9]', metrics), metrics
    out = api.get(f"/machines/{mid}/boot-preview", expect=200).json
    assert out["step"] == "error"
    assert out["problem"]["field"] == "script"


def test_database_down_still_gets_a_script(client: FlaskClient, app: Flask) -> None:
    from bootbrain.db import Database

    # Nothing listens on port 1: every query fails as a real outage does.
    app.extensions["bootbrain"].db = Database("postgresql+psycopg://x:y@127.0.0.1:1/none")
    resp = client.get(ipxe_query())
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert text.startswith("#!ipxe\n")
    assert "sleep" in text
    assert "Traceback" not in text


def test_a_change_is_seen_by_the_next_boot(
    api: Api, client: FlaskClient, inventory: dict
) -> None:
    """The boot path keeps its connection open between requests; it must not keep a
    stale view of the inventory with it."""
    assert "# bootbrain: assigned -> profile disk\n" in boot(client)
    api.patch(f"/machines/{inventory['id']}", {"profile": "installer"}, expect=200)
    script = boot(client)
    assert "# bootbrain: assigned -> profile installer\n" in script
    assert "http://bootbrain.test/assets/vmlinuz" in script


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_boot_survives_the_database_closing_its_connection(
    client: FlaskClient, app: Flask, inventory: dict
) -> None:
    """No pre-ping on the boot path: a connection the server closed (a restart, an
    idle timeout, a failover) fails once and is retried on a fresh one."""
    first = boot(client)
    db = app.extensions["bootbrain"].db
    with db.engine.connect() as admin:
        closed = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert closed >= 1  # the boot path's connection among them
    second = boot(client)
    assert "inventory unavailable" not in second
    assert second == first
    assert "set IPXE_BOOT_LINUX_IP_CONFIG ip=10.200.0.50::10.200.0.1" in second


def test_discovery_registers_unknown_machines(tmp_path, db_url) -> None:  # type: ignore[no-untyped-def]
    from bootbrain.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(db_url, tmp_path, discovery=True, discovery_per_minute=2))
    client = app.test_client()
    for i in range(4):
        boot(client, uuid="", mac=f"52:54:00:00:01:0{i}")
    with app.extensions["bootbrain"].db.read() as s:
        found = list(s.scalars(select(Machine).where(Machine.state == "discovered")))
    assert len(found) == 2  # the per-minute cap
    app.extensions["bootbrain"].events.close()


def test_tftp_root_is_served_over_http_for_uefi_http_boot(client: FlaskClient, app: Flask) -> None:
    root = app.config["BOOTBRAIN"].dnsmasq.tftp_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "snponly.efi").write_bytes(b"MZ" + bytes(200))
    resp = client.get("/tftp/snponly.efi")
    assert resp.status_code == 200
    assert resp.data == b"MZ" + bytes(200)
    assert client.get("/tftp/..%2fsecret_key").status_code == 404
    assert client.get("/tftp/absent.efi").status_code == 404


def test_tftp_over_http_serves_no_symlink_out_of_the_root(
    client: FlaskClient, app: Flask, tmp_path: Path
) -> None:
    """A symlink in the TFTP root to /etc/passwd, or to the secret beside the root, is
    not served; one to another binary inside the root is (``ipxe.efi -> snponly.efi``)."""
    root = app.config["BOOTBRAIN"].dnsmasq.tftp_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "snponly.efi").write_bytes(b"MZ" + bytes(100))
    (root / "ipxe.efi").symlink_to("snponly.efi")
    (root / "evil.efi").symlink_to("/etc/passwd")
    outside = tmp_path / "secret_key"
    outside.write_text("the brain's secret\n")
    (root / "key.efi").symlink_to(outside)
    (root / "sub").mkdir()
    (root / "dir.efi").symlink_to(root / "sub")
    for name in ("evil.efi", "key.efi", "dir.efi", "sub"):
        resp = client.get(f"/tftp/{name}")
        assert resp.status_code == 404, name
        assert b"root:" not in resp.data and b"secret" not in resp.data
    assert client.get("/tftp/ipxe.efi").data == b"MZ" + bytes(100)


def test_tftp_over_http_answers_ranges_and_revalidation(client: FlaskClient, app: Flask) -> None:
    """What UEFI HTTP boot firmware and caches ask of a file server still works."""
    root = app.config["BOOTBRAIN"].dnsmasq.tftp_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "snponly.efi").write_bytes(bytes(range(256)))
    full = client.get("/tftp/snponly.efi")
    assert full.status_code == 200
    assert full.headers["Content-Length"] == "256"
    assert full.mimetype == "application/efi"
    part = client.get("/tftp/snponly.efi", headers={"Range": "bytes=16-31"})
    assert part.status_code == 206 and part.data == bytes(range(16, 32))
    again = client.get("/tftp/snponly.efi", headers={"If-None-Match": full.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
