"""``bootbrain machine bmc set|show`` and ``bootbrain machine power`` against ipmi_sim."""

from __future__ import annotations

from tests.cli.conftest import Cli

from .conftest import PASSWORD, USER, IpmiSim


def test_bmc_set_show_and_power(runner: Cli, ipmi_sim: IpmiSim) -> None:
    runner.run("machine", "add", "--hostname", "node-7")
    set_out = runner.run(
        "machine", "bmc", "set", "node-7", "--kind", "ipmi", "--address", "127.0.0.1",
        "--port", str(ipmi_sim.port), "--username", USER, input=f"{PASSWORD}\n",
    ).stdout  # fmt: skip
    shown = runner.json("machine", "bmc", "show", "node-7")
    assert shown["kind"] == "ipmi" and shown["port"] == ipmi_sim.port
    assert PASSWORD not in runner.run("machine", "bmc", "show", "node-7").stdout
    assert PASSWORD not in set_out.split("Password:")[-1]

    assert "power off" in runner.run("machine", "power", "node-7", "status").stdout
    assert "power on" in runner.run("machine", "power", "node-7", "cycle").stdout
    assert ipmi_sim.power() == "on"
    runner.run("machine", "power", "node-7", "off")
    assert ipmi_sim.power() == "off"
    assert PASSWORD not in runner.export()


def test_power_without_bmc_says_so(runner: Cli) -> None:
    runner.run("machine", "add", "--hostname", "node-8")
    assert "BMC of machine node-8" in runner.fails("machine", "power", "node-8", "on")
