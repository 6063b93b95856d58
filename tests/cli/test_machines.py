"""``bootbrain machine add | edit | list | show | delete | next-boot | config`` and
``bootbrain render``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.cli.conftest import Cli

UUID = "4c4c4544-0042-3610-8052-b4c04f4e3232"


@pytest.fixture
def site(runner: Cli) -> Cli:
    """rack1 (10.20.0.0/24), a local profile and a linux one."""
    runner.run(
        "network", "add", "--set", "name=rack1", "--set", "cidr=10.20.0.0/24",
        "--set", "gateway=10.20.0.1", "--set", 'dns=["10.20.0.2", "10.20.0.3"]',
        "--set", "domain=dc1.example.net",
    )  # fmt: skip
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    runner.run(
        "profile", "add", "--set", "name=installer", "--set", "kind=linux",
        "--set", "kernel={{ assets }}/vmlinuz", "--set", 'initrds=["{{ assets }}/initrd.img"]',
        "--set", "cmdline=${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0",
        "--set", "complete_state=deployed",
    )  # fmt: skip
    return runner


def add(cli: Cli, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = cli.json("machine", "add", *args, "--json")
    return out


def test_add_stores_every_field_in_canonical_form(site: Cli) -> None:
    m = add(
        site,
        "--hostname", "Node-01", "--mac", "52-54-00-AA-CC-01", "--mac", "5254.00aa.cc02",
        "--uuid", UUID.upper(), "--serial", "SN-1", "--board-serial", "BSN-1",
        "--manufacturer", "Dell Inc.", "--product", "PowerEdge R650", "--asset-tag", "A-1",
        "--tag", "gpu", "--tag", "rack1", "--state", "ready", "--profile", "disk",
        "--network", "rack1", "--address", "10.20.0.50", "--interface", "eno1",
        "--notes", "first one",
    )  # fmt: skip
    assert m["hostname"] == "node-01"
    assert m["uuid"] == UUID
    assert [(n["mac"], n["boot"]) for n in m["nics"]] == [
        ("52:54:00:aa:cc:01", True),  # the first --mac boots
        ("52:54:00:aa:cc:02", False),
    ]
    assert {k: m[k] for k in ("serial", "board_serial", "manufacturer", "product")} == {
        "serial": "SN-1",
        "board_serial": "BSN-1",
        "manufacturer": "Dell Inc.",
        "product": "PowerEdge R650",
    }
    assert m["asset_tag"] == "A-1"
    assert sorted(m["tags"]) == ["gpu", "rack1"]
    assert (m["state"], m["profile"], m["network"]) == ("ready", "disk", "rack1")
    assert (m["address"], m["interface"], m["notes"]) == ("10.20.0.50", "eno1", "first one")
    assert site.machine(m["id"]) == m  # what show prints is what was stored


def test_add_prints_a_table_by_default(site: Cli) -> None:
    out = site.run("machine", "add", "--hostname", "node-01", "--state", "ready").stdout
    assert "node-01" in out and "ready" in out
    assert [m["hostname"] for m in site.machines()] == ["node-01"]


def test_list_filters(site: Cli) -> None:
    a = add(site, "--hostname", "a", "--mac", "52:54:00:00:00:0a", "--tag", "gpu",
            "--state", "ready", "--serial", "S-A", "--uuid", UUID)  # fmt: skip
    b = add(site, "--hostname", "b", "--mac", "52:54:00:00:00:0b", "--tag", "gpu")
    c = add(site, "--hostname", "c", "--state", "ready")

    def ids(*filters: str) -> list[int]:
        return [m["id"] for m in site.json("machine", "list", "--json", *filters)]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids("--tag", "gpu") == [a["id"], b["id"]]
    assert ids("--state", "ready") == [a["id"], c["id"]]
    assert ids("--tag", "gpu", "--state", "ready") == [a["id"]]
    assert ids("--mac", "52-54-00-00-00-0B") == [b["id"]]
    assert ids("--hostname", "c") == [c["id"]]
    assert ids("--serial", "S-A") == [a["id"]]
    assert ids("--uuid", UUID) == [a["id"]]
    assert ids("--tag", "none-has-it") == []
    assert ids("--limit", "2") == [a["id"], b["id"]]
    table = site.run("machine", "list", "--tag", "gpu").stdout
    assert " a " in table and " b " in table and " c " not in table


def test_edit_changes_only_the_given_fields(site: Cli) -> None:
    m = add(site, "--hostname", "node-01", "--mac", "52:54:00:aa:cc:01", "--tag", "old",
            "--network", "rack1", "--address", "10.20.0.50", "--notes", "keep me")  # fmt: skip
    edited = site.json(
        "machine", "edit", str(m["id"]), "--state", "maintenance", "--tag", "new",
        "--tag", "gpu", "--mac", "52:54:00:aa:cc:09", "--address", "10.20.0.51", "--json",
    )  # fmt: skip
    assert edited["state"] == "maintenance"
    assert sorted(edited["tags"]) == ["gpu", "new"]  # --tag replaces the tags
    assert [n["mac"] for n in edited["nics"]] == ["52:54:00:aa:cc:09"]  # --mac the NICs
    assert edited["address"] == "10.20.0.51"
    assert (edited["hostname"], edited["notes"], edited["network"]) == (
        "node-01",
        "keep me",
        "rack1",
    )
    assert edited["version"] == m["version"] + 1
    assert site.machine(m["id"]) == edited


def test_delete(site: Cli) -> None:
    m = add(site, "--hostname", "node-01")
    keep = add(site, "--hostname", "node-02")
    assert site.run("machine", "delete", str(m["id"])).stdout == f"deleted machine {m['id']}\n"
    assert [x["id"] for x in site.machines()] == [keep["id"]]
    assert f"machine {m['id']} does not exist" in site.fails("machine", "show", str(m["id"]))
    assert f"machine {m['id']} does not exist" in site.fails("machine", "delete", str(m["id"]))


def test_next_boot_set_shown_rendered_and_cancelled(site: Cli) -> None:
    m = add(site, "--hostname", "node-01", "--mac", "52:54:00:aa:cc:01", "--profile", "disk",
            "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    out = site.run(
        "machine", "next-boot", str(m["id"]), "--profile", "installer",
        "--expires-in", "600", "--then-state", "deployed",
    ).stdout  # fmt: skip
    assert out.startswith(f"machine {m['id']} boots installer next (until ")
    nb = site.machine(m["id"])["next_boot"]
    assert nb["profile"] == "installer"
    assert nb["complete_state"] == "deployed"

    render = site.run("render", "--mac", "52:54:00:aa:cc:01")
    assert render.stderr.startswith(f"# machine {m['id']}: step action, profile installer\n")
    assert "\nkernel --name vmlinuz http://bootbrain.test/assets/vmlinuz " in render.stdout
    assert "ip=10.20.0.50::10.20.0.1:255.255.255.0:node-01:eth0:none:10.20.0.2:10.20.0.3" in (
        render.stdout
    )

    cancelled = site.run("machine", "next-boot", str(m["id"]), "--cancel").stdout
    assert cancelled == f"cancelled the next boot of machine {m['id']}\n"
    assert site.machine(m["id"])["next_boot"] is None
    render = site.run("render", "--mac", "52:54:00:aa:cc:01")
    assert render.stderr.startswith(f"# machine {m['id']}: step assigned, profile disk\n")
    assert "\nkernel" not in render.stdout

    err = site.fails("machine", "next-boot", str(m["id"]), "--cancel")
    assert f"next boot of machine {m['id']} does not exist" in err
    assert "--profile is required" in site.fails("machine", "next-boot", str(m["id"]))
    assert "no profile named 'nope'" in site.fails(
        "machine", "next-boot", str(m["id"]), "--profile", "nope"
    )
    assert site.machine(m["id"])["next_boot"] is None


def test_render_explains_a_profile_that_fails_for_this_machine(site: Cli) -> None:
    """Valid for the sample machine, not for one with two tags: the machine boots from
    disk, and ``render`` says why instead of a traceback."""
    site.run(
        "profile", "add", "--set", "name=tagged", "--set", "kind=linux",
        "--set", "kernel={{ assets }}/vmlinuz",
        "--set", "cmdline=tags={{ machine.tags|join(' ') }}",
    )  # fmt: skip
    add(site, "--hostname", "node-01", "--mac", "52:54:00:aa:cc:01", "--profile", "tagged",
        "--tag", "gpu", "--tag", "rack1")  # fmt: skip
    render = site.run("render", "--mac", "52:54:00:aa:cc:01", code=1)
    assert "step error, profile tagged" in render.stderr
    assert "# render failed: cmdline" in render.stderr
    assert "splits or removes words" in render.stderr
    assert render.stdout.startswith("#!ipxe\n")
    assert "echo bootbrain: boot script failed to render on the server" in render.stdout
    assert "vmlinuz" not in render.stdout


def test_config_prints_the_booted_os_documents(site: Cli) -> None:
    m = add(site, "--hostname", "node-01", "--mac", "52:54:00:aa:cc:01", "--profile", "installer",
            "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    result = site.run("machine", "config", str(m["id"]))
    assert result.stderr.startswith(f"# machine {m['id']}: step assigned, profile installer\n")
    for name in ("meta-data", "user-data", "vendor-data", "network-config", "metadata.json"):
        assert f"# ---------- {name} ----------\n" in result.stdout
    meta = site.run("machine", "config", str(m["id"]), "--document", "meta-data").stdout
    assert meta.startswith(f"instance-id: bootbrain-machine-{m['id']}\n")
    assert "local-hostname: node-01.dc1.example.net\n" in meta
    net = site.run("machine", "config", str(m["id"]), "--document", "network-config").stdout
    assert "10.20.0.50/24" in net
    assert "--document" in site.fails("machine", "config", str(m["id"]), "--document", "secrets")


def test_render_unknown_machines_and_rules(site: Cli) -> None:
    out = site.run("render", "--mac", "52:54:00:ff:ff:ff", "--platform", "pcbios",
                   "--buildarch", "i386")  # fmt: skip
    assert out.stderr.startswith("# machine (not in the inventory): step default, profile (local")
    assert out.stdout.startswith("#!ipxe\n# bootbrain: default\n")
    site.run("rule", "add", "--set", "name=efi-install", "--set", "platform=efi",
             "--set", "profile=installer")  # fmt: skip
    efi = site.run("render", "--mac", "52:54:00:ff:ff:ff", "--platform", "efi")
    assert "step rule, profile installer, rule efi-install" in efi.stderr
    bios = site.run("render", "--mac", "52:54:00:ff:ff:ff", "--platform", "pcbios")
    assert "step default" in bios.stderr
    assert "not a MAC address" in site.fails("render", "--mac", "zz")


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--mac", "zz"], "nics.0.mac"),
        (["--state", "bogus"], "state"),
        (["--hostname", "bad_name"], "hostname"),
        (["--uuid", "not-a-uuid"], "uuid"),
        (["--network", "rack1", "--address", "10.99.0.1"], "address"),
        (["--address", "10.20.0.9"], "network"),
        (["--network", "nowhere", "--address", "10.20.0.9"], "network"),
        (["--profile", "nope"], "profile"),
        (["--interface", "a name"], "interface"),
        (["--tag", "has space"], "tags.0"),
    ],
)
def test_a_bad_value_is_exit_2_naming_the_field(site: Cli, args: list[str], field: str) -> None:
    err = site.fails("machine", "add", *args)
    assert err.startswith(f"error: {field}: "), err
    assert site.machines() == []  # nothing written


def test_edit_refuses_bad_values_and_changes_nothing(site: Cli) -> None:
    m = add(site, "--hostname", "node-01", "--network", "rack1", "--address", "10.20.0.50")
    assert site.fails("machine", "edit", str(m["id"]), "--address", "10.99.0.1").startswith(
        "error: address: "
    )
    assert site.fails("machine", "edit", str(m["id"]), "--state", "bogus").startswith(
        "error: state: "
    )
    assert site.machine(m["id"]) == m


def test_a_value_another_machine_holds_names_it(site: Cli) -> None:
    a = add(site, "--hostname", "node-01", "--mac", "52:54:00:aa:cc:01", "--uuid", UUID,
            "--network", "rack1", "--address", "10.20.0.50")  # fmt: skip
    for args, field, detail in (
        (["--mac", "52:54:00:AA:CC:01"], "nics", "MAC 52:54:00:aa:cc:01"),
        (["--hostname", "node-01"], "hostname", "hostname node-01"),
        (["--uuid", UUID], "uuid", f"uuid {UUID}"),
        (["--network", "rack1", "--address", "10.20.0.50"], "address", "address 10.20.0.50"),
    ):
        err = site.fails("machine", "add", *args)
        assert err.startswith(f"error: {field}: {detail} "), err
        assert f"machine {a['id']}" in err, err  # the holder
    b = add(site, "--hostname", "node-02")
    err = site.fails("machine", "edit", str(b["id"]), "--mac", "52:54:00:aa:cc:01")
    assert f"belongs to machine {a['id']}" in err
    assert [m["id"] for m in site.machines()] == [a["id"], b["id"]]


@pytest.mark.parametrize(
    "args",
    [
        ["machine", "show", "99"],
        ["machine", "edit", "99", "--state", "ready"],
        ["machine", "delete", "99"],
        ["machine", "next-boot", "99", "--profile", "disk"],
        ["machine", "next-boot", "99", "--cancel"],
        ["machine", "config", "99"],
    ],
)
def test_a_missing_machine_is_named(site: Cli, args: list[str]) -> None:
    assert site.fails(*args) == "error: machine 99 does not exist\n"


def test_a_name_that_is_no_machine_is_named(site: Cli) -> None:
    # Not a number, so a MAC, UUID or hostname (tests/cli/test_output.py): none matches.
    assert site.fails("machine", "show", "one") == (
        "error: no machine 'one': not the id, MAC, UUID or hostname of any machine\n"
    )


def test_boots_shows_each_attempt_and_its_stages(site: Cli) -> None:
    from tests.api.test_boot import ipxe_query
    from tests.cli.test_dhcp import api_of

    m = add(site, "--hostname", "node-b", "--mac", "52:54:00:00:b0:01", "--profile", "installer")
    assert "has no recorded boot attempts" in site.run("machine", "boots", "node-b").stdout
    with api_of(site) as api:
        env = {"REMOTE_ADDR": "10.20.0.31"}
        assert api.client.get("/boot.ipxe", environ_overrides=env).status_code == 200
        resp = api.client.get(ipxe_query(uuid="", mac="52:54:00:00:b0:01"), environ_overrides=env)
        assert resp.status_code == 200
        api.client.application.extensions["bootbrain"].events.flush()
    out = site.run("machine", "boots", "node-b").stdout
    lines = out.splitlines()
    assert " in_progress installer (assigned)" in lines[0], out
    assert lines[1].split()[3:] == ["bootstrap", "fetched", "/boot.ipxe", "from", "10.20.0.31"]
    assert lines[2].split()[3:] == ["decision", "/ipxe", "decided", "by", "assigned:", "profile",
                                    "installer"]  # fmt: skip
    assert lines[3] == "  (no fetch on record: kernel, initrd)"
    assert "never fetched its kernel, documents or reported completion" in lines[4]
    # nginx's assets log, ingested twice: the kernel fetch is stored once.
    log = site.home / "assets.log"
    log.write_text(
        '{"msec":"%.3f","ip":"10.20.0.31","uri":"/assets/vmlinuz","status":"200",'
        '"bytes":"8000000","request_time":"1.250"}\nnot json\n' % (time.time() + 1.25)
    )
    out = site.run("boots", "ingest", str(log)).stdout
    assert out == "1 new asset fetch(es), 0 seen before, 1 skipped\n"
    out = site.run("boots", "ingest", str(log)).stdout
    assert out == "0 new asset fetch(es), 1 seen before, 1 skipped\n"
    (attempt,) = site.json("machine", "boots", str(m["id"]), "--json")
    assert [s["stage"] for s in attempt["stages"]] == ["bootstrap", "decision", "kernel"]
    assert attempt["stages"][2]["data"]["bytes"] == 8_000_000
    assert attempt["not_seen"] == ["initrd"]
    assert site.run("boots", "stuck").stdout == "0 stuck\n"
    assert "no machine 'nope'" in site.fails("machine", "boots", "nope")


def test_explain_joins_what_it_would_boot_with_how_its_last_boot_went(site: Cli) -> None:
    from datetime import timedelta

    from sqlalchemy import select

    from bootbrain.models import Boot, Event
    from tests.api.test_boot import ipxe_query
    from tests.cli.test_dhcp import api_of

    m = add(site, "--hostname", "node-x", "--mac", "52:54:00:00:b0:02", "--profile", "installer")
    out = site.run("explain", "node-x").stdout
    assert out.startswith(f"machine {m['id']} would boot now: step assigned, profile installer")
    assert "last boot: none on record" in out
    with api_of(site) as api:
        resp = api.client.get(
            ipxe_query(uuid="", mac="52:54:00:00:b0:02"),
            environ_overrides={"REMOTE_ADDR": "10.20.0.32"},
        )
        assert resp.status_code == 200
        services = api.client.application.extensions["bootbrain"]
        services.events.flush()
        # 40 minutes pass (the default limit is 30) with nothing more from the machine.
        with services.db.write() as s:
            for row in [*s.scalars(select(Event)), *s.scalars(select(Boot))]:
                for col in ("at", "created_at", "expires_at"):
                    if hasattr(row, col):
                        setattr(row, col, getattr(row, col) - timedelta(minutes=40))
    lines = site.run("explain", "node-x").stdout.splitlines()
    assert lines[2].startswith("last boot: stuck, started "), lines
    assert "installer (assigned)" in lines[2], lines
    assert lines[3].split()[3:6] == ["decision", "/ipxe", "decided"], lines
    assert lines[-2] == (
        "  last stage: /ipxe decided by assigned: profile installer 40 min ago; "
        "never fetched its kernel, documents or reported completion"
    ), lines
    assert lines[-1] == "  STUCK: no new stage within 1800 s", lines
    doc = site.json("explain", str(m["id"]), "--output", "json")
    assert (doc["now"]["step"], doc["now"]["profile"]) == ("assigned", "installer")
    assert doc["now"]["script"].startswith("#!ipxe\n")
    assert (doc["last_boot"]["status"], doc["last_boot"]["last_stage"]) == ("stuck", "decision")
    # --record: one boot.stuck event an attempt, however often it runs.
    first = site.run("boots", "stuck", "--record")
    assert "recorded 1 new boot.stuck event(s)" in first.stderr
    assert first.stdout.endswith("1 stuck\n")
    assert "recorded 0 new boot.stuck event(s)" in site.run("boots", "stuck", "--record").stderr
    assert "no machine 'nope'" in site.fails("explain", "nope")
