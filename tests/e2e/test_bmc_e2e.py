"""Reinstall through a real BMC protocol driving a real VM (issue 17, the proof).

Two emulated BMCs sit in the lab namespace beside bootbrain and its dnsmasq, each
controlling one QEMU guest (``lab/bmc.py``; BIOS over both, UEFI over Redfish):
OpenIPMI's ``ipmi_sim`` with a chassis-control program, and sushy-tools' Redfish
emulator with a systems driver.
bootbrain reaches them only through its BMC records, with pyghmi and sushy.

The story, per protocol: an installed machine (assigned profile: local boot) is powered
on through bootbrain and gets the local-boot answer; the operator reinstalls it
(``POST /machines/{id}/reinstall``); the BMC stores network-boot-once and power-cycles
the guest, which network-boots the install profile and phones home from its initrd;
bootbrain records the completion, which consumes the one-shot; the next power-on, again
through bootbrain, gets the local-boot answer. The time from the reinstall command to the completion
recorded is printed (``pytest -s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import lab
import pytest
from e2e_site import (
    LINUX_PROFILE,
    LOCAL_PROFILE,
    MANUFACTURER,
    PRODUCT,
    ip_config,
    smbios_for,
    wait_until,
)
from lab.bmc import EmulatedBmc, VmHardware, missing_bmc, start_ipmi_sim, start_redfish
from test_dnsmasq_e2e import DnsmasqSite, start_dnsmasq_site

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: After bootbrain recorded a local-boot decision, how long the guest is watched for a
#: kernel fetch it should not make.
LOCAL_BOOT_GRACE = 4.0
#: From the reinstall command to the completion: a power cycle plus one full boot.
REINSTALL_TIMEOUT = 180.0

START: dict[str, Callable[[lab.LabNetwork, VmHardware], EmulatedBmc]] = {
    "ipmi": start_ipmi_sim,
    "redfish": start_redfish,
}
#: Per case: protocol, firmware, address, hostname, SMBIOS UUID.
UUID = "4c4c4544-0042-3610-8052-b4c04f4e01"
CASES = {
    "ipmi-bios": ("ipmi", lab.Mode.BIOS, "10.213.0.70", "node-ipmi", UUID + "70"),
    "redfish-bios": ("redfish", lab.Mode.BIOS, "10.213.0.71", "node-redfish", UUID + "71"),
    "redfish-uefi": ("redfish", lab.Mode.UEFI, "10.213.0.72", "node-uefi", UUID + "72"),
}
#: What ``VmHardware.launches`` records for a plain start and for a network boot once:
#: SeaBIOS's ``-boot``; OVMF's order is the NIC's ``bootindex`` (see bmc_hardware.py).
BOOT_ORDERS = {
    lab.Mode.BIOS: ("order=cn", "order=cn,once=n"),
    lab.Mode.UEFI: ("default", "bootindex"),
}


@pytest.fixture(scope="module")
def site(
    lab_requirements: None, lab_boot_files: lab.BootFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DnsmasqSite]:
    reasons = missing_bmc()
    if reasons:
        pytest.skip("emulated BMCs unavailable: " + "; ".join(reasons))
    with lab.LabNetwork(workdir=tmp_path_factory.mktemp("bmc-e2e")) as net:
        s = start_dnsmasq_site(net, lab_boot_files, "dhcp", {})
        try:
            yield s
        finally:
            s.stop()


def power(site: DnsmasqSite, mid: int, action: str | None = None) -> dict[str, Any]:
    """``GET`` (no action) or ``POST /machines/{mid}/power``."""
    if action is None:
        out: dict[str, Any] = site.api("GET", f"/machines/{mid}/power")
    else:
        out = site.api("POST", f"/machines/{mid}/power", {"action": action})
    return out


def reinstall(site: DnsmasqSite, mid: int) -> dict[str, Any]:
    """``POST /machines/{mid}/reinstall``: the one-shot install profile, network-boot-once
    on the BMC, a power cycle; answered once the BMC has done both."""
    out: dict[str, Any] = site.api(
        "POST", f"/machines/{mid}/reinstall", {"profile": LINUX_PROFILE, "power_on": True}
    )
    return out


def local_boot_decision(site: DnsmasqSite, mid: int, hw: VmHardware, before: int) -> None:
    """The guest, just powered on, asks bootbrain and is sent to local boot."""
    started = time.monotonic()
    events = site.wait_events(
        "a boot decision", count=before + 1, timeout=90, kind="boot", machine_id=mid
    )
    time.sleep(LOCAL_BOOT_GRACE)
    for event in events[before:]:
        assert event["data"]["step"] == "assigned", event
        assert event["data"]["profile"] == LOCAL_PROFILE, event
        assert event["data"]["boot_id"] is None, event  # nothing to complete
    assert site.asset_fetches(since=started) == [], "a kernel was fetched on local boot"
    assert "Linux version" not in hw.console(), hw.console()


@pytest.mark.parametrize("case", list(CASES))
def test_reinstall_through_the_bmc(site: DnsmasqSite, case: str) -> None:
    kind, mode, address, hostname, uuid = CASES[case]
    plain, network_once = BOOT_ORDERS[mode]
    mac = lab.random_mac()
    smbios = smbios_for(case.upper(), uuid)
    machine = site.add_machine(
        hostname=hostname, uuid=uuid, serial=smbios.serial, manufacturer=MANUFACTURER,
        product=PRODUCT, nics=[{"mac": mac, "boot": True}], address=address, state="deployed",
    )  # fmt: skip
    mid = machine["id"]
    wait_until(
        "the reservation's host file",
        lambda: (site.hostsdir / f"machine-{mid}.hosts").exists(),
        timeout=10,
    )
    guest = lab.Guest(
        site.net, mode=mode, nics=[lab.Nic(mac=mac)], smbios=smbios, name=f"{case}-vm"
    )
    hw = VmHardware.create(site.workdir / f"bmc-{case}", guest.command())
    bmc = START[kind](site.net, hw)
    try:
        site.api("PUT", f"/machines/{mid}/bmc", bmc.record())
        assert power(site, mid)["power"] == "off"

        # Installed: powered on through bootbrain, it is sent to its local disk.
        assert power(site, mid, "on")["power"] == "on"
        local_boot_decision(site, mid, hw, before=0)
        assert [launch["boot"] for launch in hw.launches()] == [plain]

        # Reinstall, through bootbrain, until bootbrain records the completion.
        boots_before = len(site.events(kind="boot", machine_id=mid))
        started = time.monotonic()
        answer = reinstall(site, mid)
        assert (answer["status"], answer["power"]) == ("done", "on"), answer
        steps = [step["step"] for step in answer["steps"]]
        assert steps == ["next-boot", "power-state", "boot-once", "power-cycle", "done"], answer
        boots = site.wait_events(
            "the install boot", count=boots_before + 1, timeout=REINSTALL_TIMEOUT,
            kind="boot", machine_id=mid,
        )  # fmt: skip
        boot_id = boots[-1]["data"]["boot_id"]
        completion = wait_until(
            f"the completion of boot {boot_id}",
            lambda: next(
                (e for e in site.events(kind="completion", machine_id=mid)
                 if e["data"].get("boot_id") == boot_id),
                None,
            ),
            timeout=REINSTALL_TIMEOUT,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        print(f"\n{case}: reinstall command -> completion recorded in {elapsed:.1f}s")

        # The BMC stored network-boot-once, then power-cycled the guest into it (once).
        launches = hw.launches()
        assert [launch["boot"] for launch in launches] == [plain, network_once]
        assert hw.boot_device() == "default", "the BMC kept the network boot after using it"
        recorded = [e["data"]["step"] for e in site.events(kind="reinstall", machine_id=mid)]
        assert sorted(recorded) == sorted(steps), recorded
        # bootbrain answered the install profile, and its completion consumed it.
        for event in boots[boots_before:]:
            assert (event["data"]["step"], event["data"]["profile"]) == ("action", LINUX_PROFILE)
            assert event["mac"] == mac, event
        assert completion["data"]["consumed_action"] == LINUX_PROFILE, completion
        assert completion["ip"] == address, completion
        after = site.machine(mid)
        assert after["next_boot"] is None, after
        # The guest saw bootbrain's answer to its phone-home (it prints it after the POST).
        done = f"BOOTBRAIN-LAB-DONE status=ok ip={address}/24"
        console = wait_until(
            "the guest's DONE line",
            lambda: text if done in (text := lab.strip_ansi(hw.console())) else None,
            timeout=30,
        )
        assert done in console and ip_config(address, hostname) in console, console[-3000:]

        # The initrd powered the guest off: the BMC says so (QEMU gone or a zombie).
        wait_until("the BMC to report power off", lambda: power(site, mid)["power"] == "off",
                   timeout=30)  # fmt: skip

        # The next power-on, through bootbrain, boots from local disk again.
        before = len(site.events(kind="boot", machine_id=mid))
        assert power(site, mid, "on")["power"] == "on"
        local_boot_decision(site, mid, hw, before=before)
        assert hw.launches()[-1]["boot"] == plain
        assert power(site, mid, "off")["power"] == "off"
        assert not hw.powered()
    except BaseException:
        print(f"--- {kind} BMC log ---\n{bmc.log()[-3000:]}\n{site.diagnostics()}")
        print(f"--- last console ---\n{lab.strip_ansi(hw.console())[-3000:]}")
        raise
    finally:
        bmc.stop(site.net)
