"""Converge the role into a Debian 12 tree, converge again (nothing may change),
then start what it installed the way its units would and check real behaviour
through nginx. Bad variable combinations must stop the play before any change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ansible_harness as harness
import pytest

from tests.ports import free_port

pytestmark = [pytest.mark.ansible, pytest.mark.slow]

ASSET = "test/vmlinuz"
# An odd size, so a truncated or padded transfer cannot pass by accident.
ASSET_SIZE = 3 * 1024 * 1024 + 77


@dataclass
class Scenario:
    target: harness.Target
    inventory: Path
    vars_file: Path
    vars: dict[str, object]
    nginx_port: int
    gunicorn_port: int
    asset_sha256: str

    def converge(self, *args: str, extra: dict[str, object] | None = None) -> harness.PlaybookRun:
        vars_file = self.vars_file
        if extra:
            vars_file = self.target.work / f"vars-{len(list(self.target.work.glob('vars-*')))}.json"
            vars_file.write_text(json.dumps({**self.vars, **extra}, indent=2))
        return harness.run_playbook(self.inventory, vars_file, workdir=self.target.work, args=args)


@pytest.fixture(scope="module")
def scenario(target: harness.Target, wheelhouse: Path) -> Scenario:
    work = target.work
    asset = work / "vmlinuz"
    data = os.urandom(ASSET_SIZE)
    asset.write_bytes(data)
    nginx_port, gunicorn_port = free_port(), free_port()
    while gunicorn_port == nginx_port:
        gunicorn_port = free_port()
    variables: dict[str, object] = {
        "bootbrain_install_source": "checkout",
        "bootbrain_checkout_path": str(harness.snapshot_checkout(work / "checkout")),
        "bootbrain_pip_wheelhouse": str(wheelhouse),
        "bootbrain_server_ip": "127.0.0.1",
        "bootbrain_nginx_port": nginx_port,
        # Loopback only: the tree shares this machine's network.
        "bootbrain_nginx_listen": [f"127.0.0.1:{nginx_port}"],
        "bootbrain_gunicorn_bind": f"127.0.0.1:{gunicorn_port}",
        "bootbrain_dhcp_server": "dnsmasq",
        "bootbrain_dnsmasq_mode": "dhcp",
        "bootbrain_dhcp_interface": "lo",
        "bootbrain_dhcp_range_start": "127.0.0.100",
        "bootbrain_dhcp_range_end": "127.0.0.199",
        "bootbrain_dhcp_netmask": "255.0.0.0",
        "bootbrain_assets": [{"dest": ASSET, "src": str(asset)}],
    }
    inventory = work / "inventory.json"
    harness.write_inventory(inventory, target.root)
    vars_file = work / "vars.json"
    vars_file.write_text(json.dumps(variables, indent=2))
    return Scenario(
        target,
        inventory,
        vars_file,
        variables,
        nginx_port,
        gunicorn_port,
        hashlib.sha256(data).hexdigest(),
    )


@pytest.fixture(scope="module")
def first_converge(scenario: Scenario, timings: list[tuple[str, float]]) -> harness.PlaybookRun:
    run = scenario.converge()
    timings.append(("first converge", run.seconds))
    (scenario.target.work / "converge-1.log").write_text(run.output)
    scenario.target.harvest_apt_archives()
    if run.returncode != 0:
        pytest.fail(f"first converge failed (rc={run.returncode}):\n{run.tail(80)}")
    return run


@pytest.fixture(scope="module")
def second_converge(
    scenario: Scenario, first_converge: harness.PlaybookRun, timings: list[tuple[str, float]]
) -> harness.PlaybookRun:
    token_file = scenario.target.path("/etc/bootbrain/api-token")
    token_before = token_file.read_bytes() if token_file.exists() else None
    run = scenario.converge()
    timings.append(("second converge", run.seconds))
    (scenario.target.work / "converge-2.log").write_text(run.output)
    if run.returncode != 0:
        pytest.fail(f"second converge failed (rc={run.returncode}):\n{run.tail(80)}")
    assert token_file.read_bytes() == token_before, "the second converge replaced the API token"
    return run


def test_first_converge(first_converge: harness.PlaybookRun) -> None:
    recap = first_converge.recap()
    assert recap.get("failed") == 0 and recap.get("unreachable") == 0, first_converge.tail()
    assert recap.get("changed", 0) > 0, first_converge.tail()


def test_second_converge_changes_nothing(second_converge: harness.PlaybookRun) -> None:
    recap = second_converge.recap()
    assert recap.get("failed") == 0, second_converge.tail()
    changed = second_converge.changed_tasks()
    assert recap.get("changed") == 0, f"changed: {changed}\n{second_converge.tail()}"


def test_files_have_safe_owners_and_modes(
    scenario: Scenario, first_converge: harness.PlaybookRun
) -> None:
    tgt = scenario.target
    uid, gid, _ = tgt._ids("bootbrain", None)
    expected = {
        "/etc/bootbrain/bootbrain.toml": (0, gid, 0o640),
        "/etc/bootbrain/api-token": (0, 0, 0o600),
        "/etc/bootbrain/secret_key": (0, 0, 0o600),
        "/etc/bootbrain/leasehook-token": (0, gid, 0o640),
        "/etc/bootbrain/leasehook.conf": (0, gid, 0o640),
        "/var/lib/bootbrain": (uid, gid, 0o711),
        "/var/lib/bootbrain/spool": (uid, gid, 0o2770),
    }
    for path, (owner, group, mode) in expected.items():
        st = tgt.path(path).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (owner, group, mode), path
    tokens = [
        tgt.path(f"/etc/bootbrain/{f}").read_text().strip()
        for f in ("api-token", "leasehook-token")
    ]
    for token in tokens:
        assert len(token) >= 16 and not re.search(r"\s", token)
    assert tokens[0] != tokens[1], "the lease hook must have a token of its own"
    hook_conf = tgt.path("/etc/bootbrain/leasehook.conf").read_text()
    assert "token_file=/etc/bootbrain/leasehook-token" in hook_conf, hook_conf
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
        assert tgt.path(f"/srv/bootbrain/tftp/{name}").stat().st_size > 0, name


def test_dnsmasq_accepts_the_deployed_configuration(
    scenario: Scenario, second_converge: harness.PlaybookRun
) -> None:
    """Run the unit's ExecStartPre (dnsmasq --test) on what the role deployed."""
    tgt = scenario.target
    unit = harness.parse_unit(tgt.path("/etc/systemd/system/bootbrain-dnsmasq.service").read_text())
    checks = [argv for argv in unit.exec_start_pre if "--test" in argv]
    assert checks, "bootbrain-dnsmasq.service has no dnsmasq --test ExecStartPre"
    for argv in checks:
        result = tgt.run(argv)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "syntax check OK" in result.stdout + result.stderr
    config = tgt.path("/etc/bootbrain/dnsmasq.conf").read_text()
    assert "interface=lo" in config.replace(" ", ""), config
    # dnsmasq drops to bootbrain's user, so bootbrain may SIGHUP it after a change.
    assert "user=bootbrain" in config.splitlines(), config
    for script in re.findall(r"^dhcp-script=(\S+)", config, re.M):
        path = tgt.path(script)
        assert path.is_file() and os.access(path, os.X_OK), f"lease hook {script} is not executable"


def test_prune_timer_runs_prune_as_its_unit_says(
    scenario: Scenario, second_converge: harness.PlaybookRun
) -> None:
    """The timer is daily, and its service's command works as the service's user on
    the inventory the role set up."""
    tgt = scenario.target
    timer = tgt.path("/etc/systemd/system/bootbrain-prune.timer").read_text()
    assert re.search(r"^OnCalendar=daily$", timer, re.M), timer
    assert re.search(r"^WantedBy=timers\.target$", timer, re.M), timer
    unit = harness.parse_unit(tgt.path("/etc/systemd/system/bootbrain-prune.service").read_text())
    assert unit.user == "bootbrain"
    assert unit.exec_start[-1] == "prune", unit.exec_start
    result = tgt.run(["runuser", "-u", unit.user, "--", *unit.exec_start], env=unit.environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deleted 0 event(s) (older than 180 days)" in result.stdout, result.stdout
    assert "deleted 0 boot record(s) (older than 30 days)" in result.stdout, result.stdout


def test_services_answer_through_nginx(
    scenario: Scenario, second_converge: harness.PlaybookRun, timings: list[tuple[str, float]]
) -> None:
    """Start gunicorn and nginx as their units would, and talk to nginx only."""
    tgt = scenario.target
    started = time.monotonic()
    try:
        _check_through_nginx(scenario)
    finally:
        tgt.stop_all()
        timings.append(("verify (start gunicorn + nginx, HTTP checks)", time.monotonic() - started))


def _start_gunicorn(scenario: Scenario, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """gunicorn, exactly as bootbrain.service describes it, answering /healthz."""
    tgt = scenario.target
    unit = harness.parse_unit(tgt.path("/etc/systemd/system/bootbrain.service").read_text())
    assert unit.user == "bootbrain"
    # bootbrain_gunicorn_workers is left at 0: serve picks one worker per CPU itself.
    assert "--workers" not in unit.exec_start, unit.exec_start
    log = tgt.work / log_name
    return harness.start_bootbrain(tgt, scenario.gunicorn_port, log), log


def _check_through_nginx(scenario: Scenario) -> None:
    tgt = scenario.target
    work = tgt.work
    gunicorn, gunicorn_log = _start_gunicorn(scenario, "gunicorn.log")

    nginx_log = work / "nginx.log"
    nginx = harness.start_nginx(tgt, nginx_log)
    base = f"http://127.0.0.1:{scenario.nginx_port}"

    health = harness.wait_for_http(f"{base}/healthz", nginx, nginx_log)
    assert health.status == 200, (health, harness._tail(gunicorn_log))

    boot = harness.http_get(f"{base}/boot.ipxe")
    assert boot.status == 200, boot
    assert boot.body.startswith(b"#!ipxe\n"), boot.body[:200]

    asset = harness.http_get(f"{base}/assets/{ASSET}", timeout=30)
    assert asset.status == 200, asset.status
    assert int(asset.headers["content-length"]) == ASSET_SIZE
    assert len(asset.body) == ASSET_SIZE
    assert hashlib.sha256(asset.body).hexdigest() == scenario.asset_sha256
    # Served by nginx from disk, not proxied to gunicorn.
    access = tgt.path("/var/log/nginx/bootbrain.access.log").read_text()
    assert f"/assets/{ASSET}" in access
    assert f"/assets/{ASSET}" not in gunicorn_log.read_text()
    # ...and written to the assets log the boot funnel ingests (bootbrain boots ingest).
    assets_log = tgt.path("/var/log/nginx/bootbrain-assets.json").read_text()
    assert f'"uri":"/assets/{ASSET}","status":"200","bytes":"{ASSET_SIZE}"' in assets_log
    # A per-boot token in a path never reaches nginx's access log.
    refused = harness.http_get(f"{base}/boot/tok3n-n0t-for-logs/meta-data")
    assert refused.status == 403, refused
    # nginx writes a proxied request's line once it has finished it: maybe after we read.
    deadline = time.monotonic() + 10
    while "GET /boot/<token>/meta-data " not in (
        access := tgt.path("/var/log/nginx/bootbrain.access.log").read_text()
    ):
        assert time.monotonic() < deadline, access[-2000:]
        time.sleep(0.2)
    assert "tok3n-n0t-for-logs" not in access

    # The API token the role kept works through nginx; no token, no answer.
    token = tgt.path("/etc/bootbrain/api-token").read_text().strip()
    assert harness.http_get(f"{base}/api/v1/tokens").status == 401
    tokens = harness.http_get(f"{base}/api/v1/tokens", headers={"Authorization": f"Bearer {token}"})
    assert tokens.status == 200, tokens
    scopes = {t["name"]: t["scope"] for t in json.loads(tokens.body)["items"]}
    assert [s for n, s in scopes.items() if n.startswith("ansible-target-")] == ["write"], scopes
    # The hook's token posts lease events and nothing else.
    assert [s for n, s in scopes.items() if n.startswith("leasehook-target-")] == ["lease"], scopes
    hook_token = tgt.path("/etc/bootbrain/leasehook-token").read_text().strip()
    as_hook = {"Authorization": f"Bearer {hook_token}"}
    assert harness.http_get(f"{base}/api/v1/tokens", headers=as_hook).status == 403

    # A lease event, delivered the way dnsmasq would run the installed hook: as
    # root, with dnsmasq's variables, through nginx, with the hook's own token.
    # (The hook ignores loopback addresses, hence not one of the range on lo.)
    config = tgt.path("/etc/bootbrain/dnsmasq.conf").read_text()
    hook = re.search(r"^dhcp-script=(\S+)", config, re.M)
    assert hook, "no dhcp-script in the deployed dnsmasq configuration"
    mac = "52:54:00:a1:b2:c3"
    event = tgt.run(
        [hook.group(1), "add", mac, "10.99.0.150", "node-a"],
        env={
            "DNSMASQ_INTERFACE": "lo",
            "DNSMASQ_USER_CLASS0": "iPXE",
            "DNSMASQ_VENDOR_CLASS": "PXEClient:Arch:00007:UNDI:003016",
        },
    )
    assert event.returncode == 0, event.stdout + event.stderr
    spooled = [p.name for p in tgt.path("/var/lib/bootbrain/spool").iterdir() if p.is_file()]
    assert not [n for n in spooled if not n.startswith(".")], (spooled, event.stderr)
    events = harness.http_get(f"{base}/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    assert events.status == 200, events
    assert mac in events.body.decode(), (events.body[:2000], event.stderr)

    assert gunicorn.poll() is None and nginx.poll() is None


BAD_INPUT = [
    pytest.param(
        {
            "bootbrain_dhcp_server": "kea",
            "bootbrain_dnsmasq_mode": "proxy",
            "bootbrain_kea_subnet": "127.0.0.0/8",
            "bootbrain_kea_pool_start": "127.0.0.100",
            "bootbrain_kea_pool_end": "127.0.0.199",
        },
        "bootbrain_dnsmasq_mode",
        id="kea-with-proxydhcp",
    ),
    pytest.param(
        {
            "bootbrain_database_url": "postgresql+psycopg://bootbrain:S3cr3t-pw-7x@db.example.net:port/x"
        },
        "bootbrain_database_url",
        id="unparsable-postgresql-url",
    ),
    pytest.param(
        {"bootbrain_dhcp_interface": "provision9"},
        "bootbrain_dhcp_interface",
        id="missing-interface",
    ),
    pytest.param(
        {"bootbrain_dhcp_server": "isc-dhcpd"}, "bootbrain_dhcp_server", id="unknown-dhcp-server"
    ),
    pytest.param({"bootbrain_server_ip": ""}, "bootbrain_server_ip", id="missing-server-ip"),
]


@pytest.mark.parametrize(("override", "variable"), BAD_INPUT)
def test_bad_input_stops_before_any_change(
    scenario: Scenario,
    second_converge: harness.PlaybookRun,
    override: dict[str, object],
    variable: str,
) -> None:
    run = scenario.converge(extra=override)
    assert run.returncode != 0, run.tail()
    assert variable in run.output, run.tail()
    recap = run.recap()
    assert recap.get("changed", 0) == 0 and recap.get("failed") == 1, run.tail()
    if variable == "bootbrain_database_url":
        assert "S3cr3t-pw-7x" not in run.output, "the database password leaked into the output"


def test_switch_to_kea(
    scenario: Scenario, second_converge: harness.PlaybookRun, timings: list[tuple[str, float]]
) -> None:
    """Last: the same host converged again with Kea (+ tftpd-hpa) instead of dnsmasq,
    and bootbrain from a wheel file instead of the checkout."""
    build = subprocess.run(
        [
            sys.executable,
            str(harness.ANSIBLE_DIR / "roles/bootbrain/files/build-wheel.py"),
            str(scenario.vars["bootbrain_checkout_path"]),
            str(scenario.target.work / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    kea = {
        "bootbrain_install_source": "wheel",
        "bootbrain_wheel_path": build.stdout.splitlines()[-1],
        "bootbrain_dhcp_server": "kea",
        "bootbrain_kea_subnet": "127.0.0.0/8",
        "bootbrain_kea_pool_start": "127.0.0.100",
        "bootbrain_kea_pool_end": "127.0.0.199",
    }
    run = scenario.converge(extra=kea)
    scenario.vars.update(kea)  # the host stays on Kea for what follows
    timings.append(("converge switching dnsmasq to Kea", run.seconds))
    (scenario.target.work / "converge-kea.log").write_text(run.output)
    scenario.target.harvest_apt_archives()
    assert run.returncode == 0, run.tail(80)
    # The same bytes as the checkout build: the virtualenv is left alone.
    assert "bootbrain : Install the bootbrain wheel" not in run.changed_tasks(), run.tail(80)
    tgt = scenario.target
    check = tgt.run(["/usr/sbin/kea-dhcp4", "-t", "/etc/kea/kea-dhcp4.conf"])
    assert check.returncode == 0, check.stdout + check.stderr
    # (Read through the link's target: the link is absolute inside the tree.)
    config = json.loads(tgt.path("/var/lib/bootbrain/kea/kea-dhcp4.conf").read_text())
    assert config["Dhcp4"]["interfaces-config"]["interfaces"] == ["lo"], config
    scripts = [
        lib["parameters"]["name"]
        for lib in config["Dhcp4"].get("hooks-libraries", [])
        if lib["library"].endswith("libdhcp_run_script.so")
    ]
    assert scripts, "no run_script hook in the deployed Kea configuration"
    for script in scripts:
        assert os.access(tgt.path(script), os.X_OK), f"Kea's lease hook {script} is not executable"
    # Kea's path is a symlink into a directory bootbrain owns, so that bootbrain can
    # replace the file atomically when reservations change.
    link = tgt.path("/etc/kea/kea-dhcp4.conf")
    assert link.is_symlink() and os.readlink(link) == "/var/lib/bootbrain/kea/kea-dhcp4.conf"
    st = tgt.path("/var/lib/bootbrain/kea/kea-dhcp4.conf").stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_uid == tgt._ids("bootbrain", None)[0]
    tftpd = tgt.path("/etc/default/tftpd-hpa").read_text()
    assert 'TFTP_DIRECTORY="/srv/bootbrain/tftp"' in tftpd, tftpd
    kea_gid = int(
        next(
            line.split(":")[2]
            for line in tgt.path("/etc/group").read_text().splitlines()
            if line.startswith("_kea:")
        )
    )
    for path in ("/etc/bootbrain/leasehook-token", "/etc/bootbrain/leasehook.conf"):
        assert tgt.path(path).stat().st_gid == kea_gid, f"Kea's hook user cannot read {path}"


def test_kea_ha_member_on_a_hosts_database(
    scenario: Scenario, second_converge: harness.PlaybookRun, timings: list[tuple[str, float]]
) -> None:
    """After the Kea switch: the host made one member of a Kea hot-standby pair whose
    reservations are in Kea's PostgreSQL hosts table. The role creates Kea's schema in
    a database that has none, installs the control agent the partner talks to, and
    both daemons' checks accept what it deployed; the database URL never reaches the
    play's output."""
    from sqlalchemy import create_engine, text

    from bootbrain.inventory.keahosts import engine_url
    from tests.conftest import pg_url

    if scenario.vars.get("bootbrain_dhcp_server") != "kea":
        pytest.skip("runs on the host test_switch_to_kea left on Kea")
    base = pg_url()
    name = base.rsplit("/", 1)[1].replace("bootbrain_test", "bootbrain_ansible") + "_kea"
    kea_url = base.rsplit("/", 1)[0].replace("+psycopg", "") + "/" + name
    admin = create_engine(engine_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    tgt = scenario.target
    try:
        run = scenario.converge(
            extra={
                "bootbrain_kea_mode": "host-database",
                "bootbrain_kea_hosts_database_url": kea_url,
                "bootbrain_kea_ha_this_server": "kea-a",
                "bootbrain_kea_ha_peers": [
                    {"name": "kea-a", "url": "http://127.0.0.1:8001/", "role": "primary"},
                    {"name": "kea-b", "url": "http://127.0.0.2:8001/", "role": "standby"},
                ],
            }
        )
        timings.append(("converge to a Kea HA member on a hosts database", run.seconds))
        (tgt.work / "converge-kea-ha.log").write_text(run.output)
        assert run.returncode == 0, run.tail(80)
        assert kea_url not in run.output, "the hosts database URL is in the output"
        check = tgt.run(["/usr/sbin/kea-dhcp4", "-t", "/etc/kea/kea-dhcp4.conf"])
        assert check.returncode == 0, check.stdout + check.stderr
        d = json.loads(tgt.path("/var/lib/bootbrain/kea/kea-dhcp4.conf").read_text())["Dhcp4"]
        assert d["hosts-database"]["name"] == name and "reservations" not in d["subnet4"][0]
        (ha,) = [h for h in d["hooks-libraries"] if h["library"].endswith("libdhcp_ha.so")]
        (rel,) = ha["parameters"]["high-availability"]
        assert rel["this-server-name"] == "kea-a" and rel["mode"] == "hot-standby"
        agent = tgt.run(["/usr/sbin/kea-ctrl-agent", "-t", "/etc/kea/kea-ctrl-agent.conf"])
        assert agent.returncode == 0, agent.stdout + agent.stderr
        ca = json.loads(tgt.path("/etc/kea/kea-ctrl-agent.conf").read_text())["Control-agent"]
        assert (ca["http-host"], ca["http-port"]) == ("127.0.0.1", 8001)
        kea_db = create_engine(engine_url(kea_url))
        with kea_db.connect() as conn:
            assert conn.execute(text("SELECT version FROM schema_version")).scalar_one()
            assert conn.execute(text("SELECT count(*) FROM hosts")).scalar_one() == 0
        kea_db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_move_to_postgresql(
    scenario: Scenario, second_converge: harness.PlaybookRun, timings: list[tuple[str, float]]
) -> None:
    """After Kea: the same host moved from SQLite to PostgreSQL, as an operator who
    outgrows one boot host does. The schema is created there, and the kept token files,
    whose tokens the new inventory has never seen, are replaced by ones it knows."""
    from sqlalchemy import text

    from bootbrain.db import make_engine
    from tests.conftest import pg_url

    url = pg_url().replace("bootbrain_test", "bootbrain_ansible")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    tgt = scenario.target
    kept = {
        name: tgt.path(f"/etc/bootbrain/{name}").read_text()
        for name in ("api-token", "leasehook-token")
    }
    run = scenario.converge(extra={"bootbrain_database_url": url})
    timings.append(("converge moving to PostgreSQL", run.seconds))
    (tgt.work / "converge-postgresql.log").write_text(run.output)
    assert run.returncode == 0, run.tail(80)
    assert url not in run.output, "the database URL, password and all, is in the output"
    for name, before in kept.items():
        assert tgt.path(f"/etc/bootbrain/{name}").read_text() != before, f"{name} was kept"

    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        names = list(conn.execute(text("SELECT name FROM api_token")).scalars())
    engine.dispose()
    assert any(n.startswith("ansible-target-") for n in names), names
    assert any(n.startswith("leasehook-target-") for n in names), names

    gunicorn, log = _start_gunicorn(scenario, "gunicorn-postgresql.log")
    try:
        base = f"http://127.0.0.1:{scenario.gunicorn_port}"
        token = tgt.path("/etc/bootbrain/api-token").read_text().strip()
        tokens = harness.http_get(
            f"{base}/api/v1/tokens", headers={"Authorization": f"Bearer {token}"}
        )
        assert tokens.status == 200, (tokens, harness._tail(log))
        script = harness.http_get(f"{base}/ipxe?mac=52-54-00-a1-b2-c4&buildarch=x86_64")
        assert script.status == 200 and script.body.startswith(b"#!ipxe\n"), script
        assert b"inventory unavailable" not in script.body, script.body
        assert gunicorn.poll() is None
    finally:
        tgt.stop_all()
