"""Fixtures for the end-to-end tests (real QEMU guests, real firmware).

The lab package lives beside this file and is imported as ``lab``: this
conftest puts ``tests/e2e`` on ``sys.path`` so that works however pytest's
rootdir and import mode are set up.

Fixtures:

* ``lab_requirements`` (session) -- skips (naming what is missing) unless root,
  ``/dev/net/tun`` and every binary/firmware file are there; removes
  ``bbtest-*`` namespaces left over by crashed runs.
* ``lab_kea_requirements`` (session) -- the same, plus ``kea-dhcp4`` and the Kea
  hooks bootbrain's configuration loads (for the Kea tests only).
* ``lab_boot_files`` (session) -- the cached Debian kernel + lab initrd.
* ``lab_net`` -- a fresh :class:`lab.LabNetwork` (namespace, bridge
  ``br0`` = 10.213.0.1/24), torn down after the test.
* ``lab_http`` -- a started :class:`lab.StubHTTPServer` on the bridge address
  serving ``/vmlinuz`` and ``/initrd.gz``; it records every request.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import lab  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test booting real QEMU guests in network namespaces "
        "(needs root, /dev/net/tun, qemu, dnsmasq, ipxe, ovmf)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(_HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def lab_requirements() -> None:
    reasons = lab.missing()
    if reasons:
        pytest.skip("e2e lab unavailable: " + "; ".join(reasons))
    lab.cleanup_stale()


@pytest.fixture(scope="session")
def lab_kea_requirements(lab_requirements: None) -> None:
    reasons = lab.missing_kea()
    if reasons:
        pytest.skip("Kea unavailable for the e2e lab: " + "; ".join(reasons))


@pytest.fixture(scope="session")
def lab_boot_files(lab_requirements: None) -> lab.BootFiles:
    return lab.boot_files()


@pytest.fixture
def lab_net(lab_requirements: None, tmp_path: Path) -> Iterator[lab.LabNetwork]:
    with lab.LabNetwork(workdir=tmp_path / "lab") as net:
        yield net


@pytest.fixture
def lab_http(
    lab_net: lab.LabNetwork, lab_boot_files: lab.BootFiles
) -> Iterator[lab.StubHTTPServer]:
    server = lab.StubHTTPServer(lab_net, lab_net.address)
    server.route("/" + lab.KERNEL_NAME, lab_boot_files.vmlinuz)
    server.route("/" + lab.INITRD_NAME, lab_boot_files.initrd)
    with server:
        yield server
