"""``bootbrain apply FILE [--dry-run] [--prune]``: the inventory as code.

The round trip (``export`` → a fresh database → ``apply`` gives the same inventory,
and a second ``apply`` changes nothing), the plan as a diff, deletes only with
``--prune``, every bad row and every inconsistency reported with its line, and
nothing written when anything is wrong.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, MakeCli
from tests.cli.test_transfer import build_inventory, problems, shown


def write(cli: Cli, text: str, name: str = "inventory.yaml") -> Path:
    path = cli.home / name
    path.write_text(text)
    return path


def test_export_then_apply_on_a_fresh_database_reproduces_the_inventory(
    make_cli: MakeCli,
) -> None:
    first = make_cli("first")
    build_inventory(first)
    exported = first.export()
    machines = shown(first)

    second = make_cli("second", fresh=True)
    path = write(second, exported)
    out = second.run("apply", str(path)).stdout
    assert "+ network rack1\n" in out
    assert "+ machine node-01\n" in out
    assert "+ machine serial:/ONLY-SERIAL\n" in out
    assert out.endswith(
        "plan: 12 to create, 0 to change, 0 to delete\napplied: 12 created, 0 changed, 0 deleted\n"
    )
    assert second.export() == exported
    assert shown(second) == machines
    # The second time, nothing to do: and nothing done.
    assert second.run("apply", str(path)).stdout == "no changes\n"
    assert second.run("apply", "--prune", str(path)).stdout == "no changes\n"
    assert second.export() == exported


def test_applying_the_export_of_the_same_inventory_changes_nothing(runner: Cli) -> None:
    runner.run("demo")
    exported = runner.export()
    path = write(runner, exported)
    assert runner.run("apply", "--prune", str(path)).stdout == "no changes\n"
    assert runner.export() == exported


SITE = """\
networks:
  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1}
profiles:
  - {name: disk, kind: local}
  - {name: xyz, kind: chain, chain_url: 'https://boot.netboot.xyz/ipxe/netboot.xyz.lkrn'}
rules:
  - {name: dell, manufacturer: Dell Inc., profile: xyz}
machines:
  - hostname: node-01
    nics: [{mac: '52:54:00:aa:cc:01'}]
    network: rack1
    address: 10.20.0.50
    profile: disk
  - hostname: node-02
    nics: [{mac: '52:54:00:aa:cc:02'}]
"""


def test_dry_run_prints_the_plan_and_changes_nothing(runner: Cli) -> None:
    runner.run("apply", str(write(runner, SITE)))
    before = runner.export()
    changed = (
        SITE.replace("address: 10.20.0.50", "address: 10.20.0.51")
        .replace("profile: xyz", "profile: disk")
        .replace(
            "  - {name: xyz, kind: chain, chain_url: 'https://boot.netboot.xyz/ipxe/netboot.xyz.lkrn'}\n",
            "",
        )
        .replace("  - hostname: node-02\n    nics: [{mac: '52:54:00:aa:cc:02'}]\n", "")
        + "  - {hostname: node-03, state: ready, tags: [lab]}\n"
    )
    path = write(runner, changed, "changed.yaml")
    out = runner.run("apply", "--dry-run", str(path)).stdout
    assert out == (
        "~ rule dell\n"
        "    profile: xyz -> disk\n"
        "~ machine node-01\n"
        "    address: 10.20.0.50 -> 10.20.0.51\n"
        "+ machine node-03\n"
        "plan: 1 to create, 2 to change, 0 to delete\n"
    )
    assert runner.export() == before
    # Without --prune nothing is deleted; with it, what the file leaves out is.
    pruned = runner.run("apply", "--dry-run", "--prune", str(path)).stdout
    assert "- machine node-02\n" in pruned
    assert "- profile xyz\n" in pruned
    assert pruned.endswith("plan: 1 to create, 2 to change, 2 to delete\n")
    assert runner.export() == before

    out = runner.run("apply", "--prune", str(path)).stdout
    assert out.endswith("applied: 1 created, 2 changed, 2 deleted\n")
    assert [m["hostname"] for m in runner.machines()] == ["node-01", "node-03"]
    one = runner.machines()[0]
    assert one["address"] == "10.20.0.51"
    assert [p["name"] for p in runner.json("profile", "list", "--json")] == ["disk"]
    assert [r["profile"] for r in runner.json("rule", "list", "--json")] == ["disk"]
    assert runner.run("apply", "--prune", str(path)).stdout == "no changes\n"


def test_a_machine_is_matched_by_its_boot_mac_when_its_hostname_is_new(runner: Cli) -> None:
    runner.run("machine", "add", "--mac", "52:54:00:aa:cc:09", "--state", "discovered")
    (before,) = runner.machines()
    path = write(
        runner,
        "machines:\n  - {hostname: node-09, nics: [{mac: '52:54:00:aa:cc:09'}], state: ready}\n",
    )
    out = runner.run("apply", str(path)).stdout
    assert out.startswith(
        "~ machine node-09\n    hostname: (none) -> node-09\n    state: discovered -> ready\n"
    )
    (after,) = runner.machines()
    assert (after["id"], after["hostname"], after["state"]) == (before["id"], "node-09", "ready")
    # A new hostname on the same boot MAC renames the machine.
    path.write_text(path.read_text().replace("node-09", "node-10"))
    out = runner.run("apply", str(path)).stdout
    assert out.startswith("~ machine node-10\n    hostname: node-09 -> node-10\nplan:")
    assert [(m["id"], m["hostname"]) for m in runner.machines()] == [(before["id"], "node-10")]


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_applied(runner: Cli) -> None:
    runner.run("apply", str(write(runner, SITE)))
    before = runner.export()
    path = write(
        runner,
        "networks:\n"  # 1
        "  - {name: rack1, cidr: 10.20.0.0/33}\n"  # 2
        "profiles:\n"  # 3
        "  - {name: inst, kind: linux, kernel: '{{ nope }}/vmlinuz'}\n"  # 4
        "machines:\n"  # 5
        "  - {hostname: Bad_Name}\n"  # 6
        "  - {hostname: node-01, state: bogus}\n"  # 7
        "  - {hostname: node-05, nics: [{mac: '52:54:00:aa:cc:05'}]}\n"  # 8: fine
        "  - {hostname: node-05}\n"  # 9: twice
        "  - {notes: nothing to know it by}\n",  # 10
        "bad.yaml",
    )
    err = runner.fails("apply", str(path))
    assert problems(err, path) == [
        (2, "cidr"),
        (4, "kernel"),
        (6, "hostname"),
        (7, "state"),
        (9, "hostname"),
        (10, "hostname"),
    ]
    assert err.endswith("error: nothing applied: 6 problem(s)\n")
    assert runner.export() == before


def test_an_inconsistent_plan_is_refused_whole_with_every_problem(runner: Cli) -> None:
    runner.run("apply", str(write(runner, SITE)))
    before = runner.export()
    path = write(
        runner,
        "networks:\n"  # 1
        "  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1}\n"  # 2
        "profiles:\n"  # 3
        "  - {name: disk, kind: local}\n"  # 4
        "rules:\n"  # 5
        "  - {name: dell, manufacturer: Dell Inc., profile: xyz}\n"  # 6: xyz is pruned
        "machines:\n"  # 7
        "  - hostname: node-01\n"  # 8
        "    nics: [{mac: '52:54:00:aa:cc:01'}]\n"  # 9
        "    network: rack1\n"  # 10
        "    address: 10.99.0.50\n"  # 11: outside rack1
        "  - hostname: node-02\n"  # 12
        "    nics: [{mac: '52:54:00:aa:cc:01'}]\n",  # 13: node-01's MAC
        "inconsistent.yaml",
    )
    err = runner.fails("apply", "--prune", str(path))
    assert problems(err, path) == [(6, "profile"), (8, "address"), (12, "nics")]
    assert "profile xyz is deleted by this plan (prune)" in err
    assert "MAC 52:54:00:aa:cc:01 would belong to both machine node-01 and machine node-02" in err
    assert err.endswith("error: nothing applied: 3 problem(s)\n")
    assert runner.export() == before
    # Without --prune, xyz stays: the rule's problem is gone, the others are not.
    err = runner.fails("apply", "--dry-run", str(path))
    assert problems(err, path) == [(8, "address"), (12, "nics")]


def test_a_machine_the_file_does_not_name_still_holds_its_mac(runner: Cli) -> None:
    runner.run("machine", "add", "--hostname", "old", "--mac", "52:54:00:aa:cc:01",
               "--mac", "52:54:00:aa:cc:02")  # fmt: skip
    path = write(runner, "machines:\n  - {hostname: new, nics: [{mac: '52:54:00:aa:cc:02'}]}\n")
    err = runner.fails("apply", str(path))
    assert problems(err, path) == [(2, "nics")]
    assert "would belong to both machine new and machine old" in err
    # With --prune, old goes and new takes its MAC, in one transaction.
    out = runner.run("apply", "--prune", str(path)).stdout
    assert out == (
        "+ machine new\n- machine old\nplan: 1 to create, 0 to change, 1 to delete\n"
        "applied: 1 created, 0 changed, 1 deleted\n"
    )
    assert [m["hostname"] for m in runner.machines()] == ["new"]


def test_apply_reads_stdin(runner: Cli) -> None:
    out = runner.run("apply", "-", input="networks:\n  - {name: rack9, cidr: 10.9.0.0/24}\n")
    assert out.stdout.endswith("applied: 1 created, 0 changed, 0 deleted\n")
    assert [n["name"] for n in runner.json("network", "list", "--json")] == ["rack9"]


def test_dnsmasq_follows_what_apply_changed(dnsmasq_cli: Cli) -> None:
    cli = dnsmasq_cli
    path = write(cli, SITE)
    cli.run("apply", str(path))
    (one, _) = cli.machines()
    assert cli.host_files() == {
        f"machine-{one['id']}.hosts": "52:54:00:aa:cc:01,10.20.0.50,node-01\n"
    }
    path.write_text(SITE.replace("10.20.0.50", "10.20.0.60"))
    cli.run("apply", str(path))
    assert cli.host_files() == {
        f"machine-{one['id']}.hosts": "52:54:00:aa:cc:01,10.20.0.60,node-01\n"
    }
    path.write_text(SITE.split("machines:")[0] + "machines: []\n")
    assert cli.run("apply", "--prune", str(path)).stdout.endswith("0 changed, 2 deleted\n")
    assert cli.host_files() == {}
