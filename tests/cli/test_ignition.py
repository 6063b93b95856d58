"""The README's way to load the Flatcar and Fedora CoreOS profiles:
``bootbrain apply docs/examples/flatcar.yaml``, then once more with no changes, and the
profile shows its Ignition config on the host."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli.conftest import Cli

EXAMPLE = Path(__file__).resolve().parents[2] / "docs/examples/flatcar.yaml"


def test_the_example_file_applies_and_round_trips(runner: Cli) -> None:
    out = runner.run("apply", str(EXAMPLE)).stdout
    assert "+ profile flatcar\n" in out and "+ profile fedora-coreos\n" in out
    assert out.endswith("applied: 2 created, 0 changed, 0 deleted\n")
    assert "no changes" in runner.run("apply", str(EXAMPLE)).stdout
    wanted = {p["name"]: p["ignition"] for p in yaml.safe_load(EXAMPLE.read_text())["profiles"]}
    exported = yaml.safe_load(runner.export())["profiles"]
    assert {p["name"]: p["ignition"] for p in exported} == wanted
