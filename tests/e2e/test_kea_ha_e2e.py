"""A Kea hot-standby pair loses its primary and a real iPXE guest still boots (issue 15).

Two ``kea-dhcp4``, each with its ``kea-ctrl-agent``, in two namespaces on the lab
bridge, configured by bootbrain's renderer (``render_config`` with ``kea.ha``,
``render_ctrl_agent``) with the guest's reservation. Once both are in ``hot-standby``
and a probe sees only the primary answer, the primary's ``kea-dhcp4`` is SIGKILLed and
a BIOS guest (SeaBIOS + the iPXE ROM) is powered on straight away, while the standby is
still noticing. iPXE's DHCP gets the reserved address from the standby and the
``boot.ipxe`` that bootbrain's client class names; the script chains the lab kernel,
whose ``udhcpc`` gets the same address again. What an operator would check: the
standby's state (``partner-down``) and its lease for the guest's MAC (``lease4-get`` on
its control socket, and its lease file), the boot script fetched from the reserved
address, and the guest's own report of its address.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import lab
import pytest

from bootbrain.config import Settings
from bootbrain.integrations.kea import command, render_config, render_ctrl_agent, render_json
from bootbrain.inventory import Reservation
from tests.conftest import make_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOOKS = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")
SUBNET = "10.213.0.0/24"
PRIMARY, STANDBY, PROBE = "10.213.0.2", "10.213.0.3", "10.213.0.4"
ADDRESS = "10.213.0.60"
HOSTNAME = "ha-vm"
GUEST_TIMEOUT = 90.0


def kea_settings(workdir: Path, name: str, server_ip: str) -> Settings:
    d = workdir / f"kea-{name}"
    d.mkdir(parents=True, exist_ok=True)
    return make_settings(
        f"sqlite:///{d / 'unused.db'}",
        d,
        dhcp="kea",
        kea={
            "interface": "eth0",
            "subnet": SUBNET,
            "pool_start": "10.213.0.100",
            "pool_end": "10.213.0.149",
            "server_ip": server_ip,
            "config_path": str(d / "kea-dhcp4.conf"),
            "control_socket": str(d / "kea4.sock"),
            "lease_file": str(d / "leases4.csv"),
            "hook_library_dir": str(HOOKS),
            "hook_script": None,
            "log_output": str(d / "kea.log"),
            "ha": {
                "this_server": name,
                "heartbeat_delay": 500,
                "max_response_delay": 1500,
                "max_ack_delay": 500,
                "max_unacked_clients": 0,
                "peers": [
                    {"name": "a", "url": f"http://{PRIMARY}:8001/", "role": "primary"},
                    {"name": "b", "url": f"http://{STANDBY}:8001/", "role": "standby"},
                ],
            },
        },
    )


def start_member(peer: lab.Netns, s: Settings, base_url: str, mac: str) -> Popen[bytes]:
    """This member's kea-ctrl-agent and kea-dhcp4 (returned), as bootbrain renders them."""
    k = s.kea
    reservation = Reservation(machine_id=1, mac=mac, ip=ADDRESS, hostname=HOSTNAME)
    k.config_path.write_text(render_json(render_config(s, base_url, [reservation])))
    agent = k.config_path.with_name("kea-ctrl-agent.conf")
    agent.write_text(render_json(render_ctrl_agent(s)))
    d = str(k.config_path.parent)
    env = {**os.environ, "KEA_PIDFILE_DIR": d, "KEA_LOCKFILE_DIR": d}
    with (k.config_path.parent / "kea.out").open("ab") as out:
        peer.popen(["kea-ctrl-agent", "-c", str(agent)], stdout=out, stderr=out, env=env)
        kea = peer.popen(["kea-dhcp4", "-c", str(k.config_path)], stdout=out, stderr=out, env=env)
    assert wait(k.control_socket.exists, 15), kea_output(s)
    return kea


def kea_output(s: Settings) -> str:
    d = s.kea.config_path.parent
    return "\n".join(p.read_text()[-3000:] for p in (d / "kea.out", d / "kea.log") if p.exists())


def ha_state(s: Settings) -> str:
    try:
        answer = command(s.kea.control_socket, "ha-heartbeat", timeout=2, check=False)
    except OSError:
        return "unreachable"
    return str((answer.get("arguments") or {}).get("state", answer.get("text", "")))


def wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_ipxe_guest_boots_from_the_standby_when_the_primary_dies(
    lab_kea_requirements: None, lab_net: lab.LabNetwork, lab_http: lab.StubHTTPServer
) -> None:
    missing = [f"binary {b} not found" for b in ("kea-ctrl-agent",) if not shutil.which(b)]
    missing += [f"file {f} missing" for f in (HOOKS / "libdhcp_ha.so",) if not f.exists()]
    if missing:
        pytest.skip("Kea HA unavailable for the e2e lab: " + "; ".join(missing))
    net = lab_net
    mac = lab.random_mac()
    base_url = lab_http.url("")
    cmdline = lab.kernel_cmdline(ip="ip=dhcp", done_url=lab_http.url("/done"))
    lab_http.route(
        "/boot.ipxe",
        lab.ipxe_script(
            f"kernel {lab_http.url('/' + lab.KERNEL_NAME)} {cmdline}\n"
            f"initrd {lab_http.url('/' + lab.INITRD_NAME)}\nboot\n"
        ),
    )
    lab_http.route("/done", lab.Response(b"ok\n", content_type="text/plain"))
    # Kea sends no router advertisement; without one iPXE waits for IPv6 on every boot.
    ra = net.workdir / "ra.conf"
    ra.write_text(
        f"port=0\ninterface={net.bridge}\nbind-interfaces\nenable-ra\n"
        f"dhcp-range=::,constructor:{net.bridge},ra-only\n"
    )

    a = kea_settings(net.workdir, "a", PRIMARY)
    b = kea_settings(net.workdir, "b", STANDBY)
    with lab.Dnsmasq(net, ra):
        primary = start_member(net.add_peer(f"{PRIMARY}/24", name="kea-a"), a, base_url, mac)
        start_member(net.add_peer(f"{STANDBY}/24", name="kea-b"), b, base_url, mac)
        assert wait(lambda: ha_state(a) == ha_state(b) == "hot-standby", 30), (
            ha_state(a), ha_state(b), kea_output(a), kea_output(b))  # fmt: skip
        probe = net.add_peer(f"{PROBE}/24", name="probe")
        offers = probe.call(lab.discover, mac, wait=1.0)
        assert [(o.server, o.address) for o in offers] == [(PRIMARY, ADDRESS)], offers

        os.killpg(primary.pid, signal.SIGKILL)
        primary.wait(10)
        killed = time.monotonic()
        guest = lab.Guest(net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], name="ha-vm")
        result = guest.boot(GUEST_TIMEOUT)
        took = time.monotonic() - killed
    print(f"primary killed -> guest booted from the standby: {took:.1f} s "
          f"(guest {result.duration:.1f} s)")  # fmt: skip

    assert ha_state(b) == "partner-down", (ha_state(b), kea_output(b))
    assert result.ok, result.describe() + "\n" + kea_output(b)
    # iPXE's own DHCP: the reserved address, then the script bootbrain's class names.
    assert f"{ADDRESS}/255.255.255.0" in result.text, result.describe()
    fetched = lab_http.wait_for("/boot.ipxe", timeout=0)
    assert fetched.client == ADDRESS, fetched
    # The booted kernel's udhcpc: the same address, reported by the guest itself.
    done = result.done
    assert done is not None and f"ip={ADDRESS}/24" in done.group(2), result.describe()
    # The standby holds the lease, in memory and on disk.
    lease = command(b.kea.control_socket, "lease4-get", {"ip-address": ADDRESS})
    assert lease["arguments"]["hw-address"] == mac, lease
    assert mac in b.kea.lease_file.read_text(), b.kea.lease_file.read_text()
    # Two allocations by the standby: iPXE's and the kernel's.
    log = (b.kea.config_path.parent / "kea.log").read_text()
    assert log.count(f"DHCP4_LEASE_ALLOC [hwtype=1 {mac}]") == 2, log[-3000:]
