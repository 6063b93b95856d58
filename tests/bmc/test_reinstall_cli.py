"""``bootbrain machine reinstall`` against ipmi_sim BMCs: by hostname and by tag, with a
concurrency limit and a failure stop, the summary and the power column of ``machine list``."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Cli

from .conftest import PASSWORD, USER, IpmiSim


def _bmc(runner: Cli, host: str, sim: IpmiSim, password: str = PASSWORD) -> None:
    runner.run(
        "machine", "bmc", "set", host, "--kind", "ipmi", "--address", "127.0.0.1",
        "--port", str(sim.port), "--username", USER, input=f"{password}\n",
    )  # fmt: skip


def test_reinstall_by_host_and_by_tag(runner: Cli, ipmi_sims: Any) -> None:
    sims: list[IpmiSim] = ipmi_sims(3, 0.0)
    runner.run("profile", "add", "--set", "name=inst", "--set", "kind=local")
    for i, sim in enumerate(sims):
        runner.run("machine", "add", "--hostname", f"node-{i}", "--tag", "rack2")
        _bmc(runner, f"node-{i}", sim, PASSWORD if i != 1 else "wrong-one")

    left = runner.run("machine", "reinstall", "node-0", "--profile", "inst", "--no-power-on")
    assert "left-off" in left.stdout and sims[0].actions() == ["boot pxe"]
    assert runner.json("machine", "show", "node-0")["next_boot"]["profile"] == "inst"

    done = runner.run(
        "machine", "reinstall", "--tag", "rack2", "--profile", "inst",
        "--concurrency", "1", "--max-failures", "1", code=1,
    )  # fmt: skip
    lines = {line.split()[1]: line for line in done.stdout.splitlines()[1:]}
    assert "done" in lines["node-0"] and "failed" in lines["node-1"]
    assert "skipped" in lines["node-2"] and sims[2].actions() == []
    assert "refused the credentials" in lines["node-1"]
    assert "1 done, 1 failed, 1 skipped; stopped after 1 failure" in done.stderr
    assert "wrong-one" not in done.stdout + done.stderr

    listed = {m["hostname"]: m for m in runner.machines()}
    assert listed["node-0"]["power"] == "on" and listed["node-1"]["bmc_error"]
    assert listed["node-1"]["next_boot"] is None and listed["node-2"]["next_boot"] is None
    table = runner.run("machine", "list").stdout
    assert "power" in table.splitlines()[0] and "bmc_error" in table.splitlines()[0]
    assert PASSWORD not in runner.export()


def test_reinstall_needs_one_selector(runner: Cli) -> None:
    assert "one way" in runner.fails("machine", "reinstall", "--profile", "inst")
