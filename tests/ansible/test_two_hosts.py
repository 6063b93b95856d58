"""Two boot hosts on one PostgreSQL inventory, converged by one run of the playbook
(issue 15: several boot hosts), then checked the way an operator would: the role's own
verify passes on both, a machine added through either host's API is in the other's
API and in both hosts' DHCP reservations (each host's reconciler wrote its own), the
schema was migrated once, a second run changes nothing on either, and a per-boot
token issued by one brain is accepted by the other.

Each host is a tree of its own (an overlay of the cached Debian tree), reached with
``community.general.chroot``; both brains and both nginx listen on loopback ports of
their own. dnsmasq is not started: its reservations are the host files the reconciler
writes, which dnsmasq reads (tests/e2e boots machines through them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ansible_harness as harness
import pytest

from tests.ports import free_port

pytestmark = pytest.mark.ansible
slow = pytest.mark.slow

HOSTS = ("boot-a", "boot-b")
# Shared by both hosts; the role requires it the same on hosts sharing a database.
SECRET = secrets.token_urlsafe(32)
MIGRATE = "bootbrain : Migrate the database to the current schema"
READY = "bootbrain : Check bootbrain is ready"
# The limit: a change is in every host's DHCP server within two seconds.
RESERVATION_WITHIN = 2.0


def _validate_only(
    tmp_path: Path, host_vars: dict[str, dict[str, object]], *args: str
) -> harness.PlaybookRun:
    """The role's validation alone (tagged always; --check, no other tag selected) for
    two hosts on this machine: nothing is changed, nothing is needed but Ansible."""
    group_vars = {
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "bootbrain_database_url": "postgresql+psycopg://bootbrain:pw@db.example.net/bootbrain",
        "bootbrain_server_ip": "127.0.0.1",
        "bootbrain_dhcp_interface": "lo",
        "bootbrain_dhcp_range_start": "127.0.0.100",
        "bootbrain_dhcp_range_end": "127.0.0.199",
        "bootbrain_dhcp_netmask": "255.0.0.0",
    }
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"bootbrain": {"hosts": host_vars, "vars": group_vars}}))
    return harness.run_playbook(
        inventory, None, workdir=tmp_path, args=["--check", "--tags", "validate-only", *args]
    )


@pytest.mark.parametrize(
    ("secrets_by_host", "limit"),
    [
        pytest.param({}, "boot-b", id="no-secret-even-when-the-run-is-limited-to-one-host"),
        pytest.param({"boot-a": "s3cr3t-A-x7", "boot-b": "s3cr3t-B-x7"}, "", id="two-secrets"),
    ],
)
def test_hosts_sharing_a_database_need_one_secret(
    ansible_playbook: str, tmp_path: Path, secrets_by_host: dict[str, str], limit: str
) -> None:
    """A secret generated on each host would differ, and each brain would refuse the
    tokens the other issued: the play stops first, naming the hosts and the variable."""
    host_vars: dict[str, dict[str, object]] = {
        name: ({"bootbrain_secret_key": secrets_by_host[name]} if name in secrets_by_host else {})
        for name in HOSTS
    }
    run = _validate_only(tmp_path, host_vars, *(["--limit", limit] if limit else []))
    assert run.returncode != 0, run.tail()
    failed = run.task_results("Check that boot hosts sharing a database share bootbrain_secret_key")
    assert failed == {name: "fatal" for name in ([limit] if limit else HOSTS)}, run.tail(40)
    assert "boot-a, boot-b share one PostgreSQL inventory" in run.output, run.tail(40)
    assert "set bootbrain_secret_key" in run.output
    assert all(r["changed"] == 0 for r in run.recaps().values()), run.tail()
    for secret in secrets_by_host.values():
        assert secret not in run.output, "a secret is in the output"


def test_hosts_sharing_a_database_with_one_secret_pass(
    ansible_playbook: str, tmp_path: Path
) -> None:
    run = _validate_only(tmp_path, {name: {"bootbrain_secret_key": SECRET} for name in HOSTS})
    assert run.returncode == 0, run.tail(40)
    assert set(run.recaps()) == set(HOSTS), run.tail()


@dataclass
class Host:
    name: str
    target: harness.Target
    nginx_port: int
    gunicorn_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def api_token(self) -> str:
        return self.target.path("/etc/bootbrain/api-token").read_text().strip()

    def api(
        self, method: str, path: str, body: object = None, *, token: str | None = None
    ) -> harness.Response:
        auth = {"Authorization": f"Bearer {token or self.api_token()}"}
        return harness.http_request(method, f"{self.base}/api/v1{path}", body=body, headers=auth)

    def host_files(self) -> dict[str, str]:
        hostsdir = self.target.path("/var/lib/bootbrain/dnsmasq-hosts")
        return {p.name: p.read_text() for p in hostsdir.glob("machine-*.hosts")}


@dataclass
class Fleet:
    hosts: dict[str, Host]
    inventory: Path
    work: Path
    db_url: str
    timings: list[tuple[str, float]]
    runs: list[harness.PlaybookRun] = field(default_factory=list)

    def converge(self, label: str, *args: str) -> harness.PlaybookRun:
        run = harness.run_playbook(self.inventory, None, workdir=self.work, args=args)
        self.timings.append((f"two hosts: {label}", run.seconds))
        (self.work / f"fleet-{len(self.runs)}-{label.replace(' ', '-')}.log").write_text(run.output)
        self.runs.append(run)
        return run


@pytest.fixture(scope="module")
def fleet_db() -> Iterator[str]:
    """A database of this test's own on the test server: created empty, dropped after."""
    from sqlalchemy import create_engine, text

    from tests.conftest import pg_url

    base = pg_url()
    name = base.rsplit("/", 1)[1].replace("bootbrain_test", "bootbrain_ansible") + "_fleet"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def fleet(
    pristine: Path, wheelhouse: Path, fleet_db: str, timings: list[tuple[str, float]]
) -> Iterator[Fleet]:
    keep = os.environ.get("BOOTBRAIN_ANSIBLE_KEEP") == "1"
    targets: list[harness.Target] = []
    try:
        started = time.monotonic()
        for _ in HOSTS:
            targets.append(harness.Target.create(pristine))
        timings.append(("two hosts: overlay two trees", time.monotonic() - started))
        ports: set[int] = set()
        while len(ports) < 2 * len(HOSTS):
            ports.add(free_port())
        it = iter(sorted(ports))
        hosts = {
            name: Host(name, target, next(it), next(it))
            for name, target in zip(HOSTS, targets, strict=True)
        }
        work = targets[0].work
        group_vars: dict[str, object] = {
            "bootbrain_install_source": "checkout",
            "bootbrain_checkout_path": str(harness.snapshot_checkout(work / "checkout")),
            "bootbrain_pip_wheelhouse": str(wheelhouse),
            # One inventory, one secret: what the operator puts in the group's vault.
            "bootbrain_database_url": fleet_db,
            "bootbrain_secret_key": SECRET,
            "bootbrain_server_ip": "127.0.0.1",
            "bootbrain_dhcp_server": "dnsmasq",
            "bootbrain_dnsmasq_mode": "dhcp",
            "bootbrain_dhcp_interface": "lo",
            "bootbrain_dhcp_range_start": "127.0.0.100",
            "bootbrain_dhcp_range_end": "127.0.0.199",
            "bootbrain_dhcp_netmask": "255.0.0.0",
        }
        host_vars = {
            name: (
                h.target.root,
                {
                    # Loopback only: the trees share this machine's network.
                    "bootbrain_nginx_port": h.nginx_port,
                    "bootbrain_nginx_listen": [f"127.0.0.1:{h.nginx_port}"],
                    "bootbrain_gunicorn_bind": f"127.0.0.1:{h.gunicorn_port}",
                },
            )
            for name, h in hosts.items()
        }
        inventory = work / "fleet-inventory.json"
        harness.write_fleet_inventory(inventory, host_vars, group_vars)
        yield Fleet(hosts, inventory, work, fleet_db, timings)
    finally:
        for target in targets:
            target.destroy(keep=keep)


@pytest.fixture(scope="module")
def first_converge(fleet: Fleet) -> harness.PlaybookRun:
    run = fleet.converge("first converge")
    for host in fleet.hosts.values():
        host.target.harvest_apt_archives()
    if run.returncode != 0:
        pytest.fail(f"converging both hosts failed (rc={run.returncode}):\n{run.tail(80)}")
    return run


@pytest.fixture(scope="module")
def second_converge(fleet: Fleet, first_converge: harness.PlaybookRun) -> harness.PlaybookRun:
    run = fleet.converge("second converge")
    if run.returncode != 0:
        pytest.fail(f"the second run failed (rc={run.returncode}):\n{run.tail(80)}")
    return run


@pytest.fixture(scope="module")
def brains(fleet: Fleet, second_converge: harness.PlaybookRun) -> Iterator[dict[str, Host]]:
    """Both hosts' bootbrain and nginx, started as their units would."""
    started = time.monotonic()
    try:
        for host in fleet.hosts.values():
            work = host.target.work
            harness.start_bootbrain(host.target, host.gunicorn_port, work / "gunicorn.log")
            nginx = harness.start_nginx(host.target, work / "nginx.log")
            health = harness.wait_for_http(f"{host.base}/healthz", nginx, work / "nginx.log")
            assert health.status == 200, (host.name, health)
        fleet.timings.append(("two hosts: start both brains and nginx", time.monotonic() - started))
        yield fleet.hosts
    finally:
        for host in fleet.hosts.values():
            host.target.stop_all()


@slow
def test_one_run_converges_both_hosts_and_migrates_once(
    fleet: Fleet, first_converge: harness.PlaybookRun
) -> None:
    from sqlalchemy import create_engine, text

    from bootbrain import migrate

    recaps = first_converge.recaps()
    assert sorted(recaps) == sorted(HOSTS), first_converge.tail()
    for name, recap in recaps.items():
        assert recap["failed"] == 0 and recap["unreachable"] == 0, (name, first_converge.tail())
        assert recap["changed"] > 0, (name, first_converge.tail())
    # Both hosts found the empty database and ran `db upgrade` at the same time; one
    # migrated, the other waited for it and found nothing to do.
    migrated = first_converge.task_results(MIGRATE)
    assert sorted(migrated.values()) == ["changed", "ok"], (migrated, first_converge.tail(80))
    assert fleet.db_url not in first_converge.output, "the database URL is in the output"
    assert SECRET not in first_converge.output, "the secret is in the output"

    engine = create_engine(fleet.db_url)
    with engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        tokens = conn.execute(text("SELECT name, scope FROM api_token")).all()
    engine.dispose()
    assert head == [migrate.newest()]
    # Each host created its own operators' and lease-hook tokens in the one inventory.
    for name in HOSTS:
        assert [s for n, s in tokens if n.startswith(f"ansible-{name}-")] == ["write"], tokens
        assert [s for n, s in tokens if n.startswith(f"leasehook-{name}-")] == ["lease"], tokens
    for host in fleet.hosts.values():
        config = host.target.path("/etc/bootbrain/bootbrain.toml").read_text()
        assert f'secret_key = "{SECRET}"' in config, host.name


@slow
def test_a_second_run_changes_nothing_on_either_host(
    second_converge: harness.PlaybookRun,
) -> None:
    recaps = second_converge.recaps()
    assert sorted(recaps) == sorted(HOSTS), second_converge.tail()
    changed = second_converge.changed_tasks()
    for name, recap in recaps.items():
        assert recap["failed"] == 0, (name, second_converge.tail())
        assert recap["changed"] == 0, (name, changed, second_converge.tail())
    assert second_converge.task_results(MIGRATE) == {"boot-a": "skipping", "boot-b": "skipping"}


@slow
def test_the_roles_verify_fails_while_the_brains_are_down(
    fleet: Fleet, second_converge: harness.PlaybookRun
) -> None:
    """Before anything is started: the verify must fail on both hosts, naming what it
    asked (so its pass below means something)."""
    run = fleet.converge(
        "verify, nothing running", "--tags", "bootbrain_verify", "-e", "bootbrain_verify_retries=0"
    )
    assert run.returncode != 0, run.tail()
    assert run.task_results(READY) == {"boot-a": "fatal", "boot-b": "fatal"}, run.tail(40)
    for host in fleet.hosts.values():
        assert f"bootbrain is not ready at {host.base}/readyz" in run.output, run.tail(40)
    assert all(r["changed"] == 0 for r in run.recaps().values()), run.tail()


@slow
def test_the_roles_verify_passes_on_both_hosts(fleet: Fleet, brains: dict[str, Host]) -> None:
    run = fleet.converge("verify", "--tags", "bootbrain_verify")
    assert run.returncode == 0, run.tail(60)
    assert run.task_results(READY) == {"boot-a": "ok", "boot-b": "ok"}, run.tail(40)
    assert all(r["changed"] == 0 for r in run.recaps().values()), run.tail()
    # What the verify asked, asked again: every check of each host passes.
    for host in brains.values():
        ready = harness.http_get(f"{host.base}/readyz")
        assert ready.status == 200, (host.name, ready)
        checks = json.loads(ready.body)["checks"]
        assert {"database_read", "database_write", "schema", "reconcile"} <= set(checks), checks
        assert all(c["ok"] for c in checks.values()), (host.name, checks)


def _wait_for_reservation(host: Host, line: str) -> float:
    """Seconds until one of ``host``'s dnsmasq host files holds exactly ``line``."""
    started = time.monotonic()
    while True:
        files = host.host_files()
        if line in files.values():
            return time.monotonic() - started
        assert time.monotonic() - started < RESERVATION_WITHIN, (
            f"{host.name}'s reconciler did not write {line!r} within {RESERVATION_WITHIN} s; "
            f"its host files: {files}\n{harness._tail(host.target.work / 'gunicorn.log')}"
        )
        time.sleep(0.05)


@slow
def test_one_inventory_and_each_hosts_dhcp_reservations(
    brains: dict[str, Host], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = brains["boot-a"], brains["boot-b"]
    # API tokens are HMACs keyed with the shared secret: each host's token opens the other.
    assert b.api("GET", "/tokens", token=a.api_token()).status == 200
    assert a.api("GET", "/tokens", token=b.api_token()).status == 200
    network = {"name": "rack1", "cidr": "10.200.0.0/24", "gateway": "10.200.0.1"}
    assert a.api("POST", "/networks", network).status == 201
    latencies: list[str] = []
    for n, (through, other) in enumerate([(a, b), (b, a)], start=1):
        mac, ip, hostname = f"52:54:00:f1:ee:0{n}", f"10.200.0.{50 + n}", f"node-{n}"
        made = through.api(
            "POST",
            "/machines",
            {"hostname": hostname, "nics": [{"mac": mac}], "network": "rack1", "address": ip},
        )
        assert made.status == 201, (through.name, made)
        committed = time.monotonic()
        mid = json.loads(made.body)["id"]
        seen = other.api("GET", f"/machines/{mid}")
        assert seen.status == 200, (other.name, seen)
        assert json.loads(seen.body)["hostname"] == hostname
        # Each host's own reconciler puts it in its own DHCP server's reservations.
        line = f"{mac},{ip},{hostname}\n"
        for host in (through, other):
            _wait_for_reservation(host, line)
            latencies.append(
                f"{hostname} (via {through.name}) in {host.name}'s host files "
                f"{time.monotonic() - committed:.2f} s after the API answered"
            )
    with capsys.disabled():
        print("\n" + "\n".join(latencies))


@slow
def test_a_boot_token_from_one_brain_completes_on_the_other(brains: dict[str, Host]) -> None:
    a, b = brains["boot-a"], brains["boot-b"]
    installer = {
        "name": "installer",
        "kind": "linux",
        "kernel": "{{ assets }}/vmlinuz",
        "cmdline": "console=ttyS0 bootbrain.done=${IPXE_BOOT_DONE_URL}",
        "complete_state": "deployed",
    }
    assert a.api("POST", "/profiles", installer).status == 201
    mac = "52:54:00:f1:ee:10"
    made = b.api("POST", "/machines", {"hostname": "node-boot", "nics": [{"mac": mac}]})
    assert made.status == 201, made
    mid = json.loads(made.body)["id"]
    assert a.api("PUT", f"/machines/{mid}/next-boot", {"profile": "installer"}).status == 200
    # The machine boots through host A's nginx, as iPXE would ask...
    script = harness.http_get(
        f"{a.base}/ipxe?mac={mac.replace(':', '-')}&buildarch=x86_64&platform=efi",
        headers={"User-Agent": "iPXE/1.0.0+git"},
    )
    assert script.status == 200, script
    done = re.search(r"^set IPXE_BOOT_DONE_URL (\S+)$", script.body.decode(), re.M)
    assert done and done.group(1).startswith(f"{a.base}/boot/"), script.body.decode()
    token = done.group(1).split("/boot/")[1].split("/")[0]
    # ...and its installer reaches host B (A is down, or behind another address).
    deadline = time.monotonic() + 10  # the boot record is written in a batch
    while (meta := harness.http_get(f"{b.base}/boot/{token}/meta-data")).status != 200:
        assert time.monotonic() < deadline, meta
        time.sleep(0.2)
    completed = harness.http_request(
        "POST", f"{b.base}/boot/{token}/done", form={"hostname": "node-boot"}
    )
    assert completed.status == 200, completed
    machine = json.loads(a.api("GET", f"/machines/{mid}").body)
    assert machine["state"] == "deployed" and machine["next_boot"] is None, machine
