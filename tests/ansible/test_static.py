"""ansible-lint (production profile, nothing skipped) and syntax-check of the playbook."""

from __future__ import annotations

import os
import re
import subprocess

import ansible_harness as harness
import pytest

pytestmark = pytest.mark.ansible


def _env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_NOCOLOR="1", NO_COLOR="1", ANSIBLE_FORCE_COLOR="0")


def test_ansible_lint_production_profile(ansible_lint: str) -> None:
    proc = subprocess.run(
        [ansible_lint, "--profile", "production", "--strict", "--offline", "--nocolor"],
        cwd=harness.ANSIBLE_DIR,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output


def test_nothing_is_excused_from_lint() -> None:
    """No lint configuration that skips rules, and no inline noqa."""
    for config in [".ansible-lint", ".ansible-lint.yml", ".config/ansible-lint.yml"]:
        for base in (harness.ANSIBLE_DIR, harness.REPO):
            path = base / config
            if path.is_file():
                text = path.read_text()
                assert not re.search(r"^\s*(skip_list|warn_list|exclude_paths)\s*:", text, re.M), (
                    path
                )
    for path in harness.ANSIBLE_DIR.rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".j2"}:
            assert "noqa" not in path.read_text(), f"{path} silences a lint rule"


def test_playbook_syntax(ansible_playbook: str) -> None:
    proc = subprocess.run(
        [ansible_playbook, "--syntax-check", "-i", "inventory.example.yml", "site.yml"],
        cwd=harness.ANSIBLE_DIR,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_public_variable_is_specified_and_documented() -> None:
    """defaults/main.yml, meta/argument_specs.yml and the README list the same variables."""
    role = harness.ANSIBLE_DIR / "roles/bootbrain"
    defaults = set(re.findall(r"^(bootbrain_\w+):", (role / "defaults/main.yml").read_text(), re.M))
    specs = set(
        re.findall(r"^      (bootbrain_\w+):", (role / "meta/argument_specs.yml").read_text(), re.M)
    )
    readme = (role / "README.md").read_text()
    documented = set(re.findall(r"^\| `(bootbrain_\w+)`", readme, re.M))
    assert defaults, "no defaults found"
    assert defaults == specs, f"defaults vs argument_specs: {sorted(defaults ^ specs)}"
    assert defaults == documented, f"defaults vs README table: {sorted(defaults ^ documented)}"
    # Everything else the role sets for itself is private.
    for path in role.rglob("*.yml"):
        for name in re.findall(r"^\s*(\w+):\s", path.read_text(), re.M):
            if name.startswith("bootbrain_") and path.name not in {
                "main.yml",
                "argument_specs.yml",
            }:
                pytest.fail(f"{path} defines public-looking variable {name}")
