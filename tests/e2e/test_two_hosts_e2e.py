"""Two boot hosts on one PostgreSQL, end to end (issue 15's proof).

Each boot host is a lab namespace of its own (``e2e_site.py``): bootbrain under
gunicorn with its reconciler (a child of ``bootbrain serve``), its DHCP server, its
TFTP root and its assets server. Both brains share one real PostgreSQL inventory and
one secret, and nothing else: no link joins the two namespaces.

Topology, and why: each host serves a guest segment of its own (one bridge per
namespace, the same subnet 10.213.0.0/24 on both; host A at .1, host B at .2), the
way one boot host per rack row or site is deployed. Two full DHCP servers on one
segment would race for every client, and which one a VM's firmware took would be
chance, not proof; on separate segments every answer is attributable: a DHCP probe
on a host's segment hears only that host's server, and a VM boots through the host
whose segment it is plugged into. (Redundancy on one segment is the DHCP server's
own business -- Kea's hot-standby pair, proven in
``tests/integration/test_kea_host_database.py``.)

The test, once with dnsmasq and once with Kea reading its PostgreSQL host backend:

1. A machine is added through host A's API, another through the CLI on host B. Each
   appears in *both* hosts' DHCP servers within :data:`RECONCILE_BUDGET` seconds of
   its ``created_at`` (set before the commit, so the figure is an upper bound): in
   what the server reads (dnsmasq: the host file in each host's ``dhcp-hostsdir``;
   Kea: the shared ``hosts`` table) and in what it answers (a DHCPDISCOVER on each
   segment is offered the reserved address). The measured latencies are printed.
2. A real iPXE VM boots the first machine's one-shot installer through host A. Its
   script carries a per-boot token issued by brain A; the installer fetches its
   metadata from brain A with it, and keeps its completion URL for later, as an
   installer that runs for minutes does.
3. Host A is stopped: brain, reconciler, DHCP server, assets.
4. The second machine (added on host B) boots through host B, completes, and its
   action is consumed. Meanwhile the first machine's completion, carrying A's token,
   is posted to brain B from the machine's own address on B's segment (the same
   request the installer would make to the surviving host behind a shared
   ``public_url``); brain B accepts it, and the inventory shows the machine deployed
   with its boot complete, from A's decision to B's completion.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import lab
import pytest
from e2e_site import (
    GUEST_TIMEOUT,
    LINUX_PROFILE,
    LOCAL_PROFILE,
    MANUFACTURER,
    PRODUCT,
    Site,
    assert_booted_action,
    boot_guest,
    completion_for,
    console_cmdline,
    expected_facts,
    http,
    ip_config,
    smbios_for,
    start_site,
)
from test_dnsmasq_e2e import DnsmasqSite
from test_kea_e2e import KeaSite

from bootbrain.inventory import kea_hosts
from tests.conftest import _truncate, kea_schema_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

#: Issue 15: a change reaches both hosts' DHCP servers within two seconds.
RECONCILE_BUDGET = 2.0
SUBNET = "10.213.0.0/24"
HOST_A, HOST_B = "10.213.0.1", "10.213.0.2"
#: The DHCP probe's own address on each segment.
PROBE = "10.213.0.3/24"

#: The first machine's one-shot action: an installer that reads its metadata at once
#: and reports completion later (the URL rides on the command line, unused by the
#: initrd, so the test can make the call once host A is gone).
INSTALLER_PROFILE = "lab-installer"
INSTALLER_CMDLINE = (
    "console=ttyS0 ${IPXE_BOOT_LINUX_IP_CONFIG}"
    " bootbrain.meta=${IPXE_BOOT_METADATA_URL}meta-data installer.done_url=${IPXE_BOOT_DONE_URL}"
)


@dataclass(frozen=True)
class Machine:
    tag: str
    hostname: str
    address: str
    uuid: str
    mac: str

    @property
    def serial(self) -> str:
        return f"SN-E2E-{self.tag}"

    @property
    def smbios(self) -> lab.Smbios:
        return smbios_for(self.tag, self.uuid, self.serial)


# --------------------------------------------------------------------------- the lab


@dataclass
class Host:
    """One boot host: its site and a probe namespace on its segment."""

    name: str
    site: Site
    probe: lab.Netns

    def offered(self, mac: str) -> list[lab.Offer]:
        """What the DHCP server on this host's segment offers ``mac`` (it is the only
        one there: the first offer is all there is)."""
        return self.probe.call(lab.discover, mac, wait=1.0, stop_after=1)


@pytest.fixture
def segments(lab_requirements: None, tmp_path: Path) -> Iterator[tuple[lab.LabNetwork, ...]]:
    """Host A's and host B's namespaces, each with its own bridge (segment)."""
    with (
        lab.LabNetwork(SUBNET, address=HOST_A, workdir=tmp_path / "a", tag="a") as a,
        lab.LabNetwork(SUBNET, address=HOST_B, ipv6="fd42:b00b::2/64", workdir=tmp_path / "b",
                       tag="b") as b,
    ):  # fmt: skip
        yield a, b


@pytest.fixture
def inventory(pg_schema: str) -> Iterator[tuple[str, lab.PgSocket]]:
    """The shared inventory, emptied: its URL through a unix socket the namespaces can
    reach (PostgreSQL listens on the host's loopback only), and that socket."""
    _truncate(pg_schema)
    forward = lab.PgSocket.for_url(pg_schema)
    try:
        yield forward.url(pg_schema), forward
    finally:
        forward.close()


@pytest.fixture
def kea_hosts_database(
    lab_kea_requirements: None, pg_schema: str, inventory: tuple[str, lab.PgSocket]
) -> Iterator[str]:
    """A fresh database with Kea's schema (``kea-admin db-init pgsql``, as the README
    says), on the inventory's server; its libpq URL through the same socket."""
    if shutil.which("kea-admin") is None:
        pytest.skip("Kea unavailable for the e2e lab: binary kea-admin not found")
    with kea_schema_database(pg_schema, inventory[1].url) as hosts_url:
        yield hosts_url


def start_hosts(
    segments: tuple[lab.LabNetwork, ...], make: Callable[[lab.LabNetwork, str], Site], db: str
) -> list[Host]:
    """Host A (which also creates the shared inventory's networks and profiles), then
    host B on the same database with the same secret."""
    shared = {"BOOTBRAIN_DATABASE_URL": db, "BOOTBRAIN_SECRET_KEY": secrets.token_urlsafe(32)}
    hosts: list[Host] = []
    try:
        for net, name in zip(segments, ("a", "b"), strict=True):
            site = make(net, f"host-{name}")
            if name == "a":
                start_site(site, shared)
                site.add_linux_profile(INSTALLER_PROFILE, INSTALLER_CMDLINE)
            else:
                try:
                    site.start(shared)
                except BaseException:
                    site.stop()
                    raise
            hosts.append(Host(name.upper(), site, net.add_peer(PROBE, name="probe")))
    except BaseException:
        for host in hosts:
            host.site.stop()
        raise
    return hosts


# --------------------------------------------------------------------------- helpers


def new_machine(tag: str, hostname: str, address: str, n: int) -> Machine:
    return Machine(tag, hostname, address, f"4c4c4544-0042-3610-8052-b4c04f4e2{n:03d}",
                   lab.random_mac())  # fmt: skip


def age(created_at: str) -> float:
    """Seconds since a record's ``created_at``."""
    return (datetime.now(UTC) - datetime.fromisoformat(created_at)).total_seconds()


def until_served(
    hosts: list[Host],
    machine: Machine,
    machine_id: int,
    created_at: str,
    returned: float,
    in_server: Callable[[Host, Machine, int], bool],
) -> dict[str, float]:
    """Wait until every host's DHCP server holds ``machine``'s reservation and offers
    its address; seconds from ``created_at`` to each, by ``<host> <what>``. The commit
    came between ``created_at`` and the write's return (``returned``, a
    ``time.time()``): the figure printed for the latest of them since then is a lower
    bound of the latency, the one asserted an upper bound."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 20
    while len(seen) < 2 * len(hosts) and time.monotonic() < deadline:
        for host in hosts:
            if f"{host.name} reads" not in seen and in_server(host, machine, machine_id):
                seen[f"{host.name} reads"] = age(created_at)
            if f"{host.name} offers" not in seen:
                offers = host.offered(machine.mac)
                assert {o.server for o in offers} <= {host.site.net.address}, offers
                if any(o.address == machine.address for o in offers):
                    seen[f"{host.name} offers"] = age(created_at)
        time.sleep(0.02)
    figures = ", ".join(f"{k} {v:.2f} s" for k, v in seen.items())
    since_return = max(seen.values()) - age(created_at) + (time.time() - returned)
    print(f"{machine.hostname}: created -> {figures}; "
          f"the last {since_return:.2f} s after the write returned")  # fmt: skip
    assert len(seen) == 2 * len(hosts), f"{machine.hostname} not served everywhere: {seen}"
    assert max(seen.values()) <= RECONCILE_BUDGET, (
        f"{machine.hostname}: over {RECONCILE_BUDGET} s: {figures}"
    )
    return seen


def dnsmasq_reads(host: Host, m: Machine, machine_id: int) -> bool:
    site = host.site
    assert isinstance(site, DnsmasqSite)
    path = site.hostsdir / f"machine-{machine_id}.hosts"
    try:
        return path.read_text() == f"{m.mac},{m.address},{m.hostname}\n"
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------- the scenario


def two_hosts_scenario(hosts: list[Host], in_server: Callable[[Host, Machine, int], bool]) -> None:
    a, b = hosts
    first = new_machine("TWO-A", "via-api-a", "10.213.0.50", 1)
    second = new_machine("TWO-B", "via-cli-b", "10.213.0.51", 2)

    # Before: each segment hears its own server, which knows neither machine.
    for host in hosts:
        offers = host.offered(first.mac)
        assert [o.server for o in offers] == [host.site.net.address], offers
        assert offers[0].address not in (first.address, second.address), offers

    # 1. One machine through host A's API, one through the CLI on host B.
    m1 = a.site.add_machine(
        hostname=first.hostname, uuid=first.uuid, serial=first.serial,
        manufacturer=MANUFACTURER, product=PRODUCT, nics=[{"mac": first.mac, "boot": True}],
        address=first.address,
    )  # fmt: skip
    until_served(hosts, first, m1["id"], m1["created_at"], time.time(), in_server)
    added = b.site.cli(
        "machine", "add", "--hostname", second.hostname, "--mac", second.mac,
        "--uuid", second.uuid, "--serial", second.serial,
        "--manufacturer", MANUFACTURER, "--product", PRODUCT, "--network", "lab",
        "--address", second.address, "--profile", LOCAL_PROFILE, "--state", "ready", "--json",
    )  # fmt: skip
    returned = time.time()
    m2 = json.loads(added.stdout)
    until_served(hosts, second, m2["id"], m2["created_at"], returned, in_server)

    # 2. The first machine's installer boots through host A.
    a.site.api("PUT", f"/machines/{m1['id']}/next-boot", {"profile": INSTALLER_PROFILE})
    guest = lab.Guest(a.site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=first.mac)],
                      smbios=first.smbios, name="two-first")  # fmt: skip
    result = boot_guest(a.site, guest)
    boots = a.site.wait_events("the first machine's boot", kind="boot", machine_id=m1["id"])
    for boot in boots:  # (the firmware may ask twice; the last one booted)
        assert (boot["data"]["step"], boot["data"]["profile"]) == ("action", INSTALLER_PROFILE)
        assert boot["ip"] == first.address, boot  # the reservation, from A's DHCP server
        assert boot["data"]["facts"] == expected_facts(first.smbios, first.mac, lab.Mode.BIOS)
    boot_id = boots[-1]["data"]["boot_id"]
    cmdline = console_cmdline(result)
    assert ip_config(first.address, first.hostname) in cmdline.split(), cmdline
    # Brain A wrote the script: its URLs, its token.
    done = re.search(rf"installer\.done_url=({re.escape(a.site.base_url)}/boot/([\w-]+)/done)\b",
                     cmdline)  # fmt: skip
    assert done, cmdline
    done_url, token = done.groups()
    meta_url = f"{a.site.base_url}/boot/{token}/meta-data"
    assert f"bootbrain.meta={meta_url}" in cmdline.split(), cmdline
    meta = f"instance-id: bootbrain-machine-{m1['id']}"
    assert f"BOOTBRAIN-LAB: meta {meta}" in result.text, result.describe()
    (served,) = a.site.wait_events("the metadata event", kind="metadata", machine_id=m1["id"])
    assert (served["data"]["boot_id"], served["ip"]) == (boot_id, first.address), served
    before = a.site.machine(m1["id"])
    assert before["state"] == "ready" and before["next_boot"] is not None, before

    # 3. Host A goes away, all of it.
    a.site.stop()
    with pytest.raises(OSError):
        a.site.net.call(http, "GET", f"{a.site.base_url}/healthz", None, {}, 2.0)

    # 4. The second machine boots through host B while the first one's completion,
    # with A's token, goes to brain B from the first machine's own address.
    b.site.cli("machine", "next-boot", second.hostname, "--profile", LINUX_PROFILE)
    guest = lab.Guest(b.site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=second.mac)],
                      smbios=second.smbios, name="two-second")  # fmt: skip
    as_first = b.site.net.add_peer(f"{first.address}/24", name="first")
    # What the initrd posts (see lab/README.md), the first line of meta-data included.
    report = {"ip": f"{first.address}/24", "hostname": first.hostname, "iface": "eth0",
              "meta": meta}  # fmt: skip
    started = time.monotonic()
    with guest:  # started
        url = done_url.replace(a.site.base_url, b.site.base_url, 1)
        status, body = as_first.call(
            http, "POST", url, urlencode(report).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"}, 15.0,
        )  # fmt: skip
        assert status == 200, (status, body, b.site.brain_log(40))
        second_result = guest.wait(GUEST_TIMEOUT)
    print(f"{guest.name}: BIOS boot took {second_result.duration:.1f}s "
          f"(wall {time.monotonic() - started:.1f}s)")  # fmt: skip
    assert second_result.ok, second_result.describe() + "\n" + b.site.diagnostics()
    assert_booted_action(
        b.site, machine=m2, mac=second.mac, mode=lab.Mode.BIOS, smbios=second.smbios,
        result=second_result, address=second.address, hostname=second.hostname,
        dhcp_address=second.address,
    )  # fmt: skip

    # Brain B accepted A's token: the first machine is deployed, its boot complete.
    completion = completion_for(b.site, boot_id, machine_id=m1["id"])
    assert completion["data"]["consumed_action"] == INSTALLER_PROFILE, completion
    assert completion["data"]["report"] == report, completion
    assert completion["ip"] == first.address, completion
    after = b.site.machine(m1["id"])
    assert (after["state"], after["next_boot"]) == ("deployed", None), after
    b.site.cli("boots", "ingest", str(a.site.assets_log_path))  # what A's nginx logged
    attempts = json.loads(b.site.cli("machine", "boots", str(m1["id"]), "--json").stdout)
    (attempt,) = [x for x in attempts if x["boot_id"] == boot_id]
    stages = [s["stage"] for s in attempt["stages"]]
    for stage in ("decision", "kernel", "initrd", "completion"):
        assert stage in stages, attempt
    assert (attempt["status"], attempt["not_seen"]) == ("complete", []), attempt
    # Spent: the token is not accepted twice.
    status, _ = as_first.call(
        http, "POST", url, urlencode(report).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"}, 15.0,
    )  # fmt: skip
    assert status == 403, status


# --------------------------------------------------------------------------- tests


def test_two_dnsmasq_hosts_share_one_inventory(
    segments: tuple[lab.LabNetwork, ...],
    inventory: tuple[str, lab.PgSocket],
    lab_boot_files: lab.BootFiles,
) -> None:
    def make(net: lab.LabNetwork, name: str) -> Site:
        return DnsmasqSite(net=net, workdir=net.workdir / name, boot_files=lab_boot_files)

    hosts = start_hosts(segments, make, inventory[0])
    try:
        two_hosts_scenario(hosts, dnsmasq_reads)
    finally:
        for host in hosts:
            host.site.stop()


@dataclass
class KeaHostDatabaseSite(KeaSite):
    """Kea reading its reservations from the shared PostgreSQL hosts table."""

    hosts_url: str = ""

    def dhcp_env(self) -> dict[str, str]:
        return {
            **super().dhcp_env(),
            "BOOTBRAIN_KEA__MODE": "host-database",
            "BOOTBRAIN_KEA__HOSTS_DATABASE_URL": self.hosts_url,
        }

    def configure_dhcp(self) -> None:
        super().configure_dhcp()
        document = self.running_config(from_file=True)
        assert document["hosts-database"]["type"] == "postgresql", document
        assert "reservations" not in document["subnet4"][0], document


def test_two_kea_hosts_share_one_hosts_database(
    segments: tuple[lab.LabNetwork, ...],
    inventory: tuple[str, lab.PgSocket],
    kea_hosts_database: str,
    lab_boot_files: lab.BootFiles,
) -> None:
    def make(net: lab.LabNetwork, name: str) -> Site:
        return KeaHostDatabaseSite(
            net=net, workdir=net.workdir / name, boot_files=lab_boot_files,
            hosts_url=kea_hosts_database,
        )  # fmt: skip

    def kea_reads(host: Host, m: Machine, machine_id: int) -> bool:
        # Both Keas read this one table, per packet; the offers show each answering.
        row = kea_hosts(kea_hosts_database, 1).get(m.mac)
        return row is not None and (row.ip, row.hostname) == (m.address, m.hostname)

    hosts = start_hosts(segments, make, inventory[0])
    try:
        two_hosts_scenario(hosts, kea_reads)
        for host in hosts:
            site = host.site
            assert isinstance(site, KeaHostDatabaseSite)
            # Never reloaded: the reservations came from the table.
            assert site.kea_log().count("DHCP4_DYNAMIC_RECONFIGURATION") == 0, site.kea_log()
    finally:
        for host in hosts:
            host.site.stop()
