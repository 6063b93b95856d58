"""The rendered Kea configuration and live reservations against the real kea-dhcp4.

kea-dhcp4 runs inside a network namespace with the document bootbrain renders
(client classes, option 175/176, run_script with our lease hook, the control socket);
busybox udhcpc in a second namespace plays the clients. Proven here: ``kea-dhcp4 -t``
accepts the document, each kind of client gets its boot file, a reservation added by
:func:`sync_reservations` is served to the next client without a restart (Kea 2.2:
config-test, atomic rewrite, config-reload), a removed one stops being served, a bad
configuration file is refused while Kea keeps serving, and the lease hook receives
Kea's events.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bootbrain.config import Settings
from bootbrain.integrations import leasehook, render_hook_conf, render_hook_wrapper
from bootbrain.integrations.kea import (
    KeaCommandError,
    has_host_commands,
    reload,
    render_config,
    render_json,
    sync_reservations,
    validate_config,
)
from bootbrain.integrations.reservations import Reservation

from .conftest import SERVER_IF, SERVER_IP, DhcpLab

BASE = f"http://{SERVER_IP}:8080"
IPXE = ("-x", "0x4d:69505845")
MAC_A = "52:54:00:cc:00:0a"
MAC_B = "52:54:00:cc:00:0b"
HOOKS = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")


def settings_for(tmp: Path) -> Settings:
    return Settings.model_validate({
        "data_dir": str(tmp),
        "kea": {
            "interface": SERVER_IF,
            "subnet": "10.231.0.0/24",
            "pool_start": "10.231.0.100",
            "pool_end": "10.231.0.150",
            "server_ip": SERVER_IP,
            "router": SERVER_IP,
            "config_path": str(tmp / "kea-dhcp4.conf"),
            "control_socket": str(tmp / "kea4.sock"),
            "lease_file": str(tmp / "leases4.csv"),
            "hook_library_dir": str(HOOKS),
            "hook_script": str(tmp / "kea-hook"),
            "log_output": str(tmp / "kea.log"),
        },
    })


def install_hook(tmp: Path) -> Path:
    """The wrapper Kea runs, and a hook config whose bootbrain never answers."""
    spool = tmp / "spool"
    conf = tmp / "leasehook.conf"
    conf.write_text(render_hook_conf(f"http://{SERVER_IP}:9", None, spool, backoff=0))
    hook = tmp / "kea-hook"
    hook.write_text(render_hook_wrapper("kea", python=sys.executable, config=conf))
    hook.chmod(0o755)
    return spool


def require_kea() -> None:
    DhcpLab.require("kea-dhcp4")
    if not (HOOKS / "libdhcp_run_script.so").exists():
        pytest.skip(f"Kea's run_script hook is not in {HOOKS}")


class Kea:
    def __init__(self, lab: DhcpLab, settings: Settings) -> None:
        self.lab = lab
        self.settings = settings
        self.tmp = lab.workdir

    def start(self, reservations: list[Reservation] | None = None) -> None:
        k = self.settings.kea
        k.config_path.write_text(render_json(render_config(self.settings, BASE,
                                                           reservations or [])))
        env = {**os.environ, "KEA_PIDFILE_DIR": str(self.tmp), "KEA_LOCKFILE_DIR": str(self.tmp)}
        self.proc = self.lab.start(["kea-dhcp4", "-c", str(k.config_path)],
                                   self.tmp / "kea.out", env=env)
        assert DhcpLab.wait_for(lambda: k.control_socket.exists(), timeout=10), self.output()

    def output(self) -> str:
        parts = [self.tmp / "kea.out", self.tmp / "kea.log"]
        return "\n".join(p.read_text()[-3000:] for p in parts if p.exists())


@pytest.fixture
def kea(dhcp_lab: DhcpLab) -> Kea:
    require_kea()
    install_hook(dhcp_lab.workdir)
    k = Kea(dhcp_lab, settings_for(dhcp_lab.workdir))
    k.start()
    return k


def test_kea_dhcp4_t_accepts_the_document(dhcp_lab: DhcpLab) -> None:
    require_kea()
    tmp = dhcp_lab.workdir
    install_hook(tmp)
    settings = settings_for(tmp)
    reservations = [
        Reservation(1, MAC_A, "10.231.0.50", "node-a"),
        Reservation(2, MAC_B, "10.231.0.120", None),  # inside the pool: allowed
        Reservation(3, "52:54:00:cc:00:0c", "10.99.0.5", None),  # another subnet: left out
    ]
    document = render_config(settings, BASE, reservations)
    hosts = document["Dhcp4"]["subnet4"][0]["reservations"]
    assert [h["hw-address"] for h in hosts] == [MAC_A, MAC_B]
    validate_config(document, netns=dhcp_lab.server_ns)


def test_boot_file_by_architecture_and_ipxe(kea: Kea) -> None:
    lab = kea.lab
    bios = lab.dhcp(MAC_A, "-x", "0x5d:0000")
    assert bios is not None
    assert bios["boot_file"] == "undionly.kpxe" and bios["siaddr"] == SERVER_IP
    efi = lab.dhcp(MAC_A, "-x", "0x5d:0009")
    assert efi is not None and efi["boot_file"] == "snponly.efi"
    ipxe = lab.dhcp(MAC_A, "-x", "0x5d:0007", *IPXE, "-O", "175")
    assert ipxe is not None
    assert ipxe["boot_file"] == f"{BASE}/boot.ipxe"
    assert ipxe["opt175"] == "b00101"  # sub-option 176 "no-pxedhcp" = 1
    http = lab.dhcp(MAC_A, "-x", "0x5d:0010")
    assert http is not None and http["boot_file"] == f"{BASE}/tftp/snponly.efi"
    plain = lab.dhcp(MAC_A)  # no option 93: an ordinary DHCP client, no boot file
    assert plain is not None and not plain.get("boot_file")


def test_reservation_added_by_sync_is_served_without_restart(kea: Kea) -> None:
    lab, settings = kea.lab, kea.settings
    pid = kea.proc.pid
    before = lab.dhcp(MAC_B, release=True)
    assert before is not None and before["ip"] != "10.231.0.50"
    assert not has_host_commands(settings)  # Debian's Kea 2.2

    result = sync_reservations(settings, BASE, [Reservation(9, MAC_B, "10.231.0.50", "node-b")])
    assert result.method == "config-reload" and result.changed
    assert result.seconds < 2, result.seconds
    on_disk = json.loads(settings.kea.config_path.read_text())
    assert on_disk["Dhcp4"]["subnet4"][0]["reservations"] == [
        {"hw-address": MAC_B, "ip-address": "10.231.0.50", "hostname": "node-b"}
    ]
    after = lab.dhcp(MAC_B, release=True)
    assert after is not None and after["ip"] == "10.231.0.50"
    assert after.get("hostname") == "node-b"

    same = sync_reservations(settings, BASE, [Reservation(9, MAC_B, "10.231.0.50", "node-b")])
    assert not same.changed

    gone = sync_reservations(settings, BASE, [])
    assert gone.changed
    last = lab.dhcp(MAC_B)
    assert last is not None and last["ip"] != "10.231.0.50"
    assert kea.proc.poll() is None and kea.proc.pid == pid


def test_bad_file_is_refused_and_kea_keeps_serving(kea: Kea) -> None:
    settings = kea.settings
    path = settings.kea.config_path
    good = path.read_text()
    broken = json.loads(good)
    broken["Dhcp4"]["subnet4"][0]["pools"] = [{"pool": "10.99.0.1 - 10.99.0.9"}]
    path.write_text(json.dumps(broken))
    with pytest.raises(KeaCommandError):
        reload(settings)
    got = kea.lab.dhcp(MAC_A)
    assert got is not None and got["ip"].startswith("10.231.0.")
    path.write_text(good)
    assert reload(settings) == "config-reload"


def test_lease_events_reach_the_hook(kea: Kea) -> None:
    spool = kea.tmp / "spool"
    assert kea.lab.dhcp(MAC_A, release=True)

    def events() -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in leasehook.spooled(spool)]

    # run_script is asynchronous ("sync": false): wait for both to land.
    got = DhcpLab.wait_for(lambda: {e["action"] for e in events()} >= {"commit", "release"}
                           and events(), timeout=10)
    assert got, kea.output()
    commit = next(e for e in got if e["action"] == "commit")
    assert commit["source"] == "kea" and commit["mac"] == MAC_A
    assert commit["ip"].startswith("10.231.0.")
    assert commit["arch"] is None and commit["user_class"] is None  # Kea passes no options
    release = next(e for e in got if e["action"] == "release")
    assert release["ip"] == commit["ip"]
