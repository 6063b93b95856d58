"""``bootbrain import`` does what the README promises: CSV and YAML, every bad row
reported with its line, all or nothing; and ``export`` reads back in."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import Cli, make_cli

GOOD_CSV_ROWS = "".join(f"n{i},52:54:00:00:02:{i:02x},ready,gpu;rack1\n" for i in range(10))


def problems(output: str, path: Path) -> list[tuple[int, str]]:
    """(line, field) of each reported row, in the order printed."""
    pattern = re.escape(str(path)) + r":(\d+): ([^:]+):"
    return [(int(line), field) for line, field in re.findall(pattern, output)]


def test_csv_reports_every_bad_row_with_its_line(runner: Cli, tmp_path: Path) -> None:
    path = tmp_path / "machines.csv"
    path.write_text(
        "hostname,macs,state,tags\n"  # line 1
        "ok-1,52:54:00:00:00:01,ready,\n"  # 2
        "bad_name,52:54:00:00:00:02,ready,\n"  # 3: hostname
        "ok-2,not-a-mac,ready,\n"  # 4: nics
        "ok-3,52:54:00:00:00:04,asleep,\n"  # 5: state
        "ok-4,52:54:00:00:00:01,ready,\n"  # 6: a MAC row 2 holds
    )
    result = runner("import", str(path), code=2)
    found = problems(result.output, path)
    assert [line for line, _ in found] == [3, 4, 5, 6], result.output
    assert found[0][1] == "hostname" and found[2][1] == "state"
    assert found[1][1].startswith("nics") and found[3][1] == "nics"
    assert "nothing imported: 4 bad row(s)" in result.output
    assert runner.json("machine", "list", "--json") == []


def test_yaml_reports_every_bad_row_with_its_line(runner: Cli, tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "networks:\n"  # 1
        "  - {name: rack1, cidr: 10.20.0.0/24}\n"  # 2
        "  - {name: rack2, cidr: 10.30.0.0/33}\n"  # 3: cidr
        "profiles:\n"  # 4
        "  - name: disk\n"  # 5
        "    kind: local\n"  # 6
        "  - name: broken\n"  # 7: script
        "    kind: ipxe\n"
        '    script: "#!ipxe\\necho {{ nope }}\\n"\n'
        "machines:\n"  # 10
        "  - {hostname: a, nics: [{mac: '52:54:00:00:00:01'}], profile: disk}\n"  # 11
        "  - {hostname: b, network: rack1, address: 10.99.0.5}\n"  # 12: address
        "  - {hostname: c, profile: missing}\n"  # 13: profile
    )
    result = runner("import", str(path), code=2)
    found = problems(result.output, path)
    assert found == [(3, "cidr"), (7, "script"), (12, "address"), (13, "profile")], result.output
    assert runner.json("network", "list", "--json") == []
    assert runner.json("profile", "list", "--json") == []


def test_one_bad_row_imports_nothing(runner: Cli, tmp_path: Path) -> None:
    path = tmp_path / "machines.csv"
    path.write_text(
        "hostname,macs,state,tags\n" + GOOD_CSV_ROWS + "n99,52:54:00:00:02:00,ready,\n"
    )  # the last row's MAC is the first row's
    result = runner("import", str(path), code=2)
    assert problems(result.output, path) == [(12, "nics")]
    assert runner.json("machine", "list", "--json") == []
    path.write_text("hostname,macs,state,tags\n" + GOOD_CSV_ROWS)
    assert "imported 10 machines" in runner("import", str(path)).stdout
    machines = runner.json("machine", "list", "--json")
    assert len(machines) == 10 and machines[0]["tags"] == ["gpu", "rack1"]


def test_export_then_import_on_a_fresh_database_reproduces_the_inventory(
    runner: Cli, tmp_path: Path, db_url: str
) -> None:
    runner("demo")
    runner("machine", "edit", "3", "--notes", "spare", "--tag", "lab", "--tag", "spare")
    exported = runner("export").stdout
    (tmp_path / "inventory.yaml").write_text(exported)
    csv = runner("export", "--format", "csv").stdout
    if db_url.startswith("sqlite"):
        fresh_url = f"sqlite:///{tmp_path / 'fresh' / 'fresh.db'}"
    else:
        runner("machine", "delete", "1")  # one PostgreSQL test database: empty it instead
        for mid in ("2", "3"):
            runner("machine", "delete", mid)
        for kind, ids in (("rule", "1"), ("network", "1")):
            runner(kind, "delete", ids)
        for pid in ("5", "1", "2", "3", "4"):
            runner("profile", "delete", pid)
        fresh_url = db_url
    fresh = make_cli(tmp_path / "fresh", fresh_url) if fresh_url != db_url else runner
    fresh("import", str(tmp_path / "inventory.yaml"))
    assert fresh("export").stdout == exported
    assert fresh("export", "--format", "csv").stdout == csv
