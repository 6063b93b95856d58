"""bootbrain in a lab namespace: what the end-to-end tests of every DHCP integration share.

A *site* is one lab namespace (bridge ``br0`` = 10.213.0.1/24) holding:

* bootbrain under gunicorn (``python -m bootbrain serve``, 2 workers) on
  10.213.0.1:8080, with its own data directory, SQLite database and secret, configured
  only through ``BOOTBRAIN_*`` variables (and an empty ``BOOTBRAIN_CONFIG`` file, so
  the host's ``/etc/bootbrain`` never leaks in);
* the DHCP server bootbrain drives (``BOOTBRAIN_DHCP``), configured by bootbrain's own
  ``<server> config`` command and running bootbrain's lease hook, installed with
  ``<server> hook --hook-config`` -- a subclass of :class:`Site` per server
  (``test_dnsmasq_e2e.py``, ``test_kea_e2e.py``);
* a TFTP root with Debian's iPXE binaries, and a static file server for the Debian
  kernel and the lab initrd (``assets_url``).

The inventory is created through the REST API with a token from ``token create
--quiet``; the helpers below boot QEMU guests and assert from bootbrain's own records
(events, machines, boot preview), cross-checked with what the guest printed on its
console.

(Not ``site.py``: that name is the standard library's ``site`` module, which Python
imports at start-up, so ``import site`` would never reach this file.)
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

import lab
import pytest

T = TypeVar("T")
S = TypeVar("S", bound="Site")

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PORT = 8080
BRIDGE = "br0"
SUBNET = "10.213.0.0/24"
GATEWAY = "10.213.0.1"
NETMASK = "255.255.255.0"

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

GUEST_TIMEOUT = 150.0


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


def http(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    """One HTTP request; run it with ``net.call`` so it leaves from inside the namespace."""
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
    """One lab network with bootbrain, its DHCP server and the boot assets.

    Subclasses name the server (:attr:`dhcp`, also the CLI group and the settings
    section) and implement :meth:`dhcp_env`, :meth:`configure_dhcp`,
    :meth:`start_dhcp`, :meth:`stop_dhcp` and :meth:`dhcp_log`.
    """

    net: lab.LabNetwork
    workdir: Path
    boot_files: lab.BootFiles
    port: int = PORT
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""
    assets: lab.StubHTTPServer | None = None
    brain: subprocess.Popen[bytes] | None = None
    _brain_log: IO[bytes] | None = None

    #: ``BOOTBRAIN_DHCP``: ``dnsmasq`` or ``kea``.
    dhcp: ClassVar[str] = "none"

    # -- paths -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.net.address}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def tftp_root(self) -> Path:
        return self.workdir / "tftp"

    @property
    def hook_script(self) -> Path:
        return self.workdir / f"{self.dhcp}-hook"

    @property
    def hook_token_file(self) -> Path:
        return self.workdir / "leasehook.token"

    @property
    def brain_log_path(self) -> Path:
        return self.workdir / "bootbrain.log"

    @property
    def assets_log_path(self) -> Path:
        return self.workdir / "bootbrain-assets.json"

    @property
    def assets_url(self) -> str:
        assert self.assets is not None
        return self.assets.url("").rstrip("/")

    # -- what each DHCP server adds ----------------------------------------------------

    def dhcp_env(self) -> dict[str, str]:
        """``BOOTBRAIN_<SERVER>__*`` settings beyond the hook's (see :meth:`start`)."""
        raise NotImplementedError

    def configure_dhcp(self) -> None:
        """Render and check the server's configuration (bootbrain is starting meanwhile)."""
        raise NotImplementedError

    def start_dhcp(self) -> None:
        """Start the server (bootbrain answers by now)."""
        raise NotImplementedError

    def stop_dhcp(self) -> None:
        raise NotImplementedError

    def dhcp_log(self) -> str:
        raise NotImplementedError

    # -- start-up ----------------------------------------------------------------------

    def start(self: S, extra_env: dict[str, str] | None = None) -> S:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        # The iPXE binaries, installed as the README tells operators to.
        self.tftp_root.mkdir(exist_ok=True)
        for name in lab.assets.IPXE_BOOT_FILES:
            shutil.copyfile(lab.ipxe_file(name), self.tftp_root / name)

        # The assets server writes nginx's bootbrain_assets log, which bootbrain ingests.
        self.assets = lab.StubHTTPServer(
            self.net, self.net.address, access_log=self.assets_log_path
        )
        self.assets.route("/" + lab.KERNEL_NAME, self.boot_files.vmlinuz)
        self.assets.route("/" + lab.INITRD_NAME, self.boot_files.initrd)
        self.assets.start()

        empty_config = self.workdir / "bootbrain.toml"
        empty_config.write_text("# empty: these tests configure bootbrain by environment\n")
        section = f"BOOTBRAIN_{self.dhcp.upper()}__"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTBRAIN_")}
        env.update(
            {
                "BOOTBRAIN_CONFIG": str(empty_config),
                "BOOTBRAIN_DATA_DIR": str(self.data_dir),
                "BOOTBRAIN_SECRET_KEY": secrets.token_urlsafe(32),
                "BOOTBRAIN_PUBLIC_URL": self.base_url,
                "BOOTBRAIN_ASSETS_URL": self.assets_url,
                "BOOTBRAIN_EVENT_FLUSH_INTERVAL": "0.1",
                "BOOTBRAIN_DHCP": self.dhcp,
                section + "HOOK_SCRIPT": str(self.hook_script),
                section + "HOOK_TOKEN_FILE": str(self.hook_token_file),
                section + "SPOOL_DIR": str(self.spool_dir),
                "PYTHONUNBUFFERED": "1",
                # gunicorn keeps a control socket under $HOME: one per site, not shared.
                "HOME": str(self.workdir),
            }
        )
        env.update(self.dhcp_env())
        env.update(extra_env or {})
        self.env = env

        self.cli("init", "--no-admin-token")
        self.token = self.cli(
            "token", "create", "--name", f"e2e-{self.workdir.name}", "--scope", "write", "--quiet"
        ).stdout.strip()
        assert self.token.startswith("bbt_"), self.token

        # gunicorn starts while the remaining commands run (they only touch files).
        self.start_brain(wait=False)
        self._install_hook()
        self.configure_dhcp()
        wait_until("bootbrain /healthz", self._healthy, timeout=60)
        self.start_dhcp()
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
            status, _ = self.net.call(http, "GET", self.base_url + "/healthz", None, {}, 2.0)
        except OSError:
            return False
        return status == 200

    def _install_hook(self) -> None:
        """The server's lease hook: ``bootbrain <server> hook`` installs the wrapper (at
        ``<server>.hook_script``) and the hook's configuration."""
        # Token names are unique in the inventory, which several sites may share.
        name = f"leasehook-{self.workdir.name}"
        token = self.cli("token", "create", "--name", name, "--scope", "write", "--quiet")
        self.hook_token_file.write_text(token.stdout.strip() + "\n")
        self.hook_token_file.chmod(0o600)
        self.cli(self.dhcp, "hook", "--hook-config", str(self.workdir / "leasehook.conf"))
        assert os.access(self.hook_script, os.X_OK), self.hook_script

    # -- tear-down ---------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_dhcp()
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
            http, method, f"{self.base_url}/api/v1{path}", data, headers, 15.0
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
            self.add_linux_profile(name, cmdline)

    def add_linux_profile(self, name: str, cmdline: str, **fields: Any) -> dict[str, Any]:
        """A linux profile booting the lab kernel and initrd with ``cmdline``."""
        body = {
            "name": name,
            "kind": "linux",
            "kernel": "{{ assets }}/" + lab.KERNEL_NAME,
            "initrds": ["{{ assets }}/" + lab.INITRD_NAME],
            "cmdline": cmdline,
            "complete_state": "deployed",
            **fields,
        }
        profile: dict[str, Any] = self.api("POST", "/profiles", body, expect=201)
        return profile

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
            f"--- {self.dhcp} log tail ---\n" + "\n".join(self.dhcp_log().splitlines()[-60:])
        )


def start_site(site: S, extra_env: dict[str, str] | None = None) -> S:
    """Start ``site`` and create the inventory every test uses; stopped again on failure."""
    try:
        site.start(extra_env)
        site.add_common_inventory()
    except BaseException:
        site.stop()
        raise
    return site


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


def preview_query(mode: lab.Mode) -> str:
    """The boot-preview query for a guest of this mode (UEFI: bootbrain's default)."""
    return "?buildarch=i386&platform=pcbios" if mode is lab.Mode.BIOS else ""


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


def boot_until_lease(
    site: Site, *, address: str, hostname: str, name: str
) -> tuple[str, int, list[dict[str, Any]]]:
    """A machine reserved at ``address`` boots (BIOS, assigned profile) until bootbrain
    has recorded its boot and a lease event: (mac, machine id, the lease events)."""
    mac = lab.random_mac()
    nics = [{"mac": mac, "boot": True}]
    mid = site.add_machine(hostname=hostname, nics=nics, address=address)["id"]
    guest = lab.Guest(site.net, mode=lab.Mode.BIOS, nics=[lab.Nic(mac=mac)], name=name)
    with guest:
        boots = site.wait_events("the lease guest's boot", kind="boot", machine_id=mid, timeout=90)
        leases = site.wait_events("a lease event", kind="lease", mac=mac, timeout=20)
        guest.kill()
    assert boots[0]["ip"] == address and boots[0]["data"]["step"] == "assigned", boots
    return mac, mid, leases


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
    profile: str = LINUX_PROFILE,
    report_extra: dict[str, str] | None = None,
    lease_stage: bool = True,
) -> dict[str, Any]:
    """A one-shot linux action (``profile``) booted and completed; returns the boot
    event. The completion's report is the initrd's ``ip``, ``hostname`` and ``iface``
    plus ``report_extra``, exactly. ``lease_stage``: our DHCP server gave the lease (so
    its hook reported it to the funnel)."""
    mid = machine["id"]
    boots = site.wait_events("the boot event", kind="boot", machine_id=mid)
    # The firmware may re-request /ipxe; the completed boot is the one that counts.
    for event in boots:
        assert event["data"]["step"] == "action", event
        assert event["data"]["profile"] == profile, event
        assert event["data"]["facts"] == expected_facts(smbios, mac, mode), event
        assert event["data"]["user_agent"].startswith("iPXE/"), event
        assert event["mac"] == mac, event
        assert event["ip"] == dhcp_address, event  # iPXE's own DHCP address
    boot = boots[-1]
    completion = completion_for(site, boot["data"]["boot_id"], machine_id=mid)
    assert completion["machine_id"] == mid
    assert completion["data"]["consumed_action"] == profile, completion
    assert completion["data"]["step"] == "action", completion
    assert completion["data"]["report"] == {
        "ip": f"{address}/24",
        "hostname": hostname,
        "iface": "eth0",
        **(report_extra or {}),
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
    assert_complete_funnel(site, mid, boot["data"]["boot_id"], lease_stage)

    after = site.machine(mid)
    assert after["next_boot"] is None, after
    assert after["state"] == "deployed", after
    assert after["last_seen_ip"] == address, after
    return boot


def assert_complete_funnel(site: Site, machine_id: int, boot_id: str, lease: bool | None) -> None:
    """The boot funnel of the completed boot has every stage, the kernel and initrd
    fetches (ingested from the assets log, as production does) included. ``lease``:
    whether a lease stage must be there (None: either way)."""
    site.cli("boots", "ingest", str(site.assets_log_path))
    attempts = json.loads(site.cli("machine", "boots", str(machine_id), "--json").stdout)
    (attempt,) = [a for a in attempts if a["boot_id"] == boot_id]
    stages = [s["stage"] for s in attempt["stages"]]
    for stage in ("bootstrap", "decision", "kernel", "initrd", "completion"):
        assert stage in stages, attempt
    if lease is not None:
        assert ("lease" in stages) == lease, attempt
    assert stages.index("decision") < stages.index("kernel") < stages.index("completion"), stages
    assert (attempt["status"], attempt["not_seen"]) == ("complete", []), attempt
    fetches = [s for s in attempt["stages"] if s["stage"] in ("kernel", "initrd")]
    sizes = {s["stage"]: s["data"]["bytes"] for s in fetches}
    assert sizes == {
        "kernel": site.boot_files.vmlinuz.stat().st_size,
        "initrd": site.boot_files.initrd.stat().st_size,
    }, attempt
    offsets = [s["after_start_s"] for s in attempt["stages"]]
    assert offsets == sorted(offsets) and 0 < attempt["duration_s"] < 600, attempt


def assert_preview_is_action(
    site: Site,
    machine_id: int,
    address: str,
    hostname: str,
    mode: lab.Mode,
    profile: str = LINUX_PROFILE,
) -> str:
    preview = site.api("GET", f"/machines/{machine_id}/boot-preview{preview_query(mode)}")
    assert preview["step"] == "action", preview
    assert preview["profile"] == profile, preview
    script: str = preview["script"]
    assert script.startswith("#!ipxe\n"), script
    assert f"set IPXE_BOOT_LINUX_IP_CONFIG {ip_config(address, hostname)}\n" in script, script
    assert re.search(
        rf"^kernel .*{re.escape(site.assets_url)}/vmlinuz .*initrd=initrd\.gz", script, re.M
    ), script
    assert re.search(rf"^initrd .*{re.escape(site.assets_url)}/initrd\.gz", script, re.M), script
    assert "${IPXE_BOOT_LINUX_IP_CONFIG}" in script, script
    return script


@dataclass
class OneShot:
    """A machine that booted its one-shot linux action (see :func:`one_shot_boot`)."""

    machine: dict[str, Any]
    mac: str
    smbios: lab.Smbios
    result: lab.BootResult
    make_guest: Callable[[str], lab.Guest]
    #: The boot event of the boot that completed.
    boot: dict[str, Any]


def one_shot_boot(
    site: Site,
    *,
    tag: str,
    mode: lab.Mode,
    nic_model: str,
    romfile: str | None,
    uuid: str,
    address: str,
    hostname: str,
    profile: str = LINUX_PROFILE,
    machine_fields: dict[str, Any] | None = None,
    report_extra: Callable[[dict[str, Any]], dict[str, str]] | None = None,
) -> OneShot:
    """The main scenario, for any DHCP server: a machine with SMBIOS identity and a
    static address (so a reservation) gets the linux action, boots it through the whole
    chain with the ``ip=`` bootbrain computed, phones home, and the action is consumed:
    its assigned profile (local boot) is what it gets next.

    ``profile``: the one-shot action (default :data:`LINUX_PROFILE`);
    ``machine_fields``: more fields for the new machine; ``report_extra``: given the
    machine, what the completion's report holds beyond ``ip``, ``hostname``, ``iface``."""
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
        **(machine_fields or {}),
    )
    mid = machine["id"]
    site.api("PUT", f"/machines/{mid}/next-boot", {"profile": profile})
    assert_preview_is_action(site, mid, address, hostname, mode, profile)

    def make_guest(suffix: str) -> lab.Guest:
        return lab.Guest(
            site.net,
            mode=mode,
            nics=[lab.Nic(model=nic_model, mac=mac, romfile=romfile)],
            smbios=smbios,
            name=f"{tag.lower()}-{suffix}",
        )

    result = boot_guest(site, make_guest("first"))
    boot = assert_booted_action(
        site,
        machine=machine,
        mac=mac,
        mode=mode,
        smbios=smbios,
        result=result,
        address=address,
        hostname=hostname,
        dhcp_address=address,  # the reservation bootbrain gave its DHCP server
        profile=profile,
        report_extra=report_extra(machine) if report_extra else None,
    )
    # The action is consumed: the machine's assigned profile (local boot) is next.
    preview = site.api("GET", f"/machines/{mid}/boot-preview{preview_query(mode)}")
    assert (preview["step"], preview["profile"]) == ("assigned", LOCAL_PROFILE), preview
    assert "\nexit" in preview["script"] and "kernel" not in preview["script"], preview
    return OneShot(
        machine=machine, mac=mac, smbios=smbios, result=result, make_guest=make_guest, boot=boot
    )
