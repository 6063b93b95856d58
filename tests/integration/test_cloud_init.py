"""The booted OS's documents checked by cloud-init's own tools (Debian's ``cloud-init``
package, installed by .ci/system-packages.sh; nothing is configured on this machine):

* ``cloud-init schema --config-file`` accepts the rendered user-data and vendor-data;
* ``cloud-init devel net-convert`` turns network-config into networkd and ENI files
  carrying the static address, gateway and DNS of the machine's assignment;
* cloud-init's NoCloud datasource code itself, pointed at a live bootbrain with the
  kernel argument a profile's cmdline gives it, reads meta-data, user-data and
  vendor-data through the per-boot token.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from werkzeug.serving import make_server

from bootbrain.app import create_app
from bootbrain.db import Database
from bootbrain.models import Base
from tests.api.test_boot import ipxe_query
from tests.api.test_metadata import MAC_A, MAC_B, SECRET, USER_DATA, UUID_A
from tests.conftest import Api, add_rack1, make_settings, make_token
from tests.unit.test_documents import ED, ED2

CLOUD_INIT = shutil.which("cloud-init")
SYSTEM_PYTHON = "/usr/bin/python3"
needs_cloud_init = pytest.mark.skipif(
    CLOUD_INIT is None,
    reason="cloud-init is not installed (Debian package cloud-init; .ci/system-packages.sh)",
)


def _has_cloudinit_module() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import cloudinit.sources.DataSourceNoCloud"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


class Lab:
    """bootbrain on a real socket, with two machines (one static, one DHCP)."""

    def __init__(self, app: Flask, base: str) -> None:
        self.app = app
        self.base = base
        self.client = app.test_client()
        self.api = Api(self.client, make_token(app, "admin", "write"))

    def boot(self, **kw: Any) -> str:
        """Boot through the real socket; the metadata URL from the script."""
        import urllib.request

        with urllib.request.urlopen(self.base + ipxe_query(**kw), timeout=10) as resp:
            script = resp.read().decode()
        self.app.extensions["bootbrain"].events.flush()
        m = re.search(r"^set IPXE_BOOT_METADATA_URL (\S+)$", script, re.M)
        assert m, script
        return m.group(1)

    def get(self, url: str) -> str:
        resp = self.client.get(url.removeprefix(self.base))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_data(as_text=True)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    url = f"sqlite:///{tmp_path / 'ci.db'}"
    db = Database(url)
    Base.metadata.create_all(db.engine)
    db.dispose()
    app = create_app(make_settings(url, tmp_path, public_url=""))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    lab = Lab(app, f"http://127.0.0.1:{server.server_port}")
    api = lab.api
    add_rack1(api)
    api.post(
        "/profiles",
        {
            "name": "installer",
            "kind": "linux",
            "kernel": "{{ assets }}/vmlinuz",
            "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} ds=nocloud-net;s=${IPXE_BOOT_METADATA_URL}",
            "ssh_keys": [ED],
            "metadata": {"ntp": ["ntp1.lab.example"]},
            "user_data": USER_DATA,
            "vendor_data": "#cloud-config\npackage_update: true\nntp:\n  enabled: true\n",
        },
        expect=201,
    )
    api.post(
        "/machines",
        {
            "hostname": "node-var",
            "uuid": UUID_A,
            "nics": [{"mac": MAC_A}],
            "network": "rack1",
            "address": "10.200.0.50",
            "profile": "installer",
            "ssh_keys": [ED2],
        },
        expect=201,
    )
    api.post(
        "/machines",
        {"hostname": "node-b", "nics": [{"mac": MAC_B}], "profile": "installer"},
        expect=201,
    )
    yield lab
    server.shutdown()
    thread.join(timeout=10)
    app.extensions["bootbrain"].events.close()
    app.extensions["bootbrain"].db.dispose()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@needs_cloud_init
def test_cloud_init_schema_accepts_the_rendered_documents(lab: Lab, tmp_path: Path) -> None:
    url = lab.boot()
    for name in ("user-data", "vendor-data"):
        path = tmp_path / name
        path.write_text(lab.get(url + name))
        out = _run("cloud-init", "schema", "--config-file", str(path))
        assert out.returncode == 0, (name, out.stdout, out.stderr)
        assert "Valid cloud-config" in out.stdout
    assert SECRET in (tmp_path / "user-data").read_text()
    # and the tool does check: a document against its schema fails
    bad = tmp_path / "bad"
    bad.write_text("#cloud-config\nntp:\n  servers: 5\n")
    assert _run("cloud-init", "schema", "--config-file", str(bad)).returncode != 0


def _net_convert(network_config: Path, kind: str, out: Path) -> dict[str, str]:
    result = _run(
        "cloud-init",
        "devel",
        "net-convert",
        "--network-data",
        str(network_config),
        "--kind",
        "yaml",
        "--output-kind",
        kind,
        "--directory",
        str(out),
        "--distro",
        "debian",
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


@needs_cloud_init
def test_net_convert_renders_the_static_assignment(lab: Lab, tmp_path: Path) -> None:
    url = lab.boot()
    source = tmp_path / "network-config"
    source.write_text(lab.get(url + "network-config"))
    ip_config = json.loads(lab.get(url + "metadata.json"))["network"]["ip_config"]
    assert (
        ip_config
        == "ip=10.200.0.50::10.200.0.1:255.255.255.0:node-var:eth0:none:10.200.0.2:10.200.0.3"
    )

    networkd = _net_convert(source, "networkd", tmp_path / "networkd")
    unit = networkd["etc/systemd/network/10-cloud-init-eth0.network"]
    assert {
        "Name=eth0",
        f"MACAddress={MAC_A}",
        "Address=10.200.0.50/24",
        "Gateway=10.200.0.1",
        "DNS=10.200.0.2 10.200.0.3",
        "Domains=lab.example",
        "DHCP=no",
    } <= _lines(unit)

    eni = _net_convert(source, "eni", tmp_path / "eni")
    interfaces = _lines(eni["etc/network/interfaces.d/50-cloud-init"])
    assert {
        "auto eth0",
        "iface eth0 inet static",
        "address 10.200.0.50/24",
        "dns-nameservers 10.200.0.2 10.200.0.3",
        "dns-search lab.example",
        "post-up route add default gw 10.200.0.1 || true",
    } <= interfaces
    rules = eni["etc/udev/rules.d/70-persistent-net.rules"]
    assert f'ATTR{{address}}=="{MAC_A}", NAME="eth0"' in rules


@needs_cloud_init
def test_net_convert_renders_dhcp_without_a_static_assignment(lab: Lab, tmp_path: Path) -> None:
    url = lab.boot(uuid="", mac=MAC_B)
    source = tmp_path / "network-config"
    source.write_text(lab.get(url + "network-config"))
    unit = _net_convert(source, "networkd", tmp_path / "out")[
        "etc/systemd/network/10-cloud-init-eth0.network"
    ]
    assert {"Name=eth0", f"MACAddress={MAC_B}", "DHCP=ipv4"} <= _lines(unit)


_DATASOURCE = r"""
import json, sys, tempfile
from cloudinit import dmi, helpers, version
from cloudinit.sources import DataSourceNoCloud

dmi.read_dmi_data = lambda key: None  # this host's SMBIOS serial is not part of the test
tmp = tempfile.mkdtemp()
paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
ds = DataSourceNoCloud.DataSourceNoCloudNet(
    {"datasource": {"NoCloud": {"fs_label": None}}}, None, paths
)
found = ds._get_data()
raw = lambda v: v.decode() if isinstance(v, bytes) else v
print(json.dumps({
    "version": version.version_string(),
    "found": found,
    "dsmode": ds.dsmode,
    "metadata": ds.metadata,
    "userdata": raw(ds.userdata_raw),
    "vendordata": raw(ds.vendordata_raw),
}))
"""


def _nocloud(cmdline: str) -> dict[str, Any]:
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", _DATASOURCE],
        capture_output=True,
        text=True,
        timeout=120,
        env={"DEBUG_PROC_CMDLINE": cmdline, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@needs_cloud_init
def test_cloud_inits_nocloud_datasource_reads_the_documents(lab: Lab) -> None:
    if not _has_cloudinit_module():
        pytest.skip(f"{SYSTEM_PYTHON} cannot import cloud-init's modules")
    url = lab.boot()
    got = _nocloud(f"console=ttyS0 ds=nocloud-net;s={url} net.ifnames=0")
    assert got["found"] is True
    assert got["dsmode"] == "net"
    assert got["metadata"]["instance-id"].startswith("bootbrain-machine-")
    assert got["metadata"]["local-hostname"] == "node-var.lab.example"
    assert got["metadata"]["public-keys"] == [ED, ED2]
    assert yaml.safe_load(got["userdata"])["hostname"] == "node-var"
    assert yaml.safe_load(got["vendordata"])["package_update"] is True

    # Before cloud-init 24.1 "ds=nocloud;s=http://…" reads the seed too but in local
    # mode, so the network stage skips it: profiles should say ds=nocloud-net.
    plain = _nocloud(f"ds=nocloud;s={url}")
    major, minor = (int(x) for x in plain["version"].split(".")[:2])
    if (major, minor) < (24, 1):
        assert plain["dsmode"] == "local"
    else:
        assert plain["dsmode"] == "net"
