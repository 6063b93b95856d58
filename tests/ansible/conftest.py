"""Fixtures for the Ansible role's tests: tools, the cached Debian tree, timings."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import ansible_harness as harness
import pytest

TIMINGS: list[tuple[str, float]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ansible: converges the Ansible role into a debootstrap tree (root)"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("ansible role: step timings")
        for step, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f}s  {step}")


@pytest.fixture(scope="session")
def timings() -> list[tuple[str, float]]:
    return TIMINGS


@pytest.fixture(scope="session")
def ansible_playbook() -> str:
    tool = harness.venv_tool("ansible-playbook")
    if not tool:
        pytest.skip("ansible-playbook is not installed (pip install ansible)")
    return tool


@pytest.fixture(scope="session")
def ansible_lint() -> str:
    tool = harness.venv_tool("ansible-lint")
    if not tool:
        pytest.skip("ansible-lint is not installed (pip install ansible-lint)")
    return tool


@pytest.fixture(scope="session")
def pristine(ansible_playbook: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cached Debian 12 minbase tree, built with debootstrap when missing."""
    if os.geteuid() != 0:
        pytest.skip("not root: building and entering a chroot needs root")
    if not shutil.which("debootstrap") and not harness.PRISTINE_STAMP.is_file():
        pytest.skip("debootstrap is not installed (apt-get install debootstrap)")
    if not shutil.which("chroot"):
        pytest.skip("chroot (coreutils) is not installed")
    log = tmp_path_factory.mktemp("debootstrap") / "debootstrap.log"
    try:
        tree, seconds = harness.pristine_tree(log)
    except Exception as err:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"debootstrap failed ({err}):\n{tail}")
    TIMINGS.append(("debootstrap (0 = cached tree reused)", seconds))
    return tree


@pytest.fixture(scope="session")
def wheelhouse(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("wheelhouse") / "pip.log"
    try:
        house, seconds = harness.wheelhouse(log)
    except Exception as err:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"building the dependency wheelhouse failed ({err}):\n{tail}")
    TIMINGS.append(("dependency wheelhouse (0 = cached)", seconds))
    return house


@pytest.fixture(scope="module")
def target(pristine: Path) -> Iterator[harness.Target]:
    """A fresh copy of the tree for this module, with /proc and /sys mounted."""
    started = time.monotonic()
    tgt = harness.Target.create(pristine)
    TIMINGS.append(("overlay the cached tree, mount /proc and /sys", time.monotonic() - started))
    keep = os.environ.get("BOOTBRAIN_ANSIBLE_KEEP") == "1"
    try:
        yield tgt
    finally:
        tgt.destroy(keep=keep)
