"""bootbrain + ISC Kea, end to end: real firmware, real iPXE, real kernel (issue 5, point 4).

The site (see ``e2e_site.py``: bootbrain under gunicorn, the boot assets, the TFTP
root) has Kea as its DHCP server, the way the Kea README sets it up:

* ``kea-dhcp4`` (Debian 12's Kea 2.2) on ``br0``, with the ``Dhcp4`` document
  rendered by ``bootbrain kea config --check`` (``kea-dhcp4 -t`` inside the namespace)
  and checked once more with ``kea-dhcp4 -t`` on the file Kea runs with: bootbrain's
  client classes, its control socket, and ``libdhcp_run_script.so`` pointing at the
  wrapper ``bootbrain kea hook`` installed;
* beside it, since Kea has no TFTP server, dnsmasq in TFTP-only mode: the shipped
  ``kea-hooks/dnsmasq-tftp-only.conf`` with this site's paths and interface, plus an
  IPv6 router advertisement (Kea sends none; without one this iPXE waits ~13 s for
  IPv6 on every boot);
* bootbrain running with ``BOOTBRAIN_DHCP=kea`` and ``BOOTBRAIN_KEA__*`` naming that
  configuration file and control socket, so that every machine created through the
  API below reaches the running Kea as a reservation (config-test, atomic rewrite,
  config-reload): Kea starts with no reservations at all.

Assertions come from bootbrain's records (events, machines, boot preview), cross-checked
with the guests' consoles, Kea's log and the running server's own configuration
(``config-get`` on the control socket). One site serves the module; each test uses its
own MACs, UUIDs and addresses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import lab
import pytest
from e2e_site import (
    BRIDGE,
    GATEWAY,
    Site,
    boot_until_lease,
    one_shot_boot,
    start_site,
    wait_until,
)

from bootbrain.integrations import dnsmasq as bbdnsmasq
from bootbrain.integrations import kea as bbkea

pytestmark = pytest.mark.e2e

POOL = ("10.213.0.100", "10.213.0.149")
#: The shipped TFTP-only configuration for dnsmasq beside Kea (README "TFTP beside Kea").


# --------------------------------------------------------------------------- the site


@dataclass
class KeaSite(Site):
    """A site whose DHCP server is kea-dhcp4, with dnsmasq serving TFTP only."""

    dhcp: ClassVar[str] = "kea"
    kea: subprocess.Popen[bytes] | None = None
    tftp: lab.Dnsmasq | None = None
    _kea_out: IO[bytes] | None = None

    # -- paths -------------------------------------------------------------------------

    @property
    def kea_dir(self) -> Path:
        return self.workdir / "kea"

    @property
    def kea_config(self) -> Path:
        return self.kea_dir / "kea-dhcp4.conf"

    @property
    def control_socket(self) -> Path:
        return self.kea_dir / "kea4.sock"

    @property
    def kea_log_path(self) -> Path:
        return self.kea_dir / "kea.log"

    # -- Site --------------------------------------------------------------------------

    def dhcp_env(self) -> dict[str, str]:
        return {
            "BOOTBRAIN_KEA__INTERFACE": BRIDGE,
            "BOOTBRAIN_KEA__SUBNET": str(self.net.network),
            "BOOTBRAIN_KEA__POOL_START": POOL[0],
            "BOOTBRAIN_KEA__POOL_END": POOL[1],
            "BOOTBRAIN_KEA__SERVER_IP": self.net.address,
            "BOOTBRAIN_KEA__ROUTER": GATEWAY,
            "BOOTBRAIN_KEA__DNS_SERVERS": json.dumps([GATEWAY]),
            "BOOTBRAIN_KEA__VALID_LIFETIME": "3600",
            "BOOTBRAIN_KEA__CONFIG_PATH": str(self.kea_config),
            "BOOTBRAIN_KEA__CONTROL_SOCKET": str(self.control_socket),
            "BOOTBRAIN_KEA__LEASE_FILE": str(self.kea_dir / "leases4.csv"),
            "BOOTBRAIN_KEA__LOG_OUTPUT": str(self.kea_log_path),
        }

    def configure_dhcp(self) -> None:
        self.kea_dir.mkdir(exist_ok=True)
        # `--check` runs kea-dhcp4 -t; the CLI runs inside the namespace, where br0 is.
        self.cli("kea", "config", "--check", "--output", str(self.kea_config))
        document = self.running_config(from_file=True)
        assert document["interfaces-config"]["interfaces"] == [BRIDGE], document
        # no machines yet (and no list at all with the hosts in Kea's database)
        assert document["subnet4"][0].get("reservations", []) == [], document
        run_script = [
            h for h in document["hooks-libraries"] if h["library"].endswith("run_script.so")
        ]
        assert run_script and run_script[0]["parameters"]["name"] == str(self.hook_script)
        # And checked once more as the operator would: the very file Kea will run with.
        check = self.net.run(["kea-dhcp4", "-t", str(self.kea_config)], check=False)
        assert check.returncode == 0, f"kea-dhcp4 -t: {check.stdout}{check.stderr}"

        conf = self.kea_dir / "tftp.conf"
        conf.write_text(tftp_only_config(self, self.kea_dir / "tftp.pid"))
        self.tftp = lab.Dnsmasq(self.net, conf, workdir=self.kea_dir / "tftp")

    def start_dhcp(self) -> None:
        assert self.tftp is not None
        self.tftp.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTBRAIN_")}
        # Kea's pid file and logger lock file, away from /run/kea and /var/run/kea.
        env.update({"KEA_PIDFILE_DIR": str(self.kea_dir), "KEA_LOCKFILE_DIR": str(self.kea_dir)})
        self._kea_out = open(self.kea_dir / "kea.out", "ab")  # noqa: SIM115 - closed in stop_dhcp()
        self.kea = self.net.popen(
            ["kea-dhcp4", "-c", str(self.kea_config)],
            env=env,
            stdout=self._kea_out,
            stderr=subprocess.STDOUT,
        )
        wait_until("kea-dhcp4's control socket", self._kea_answers, timeout=30)

    def _kea_answers(self) -> bool:
        if self.kea is not None and self.kea.poll() is not None:
            pytest.fail(f"kea-dhcp4 exited with {self.kea.returncode}:\n{self.dhcp_log()}")
        try:
            bbkea.command(self.control_socket, "config-get", timeout=2)
        except bbkea.KeaError:
            return False
        return True

    def stop_dhcp(self) -> None:
        if self.kea is not None:
            lab.stop_process(self.kea, timeout=10)
            self.net.forget(self.kea)
        if self._kea_out is not None:
            self._kea_out.close()
            self._kea_out = None
        if self.tftp is not None:
            self.tftp.stop()

    def dhcp_log(self) -> str:
        paths = (self.kea_dir / "kea.out", self.kea_log_path)
        return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())

    # -- Kea -----------------------------------------------------------------------------

    def running_config(self, *, from_file: bool = False) -> dict[str, Any]:
        """The ``Dhcp4`` map the running server uses (``config-get``), or the file's."""
        if from_file:
            document = json.loads(self.kea_config.read_text())
        else:
            document = bbkea.command(self.control_socket, "config-get")["arguments"]
        dhcp4: dict[str, Any] = document["Dhcp4"]
        return dhcp4

    def reservations(self, *, from_file: bool = False) -> list[dict[str, Any]]:
        hosts: list[dict[str, Any]] = self.running_config(from_file=from_file)["subnet4"][0].get(
            "reservations", []
        )
        return [
            {k: h[k] for k in ("hw-address", "ip-address", "hostname") if k in h} for h in hosts
        ]

    def kea_log(self) -> str:
        try:
            return self.kea_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tftp_log(self) -> str:
        return self.tftp.log_text() if self.tftp else ""


def tftp_only_config(site: KeaSite, pid_file: Path) -> str:
    """What ``bootbrain kea tftp-config`` renders (``kea-hooks/dnsmasq-tftp-only.conf``),
    with this site's paths and interface."""
    text = bbdnsmasq.render_tftp_config(BRIDGE, site.tftp_root, pid_file)
    # DHCP stays off: the only range is the router advertisement's.
    assert re.search(r"^port=0$", text, re.M) and re.search(r"^enable-ra$", text, re.M)
    return text


@pytest.fixture(scope="module")
def site(
    lab_kea_requirements: None,
    lab_boot_files: lab.BootFiles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KeaSite]:
    with lab.LabNetwork(workdir=tmp_path_factory.mktemp("kea-e2e")) as net:
        s = start_site(
            KeaSite(net=net, workdir=net.workdir / "site-kea", boot_files=lab_boot_files)
        )
        try:
            yield s
        finally:
            s.stop()


# --------------------------------------------------------------------------- helpers


def lease_allocated(site: KeaSite, mac: str, address: str) -> bool:
    """Kea logged that it gave ``address`` to ``mac`` (DHCP4_LEASE_ALLOC, INFO)."""
    pattern = rf"DHCP4_LEASE_ALLOC \[hwtype=1 {re.escape(mac)}\].*lease {re.escape(address)} "
    return re.search(pattern, site.kea_log()) is not None


def assert_reserved_and_allocated(site: KeaSite, mac: str, address: str, hostname: str) -> None:
    """bootbrain's reservation is in Kea's file and in the running server, and Kea
    allocated exactly that address to the machine."""
    entry = {"hw-address": mac, "ip-address": address, "hostname": hostname}
    assert entry in site.reservations(from_file=True), site.reservations(from_file=True)
    assert entry in site.reservations(), site.reservations()
    assert lease_allocated(site, mac, address), site.kea_log()[-3000:]


def one_shot_scenario(site: KeaSite, **scenario: Any) -> None:
    """:func:`one_shot_boot` (same keywords), then Kea's reservation and lease."""
    shot = one_shot_boot(site, **scenario)
    assert_reserved_and_allocated(site, shot.mac, scenario["address"], scenario["hostname"])


class Udhcpc:
    """busybox udhcpc in a peer namespace on the lab bridge: the cheapest DHCP client."""

    SCRIPT = '#!/bin/sh\n[ "$1" = bound ] && env > "$UDHCPC_OUT"\nexit 0\n'

    def __init__(self, site: KeaSite, mac: str) -> None:
        self.peer = site.net.add_peer("10.213.0.3/24", name="udhcpc")
        self.peer.ip("addr", "flush", "dev", "eth0")
        self.peer.ip("link", "set", "eth0", "address", mac)
        self.dir = site.workdir / "udhcpc"
        self.dir.mkdir(exist_ok=True)
        self.script = self.dir / "script.sh"
        self.script.write_text(self.SCRIPT)
        self.script.chmod(0o755)
        self.runs = 0

    def lease(self) -> dict[str, str]:
        """One DISCOVER/REQUEST exchange (``-q``: quit once bound, without a release);
        what the server handed out."""
        self.runs += 1
        out = self.dir / f"lease-{self.runs}.env"
        argv = [str(lab.assets.BUSYBOX), "udhcpc", "-i", "eth0", "-f", "-q", "-n",
                "-t", "5", "-T", "1", "-s", str(self.script)]  # fmt: skip
        proc = self.peer.run(argv, env={"PATH": os.environ["PATH"], "UDHCPC_OUT": str(out)},
                             check=False, timeout=30)  # fmt: skip
        assert proc.returncode == 0 and out.exists(), f"udhcpc: {proc.stdout}{proc.stderr}"
        return dict(line.partition("=")[::2] for line in out.read_text().splitlines())


# --------------------------------------------------------------------------- tests


def test_bios_boots_through_kea(site: KeaSite) -> None:
    """SeaBIOS + iPXE ROM: Kea's bootbrain-ipxe class sends iPXE to /boot.ipxe; the
    machine gets its reserved address, the action's kernel with bootbrain's static ip=,
    and phones home."""
    one_shot_scenario(
        site,
        tag="KEA-BIOS",
        mode=lab.Mode.BIOS,
        nic_model="e1000",
        romfile=None,
        uuid="4c4c4544-0042-3610-8052-b4c04f4e1001",
        address="10.213.0.50",
        hostname="kea-bios",
    )


def test_uefi_boots_through_kea_and_tftp(site: KeaSite) -> None:
    """OVMF's own PXE client: Kea's bootbrain-pxe-efi64 class names snponly.efi on the
    TFTP server beside it, then the same chain as BIOS."""
    address = "10.213.0.51"
    one_shot_scenario(
        site,
        tag="KEA-UEFI",
        mode=lab.Mode.UEFI_NATIVE,
        nic_model="virtio",
        romfile="",
        uuid="4c4c4544-0042-3610-8052-b4c04f4e1002",
        address=address,
        hostname="kea-uefi",
    )
    log = site.tftp_log()
    assert re.search(rf"sent \S+/snponly\.efi to {re.escape(address)}\b", log), log


def test_lease_events_from_keas_hook(site: KeaSite) -> None:
    """Kea's run_script hook (the wrapper ``bootbrain kea hook`` installed) reports the
    guest's lease; bootbrain records it against the machine."""
    address, hostname = "10.213.0.52", "kea-lease"
    mac, mid, leases = boot_until_lease(site, address=address, hostname=hostname, name="kea-lease")
    assert all(e["data"]["source"] == "kea" for e in leases), leases
    committed = [e for e in leases if e["data"]["action"] == "commit"]
    assert committed, leases
    event = committed[0]
    assert event["ip"] == address, event
    assert event["mac"] == mac, event
    assert event["machine_id"] == mid, event
    assert event["data"].get("hostname") == hostname, event  # the reservation's, via Kea
    # Kea's hook environment carries no DHCP options: no user class, no architecture.
    assert "user_class" not in event["data"] and "arch" not in event["data"], event
    assert site.machine(mid)["last_seen_ip"] == address
    assert lease_allocated(site, mac, address), site.kea_log()[-3000:]


def test_reservation_from_the_api_is_served_without_restart(site: KeaSite) -> None:
    """A machine created through the API with a static address: the running Kea serves
    it to the next client at once (same kea-dhcp4 process, no restart), and stops when
    the machine is deleted."""
    assert site.kea is not None
    pid = site.kea.pid
    mac = lab.random_mac()
    address, hostname = "10.213.0.70", "kea-resv"
    client = Udhcpc(site, mac)

    before = client.lease()
    assert POOL[0] <= before["ip"] <= POOL[1], before  # a dynamic lease, same-length octets
    reloads = site.kea_log().count("DHCP4_DYNAMIC_RECONFIGURATION")

    machine = site.add_machine(
        hostname=hostname, nics=[{"mac": mac, "boot": True}], address=address
    )
    entry = {"hw-address": mac, "ip-address": address, "hostname": hostname}
    # in the running server, once the host's reconciler has applied the change
    wait_until("the reservation in Kea", lambda: entry in site.reservations(), timeout=10)
    assert entry in site.reservations(from_file=True)
    after = client.lease()
    assert after["ip"] == address, after
    assert after.get("hostname") == hostname, after
    assert after.get("router") == GATEWAY, after
    # Kea's hook reported that lease too, and bootbrain tied it to the new machine.
    committed = wait_until(
        "the reserved lease's event",
        lambda: [
            e
            for e in site.events(kind="lease", mac=mac)
            if e["ip"] == address and e["data"]["action"] == "commit"
        ],
        timeout=20,
    )
    assert committed[0]["machine_id"] == machine["id"], committed

    site.api("DELETE", f"/machines/{machine['id']}", expect=204)
    wait_until("the reservation gone", lambda: entry not in site.reservations(), timeout=10)
    last = client.lease()
    assert POOL[0] <= last["ip"] <= POOL[1], last

    assert site.kea.poll() is None and site.kea.pid == pid, "kea-dhcp4 was restarted"
    log = site.kea_log()
    assert log.count("DHCP4_STARTED") == 1, log[-3000:]
    assert log.count("DHCP4_DYNAMIC_RECONFIGURATION") >= reloads + 2, log[-3000:]
    assert "could not update kea reservation" not in site.brain_log(500)
