"""The power drivers against real emulated BMCs on loopback: what an operator would check
on the BMC after each command (its power state, its boot device), and the errors."""

from __future__ import annotations

import subprocess
import time

import pytest

from bootbrain.bmc import BmcTarget, cycle, driver_for
from bootbrain.errors import (
    BmcAuthError,
    BmcRejectedError,
    BmcTlsError,
    BmcUnreachableError,
)
from tests.ports import free_port

from .conftest import PASSWORD, USER, IpmiSim, Redfish


def ipmi(sim: IpmiSim, password: str = PASSWORD, **kw: object) -> BmcTarget:
    return BmcTarget("rack1-01", "ipmi", "127.0.0.1", sim.port, USER, password, **kw)  # type: ignore[arg-type]


def redfish_target(r: Redfish, password: str = PASSWORD, **kw: object) -> BmcTarget:
    scheme = "https" if r.cert else "http"
    return BmcTarget(
        "rack1-02", "redfish", f"{scheme}://127.0.0.1", r.port, USER, password,
        system_id=r.system_id, **kw,  # type: ignore[arg-type]
    )


def test_ipmi_power_on_off_status(ipmi_sim: IpmiSim) -> None:
    d = driver_for(ipmi(ipmi_sim))
    assert d.power_state() == "off"
    assert d.on() == "on"
    assert ipmi_sim.power() == "on"
    assert d.off() == "off"
    assert ipmi_sim.power() == "off"


def test_ipmi_cycle_powers_on_a_machine_that_is_off(ipmi_sim: IpmiSim) -> None:
    d = driver_for(ipmi(ipmi_sim))
    assert cycle(d) == "on"
    assert ipmi_sim.actions() == ["power 1"]  # no reset sent to a machine that was off
    assert cycle(d) == "on"
    assert ipmi_sim.actions() == ["power 1", "reset 1"]


def test_ipmi_network_boot_once(ipmi_sim: IpmiSim) -> None:
    got = driver_for(ipmi(ipmi_sim)).network_boot_once()
    assert ipmi_sim.boot() == "pxe"
    # ipmi_sim never sets the boot flags' valid bit: the read-back cannot confirm
    assert got.device == "default" and not got.confirmed


def test_ipmi_wrong_password(ipmi_sim: IpmiSim) -> None:
    with pytest.raises(BmcAuthError) as e:
        driver_for(ipmi(ipmi_sim, "not-the-password")).power_state()
    assert "rack1-01" in str(e.value) and f"ipmi://127.0.0.1:{ipmi_sim.port}" in str(e.value)
    assert "not-the-password" not in str(e.value)
    assert ipmi_sim.actions() == []


def test_ipmi_unreachable_fails_within_its_bound() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(BmcUnreachableError) as e:
        driver_for(
            BmcTarget("rack1-01", "ipmi", "127.0.0.1", port, USER, PASSWORD, retries=0)
        ).power_state()
    assert time.monotonic() - started < 10
    assert f"ipmi://127.0.0.1:{port}" in str(e.value) and "rack1-01" in str(e.value)


def test_redfish_power_and_cycle(redfish: Redfish) -> None:
    d = driver_for(redfish_target(redfish))
    assert d.power_state() == "off"
    assert cycle(d) == "on"  # the emulator refuses a restart while off: cycle sent On
    assert redfish.system()["PowerState"] == "On"
    cycle(d)
    assert d.off() == "off"
    assert redfish.system()["PowerState"] == "Off"


def test_redfish_network_boot_once(redfish: Redfish) -> None:
    got = driver_for(redfish_target(redfish)).network_boot_once()
    boot = redfish.system()["Boot"]
    assert isinstance(boot, dict) and boot["BootSourceOverrideTarget"] == "Pxe"
    assert got.confirmed and got.device == "network"


def test_redfish_wrong_password(redfish: Redfish) -> None:
    with pytest.raises(BmcAuthError) as e:
        driver_for(redfish_target(redfish, "wrong")).power_state()
    assert "rack1-02" in str(e.value) and "wrong" not in str(e.value).replace("rack", "")


def test_redfish_unreachable() -> None:
    port = free_port()
    t = BmcTarget("rack1-02", "redfish", "http://127.0.0.1", port, USER, PASSWORD, retries=0)
    with pytest.raises(BmcUnreachableError) as e:
        driver_for(t).power_state()
    assert f"127.0.0.1:{port}" in str(e.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_redfish_tls_is_verified(redfish_tls: Redfish) -> None:
    with pytest.raises(BmcTlsError):
        driver_for(redfish_target(redfish_tls, retries=0)).power_state()
    assert driver_for(redfish_target(redfish_tls, verify_tls=False)).power_state() == "off"


def test_rejected_boot_device_is_an_error(redfish: Redfish) -> None:
    """A Redfish BMC that refuses the override (an unknown system) is an error, not a pass."""
    t = redfish_target(redfish)
    bad = BmcTarget(t.machine, t.kind, t.address, t.port, t.username, t.password,
                    system_id="no-such-system")
    with pytest.raises(BmcRejectedError):
        driver_for(bad).network_boot_once()


def test_ipmi_call_that_never_returns_is_cut_off_and_the_next_one_works(
    ipmi_sim: IpmiSim,
) -> None:
    """A call whose worker never answers (pyghmi waiting for ever at logon, as seen when
    a BMC vanished mid-logon) is killed at the wall-clock limit and reported as a BMC
    that did not answer; the next call, in a fresh process, works."""
    from bootbrain.bmc.ipmi import IpmiDriver, wall_limit

    target = ipmi(ipmi_sim, timeout=1.0)
    assert IpmiDriver(target).power_state() == "off"
    stuck = IpmiDriver(target, worker=["sleep", "600"])
    started = time.monotonic()
    with pytest.raises(BmcUnreachableError) as e:
        stuck.power_state()
    took = time.monotonic() - started
    # every attempt (1 + retries) waits out the limit
    attempts = target.retries + 1
    assert attempts * wall_limit(target) <= took < attempts * wall_limit(target) + 5
    assert "within" in str(e.value) and "rack1-01" in str(e.value)
    assert subprocess.run(["pgrep", "-f", "^sleep 600$"], check=False).returncode == 1
    assert IpmiDriver(target).on() == "on"
    assert ipmi_sim.power() == "on"


def test_ipmi_calls_leave_no_session_open_on_the_bmc(ipmi_sim: IpmiSim) -> None:
    """Each call logs out: many calls in a row never fill the BMC's session table."""
    d = driver_for(ipmi(ipmi_sim))
    for _ in range(12):
        assert d.power_state() == "off"
    assert d.on() == "on"


def test_ipmi_falls_back_from_a_cipher_suite_the_bmc_refuses(ipmi_sim: IpmiSim) -> None:
    """OpenIPMI's simulator has no cipher suite 17 (SHA-256): ipmitool asking for it
    is refused. The driver proposes 17 first and falls back to suite 3 by itself."""
    import shutil
    import subprocess

    if not shutil.which("ipmitool"):
        pytest.skip("ipmitool (Debian ipmitool) is not installed: cannot show the BMC refuses 17")

    def ipmitool(suite: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ipmitool", "-I", "lanplus", "-C", suite, "-H", "127.0.0.1",
             "-p", str(ipmi_sim.port), "-U", USER, "-P", PASSWORD, "-N", "1", "-R", "1",
             "power", "status"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    refused = ipmitool("17")
    assert refused.returncode != 0 and "authentication algorithm" in refused.stderr
    assert ipmitool("3").stdout.strip() == "Chassis Power is off"
    assert driver_for(ipmi(ipmi_sim)).on() == "on"
    assert ipmi_sim.power() == "on"
