"""Kea at fleet scale, against the real kea-dhcp4 and PostgreSQL: the host backend
and a hot-standby pair.

A fresh database gets Kea's own schema from ``kea-admin db-init pgsql`` and is dropped
afterwards. The reconciler keeps its ``hosts`` table equal to the inventory; a
kea-dhcp4 in a network namespace, configured by ``render_config`` in
``host-database`` mode, answers a busybox udhcpc client with the reserved address
after an API change, after a second brain's change and not after a deletion, and is
never reloaded. Kea reaches PostgreSQL through a unix socket forwarded to its TCP
port (libpq's socket-directory form of the URL), so no link joins the namespaces to
the host. The HA pair: two kea-dhcp4, each with its kea-ctrl-agent, in two
namespaces on one bridge; the primary is killed and the client still gets its
reservation, from the standby.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bootbrain.app import create_app
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.integrations.kea import (
    command,
    render_config,
    render_ctrl_agent,
    render_json,
    validate_config,
)
from bootbrain.integrations.reconcile import Reconciler, reconcile_once
from bootbrain.inventory import kea_hosts
from bootbrain.inventory.keahosts import dispose
from tests.conftest import (
    Api,
    _truncate,
    kea_schema_database,
    make_settings,
    make_token,
    pg_url,
)
from tests.e2e.lab.pgsocket import PgSocket

from .conftest import CLIENT_IF, SERVER_IF, SERVER_IP, DhcpLab, _ip

HOOKS = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")
MAC_A = "52:54:00:dd:00:0a"
MAC_B = "52:54:00:dd:00:0b"
PEER_IP = "10.231.0.2"


def require_kea(*more: str) -> None:
    DhcpLab.require("kea-dhcp4", "kea-admin", *more)
    if not (HOOKS / "libdhcp_ha.so").exists():
        pytest.skip(f"Kea's HA hook is not in {HOOKS}")


#: The forwarder behind each Kea hosts database URL the fixture made.
FORWARDS: dict[str, PgSocket] = {}


@pytest.fixture
def kea_database() -> Iterator[str]:
    """A fresh database with Kea's schema; its libpq URL through a unix socket."""
    require_kea()
    forward = PgSocket.for_url(pg_url())
    try:
        with kea_schema_database(pg_url(), forward.url) as url:
            FORWARDS[url] = forward
            try:
                yield url
            finally:
                del FORWARDS[url]
    finally:
        forward.close()


@pytest.fixture
def inventory_url(pg_schema: str) -> str:
    _truncate(pg_schema)
    return pg_schema


def kea_settings(
    inventory: str, tmp: Path, hosts_url: str, name: str = "a", **kea: Any
) -> Settings:
    d = tmp / name
    (d / "data").mkdir(parents=True, exist_ok=True)
    return make_settings(
        inventory,
        d,
        dhcp="kea",
        public_url=f"http://{SERVER_IP}:8080",
        kea={
            "interface": SERVER_IF,
            "subnet": "10.231.0.0/24",
            "pool_start": "10.231.0.100",
            "pool_end": "10.231.0.150",
            "server_ip": SERVER_IP,
            "config_path": str(d / "kea-dhcp4.conf"),
            "control_socket": str(d / "kea4.sock"),
            "lease_file": str(d / "leases4.csv"),
            "hook_library_dir": str(HOOKS),
            "hook_script": None,
            "log_output": str(d / "kea.log"),
            "mode": "host-database",
            "hosts_database_url": hosts_url,
            **kea,
        },
    )


def start_kea(lab: DhcpLab, settings: Settings, ns: str) -> subprocess.Popen[Any]:
    k = settings.kea
    k.config_path.write_text(render_json(render_config(settings, settings.public_url, [])))
    run = k.config_path.parent
    env = {**os.environ, "KEA_PIDFILE_DIR": str(run), "KEA_LOCKFILE_DIR": str(run)}
    out = (run / "kea.out").open("ab")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "kea-dhcp4", "-c", str(k.config_path)],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip
    out.close()
    lab.procs.append(proc)
    assert DhcpLab.wait_for(lambda: k.control_socket.exists(), timeout=15), kea_output(settings)
    return proc


def kea_output(settings: Settings) -> str:
    d = settings.kea.config_path.parent
    return "\n".join(p.read_text()[-3000:] for p in (d / "kea.out", d / "kea.log") if p.exists())


def _brain(settings: Settings, name: str) -> tuple[Flask, Api]:
    app = create_app(settings)
    app.testing = True
    return app, Api(app.test_client(), make_token(app, name, "write"))


@contextlib.contextmanager
def reconciler(settings: Settings) -> Iterator[Reconciler]:
    db = Database(settings.database_url)
    r = Reconciler(settings, db)
    stop = threading.Event()
    t = threading.Thread(target=r.run, args=(stop.is_set,), daemon=True)
    t.start()
    try:
        yield r
    finally:
        stop.set()
        t.join(timeout=10)
        db.dispose()


def until_offered(lab: DhcpLab, mac: str, ip: str, timeout: float = 20) -> dict[str, str]:
    """The first offer of ``ip`` to ``mac`` (asking again until it comes)."""
    deadline = time.monotonic() + timeout
    got = lab.dhcp(mac, attempts=2)
    while (got is None or got.get("ip") != ip) and time.monotonic() < deadline:
        time.sleep(0.1)
        got = lab.dhcp(mac, attempts=2)
    assert got is not None and got.get("ip") == ip, got
    return got


def test_rendered_document_passes_kea_dhcp4_t(
    dhcp_lab: DhcpLab, inventory_url: str, kea_database: str
) -> None:
    settings = kea_settings(inventory_url, dhcp_lab.workdir, kea_database)
    document = render_config(settings, settings.public_url, [])["Dhcp4"]
    assert document["hosts-database"]["type"] == "postgresql"
    assert "reservations" not in document["subnet4"][0]
    validate_config({"Dhcp4": document}, netns=dhcp_lab.server_ns)


def test_reservations_reach_kea_through_its_hosts_table(
    dhcp_lab: DhcpLab, inventory_url: str, kea_database: str, tmp_path: Path
) -> None:
    lab = dhcp_lab
    s = kea_settings(inventory_url, tmp_path, kea_database)
    kea = start_kea(lab, s, lab.server_ns)
    config = s.kea.config_path.read_text()
    before = lab.dhcp(MAC_A)
    assert before is not None and before["ip"].startswith("10.231.0.1"), kea_output(s)

    a_app, a = _brain(s, "admin-a")
    b_app, b = _brain(s.model_copy(update={"data_dir": tmp_path / "brain-b"}), "admin-b")
    try:
        with reconciler(s) as r:
            a.post("/networks", {"name": "lab", "cidr": "10.231.0.0/24"}, expect=201)
            assert DhcpLab.wait_for(lambda: r.passes >= 1, timeout=10)
            committed = time.monotonic()
            m = a.post(
                "/machines",
                {"hostname": "node-a", "nics": [{"mac": MAC_A}], "network": "lab",
                 "address": "10.231.0.50"},
                expect=201,
            ).json["id"]  # fmt: skip
            # Kea looks hosts up per packet: once the row is committed it answers with it.
            assert DhcpLab.wait_for(lambda: kea_hosts(kea_database, 1), timeout=10,
                                    interval=0.01)  # fmt: skip
            in_table = time.monotonic() - committed
            got = until_offered(lab, MAC_A, "10.231.0.50")
            answered = time.monotonic() - committed
            assert got.get("hostname") == "node-a"
            # brain B, same inventory: the change reaches the same table
            b.patch(f"/machines/{m}", {"address": "10.231.0.51"}, expect=200)
            until_offered(lab, MAC_A, "10.231.0.51")
            assert {h.ip for h in kea_hosts(kea_database, 1).values()} == {"10.231.0.51"}
            a.delete(f"/machines/{m}", expect=204)
            assert DhcpLab.wait_for(lambda: not kea_hosts(kea_database, 1), timeout=10)
            after = lab.dhcp(MAC_A)
            assert after is not None and after["ip"] != "10.231.0.51", after
        print(f"committed -> in Kea's table {in_table:.3f} s, "
              f"-> offered to a client {answered:.2f} s")  # fmt: skip
        # nothing was reloaded: the same process, the same file, configured once
        assert kea.poll() is None
        assert s.kea.config_path.read_text() == config
        log = (s.kea.config_path.parent / "kea.log").read_text()
        assert log.count("DHCP4_CONFIG_COMPLETE") == 1, log[-3000:]
    finally:
        for app in (a_app, b_app):
            app.extensions["bootbrain"].events.close()
            app.extensions["bootbrain"].db.dispose()


def test_kea_serves_its_pool_while_the_hosts_database_is_away(
    dhcp_lab: DhcpLab, inventory_url: str, kea_database: str, tmp_path: Path
) -> None:
    """Kea keeps answering (pool addresses) without its hosts database, reconnects by
    itself, and then answers with the reservations again; nothing restarts it."""
    lab = dhcp_lab
    s = kea_settings(inventory_url, tmp_path, kea_database)
    app, api = _brain(s, "admin")
    try:
        api.post("/networks", {"name": "lab", "cidr": "10.231.0.0/24"}, expect=201)
        api.post(
            "/machines",
            {"hostname": "node-a", "nics": [{"mac": MAC_A}], "network": "lab",
             "address": "10.231.0.70"},
            expect=201,
        )  # fmt: skip
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()
    db = Database(s.database_url)
    assert reconcile_once(s, db).changed
    kea = start_kea(lab, s, lab.server_ns)
    until_offered(lab, MAC_A, "10.231.0.70")

    FORWARDS[kea_database].cut()
    dispose(kea_database)
    with pytest.raises(Exception, match=r"(?i)connect|socket|server"):
        reconcile_once(s, db)  # the reconciler's pass fails, and says why
    away = lab.dhcp(MAC_B)
    assert away is not None and away["ip"].startswith("10.231.0.1"), kea_output(s)
    assert kea.poll() is None, kea_output(s)
    log = s.kea.config_path.parent / "kea.log"
    assert "DHCP4_DB_RECONNECT_LOST_CONNECTION" in log.read_text(), kea_output(s)

    FORWARDS[kea_database].restore()
    until_offered(lab, MAC_A, "10.231.0.70", timeout=30)
    assert kea.poll() is None
    assert "DHCP4_DB_RECONNECT_SUCCEEDED" in log.read_text(), kea_output(s)
    db.dispose()


def test_several_reconcilers_writing_at_once_are_harmless(
    inventory_url: str, kea_database: str, tmp_path: Path
) -> None:
    s = kea_settings(inventory_url, tmp_path, kea_database)
    app, api = _brain(s, "admin")
    try:
        api.post("/networks", {"name": "lab", "cidr": "10.231.0.0/24"}, expect=201)
        for i in range(20):
            api.post(
                "/machines",
                {"hostname": f"n{i}", "nics": [{"mac": f"52:54:00:ee:00:{i:02x}"}],
                 "network": "lab", "address": f"10.231.0.{10 + i}"},
                expect=201,
            )  # fmt: skip
        # an address swap, which Kea's unique key would refuse if updated in place
        api.patch("/machines/1", {"address": "10.231.0.99"}, expect=200)
        api.patch("/machines/2", {"address": "10.231.0.10"}, expect=200)
        api.patch("/machines/1", {"address": "10.231.0.11"}, expect=200)
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()
    hosts = [kea_settings(inventory_url, tmp_path, kea_database, name=f"h{i}") for i in range(4)]
    dbs = [Database(h.database_url) for h in hosts]
    errors: list[BaseException] = []

    def one(h: Settings, db: Database) -> None:
        try:
            reconcile_once(h, db)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(h, db)) for h, db in zip(hosts, dbs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    table = kea_hosts(kea_database, 1)
    assert len(table) == 20
    assert table["52:54:00:ee:00:00"].ip == "10.231.0.11"
    assert table["52:54:00:ee:00:01"].ip == "10.231.0.10"
    again = reconcile_once(hosts[0], dbs[0])
    assert not again.changed and again.detail == "host-database"
    for db in dbs:
        db.dispose()


# --- the hot-standby pair ----------------------------------------------------------------


class HaLab(DhcpLab):
    """Two server namespaces and the client's, on one bridge in the client's namespace."""

    def create(self) -> None:
        self.peer_ns = self.server_ns.removesuffix("-s") + "-p"
        for ns in (self.server_ns, self.peer_ns, self.client_ns):
            _ip("netns", "add", ns)
            self._created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        c = self.client_ns
        _ip("-n", c, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        _ip("-n", c, "link", "add", CLIENT_IF, "type", "veth", "peer", "name", "pc")
        for ns, port, ip in ((self.server_ns, "pa", SERVER_IP), (self.peer_ns, "pb", PEER_IP)):
            _ip("link", "add", SERVER_IF, "netns", ns, "type", "veth", "peer", "name", port,
                "netns", c)  # fmt: skip
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", SERVER_IF)
            _ip("-n", ns, "link", "set", SERVER_IF, "up")
        for port in ("pa", "pb", "pc"):
            _ip("-n", c, "link", "set", port, "master", "br0")
            _ip("-n", c, "link", "set", port, "up")
        _ip("-n", c, "link", "set", "br0", "up")
        _ip("-n", c, "link", "set", CLIENT_IF, "up")


@pytest.fixture
def ha_lab(tmp_path: Path) -> Iterator[HaLab]:
    require_kea("kea-ctrl-agent", "busybox")
    lab = HaLab(tmp_path)
    try:
        lab.create()
        yield lab
    finally:
        lab.destroy()


def ha_state(settings: Settings) -> str:
    try:
        answer = command(settings.kea.control_socket, "ha-heartbeat", timeout=2, check=False)
    except OSError:
        return "unreachable"
    return str((answer.get("arguments") or {}).get("state", answer.get("text", "")))


def test_hot_standby_pair_serves_when_the_primary_dies(
    ha_lab: HaLab, inventory_url: str, kea_database: str, tmp_path: Path
) -> None:
    lab = ha_lab
    ha = {
        "heartbeat_delay": 500,
        "max_response_delay": 1500,
        "max_ack_delay": 500,
        "max_unacked_clients": 0,
        "peers": [
            {"name": "a", "url": f"http://{SERVER_IP}:8001/", "role": "primary"},
            {"name": "b", "url": f"http://{PEER_IP}:8001/", "role": "standby"},
        ],
    }
    servers = {
        name: kea_settings(
            inventory_url, tmp_path, kea_database, name=name, ha={**ha, "this_server": name}
        )
        for name in ("a", "b")
    }
    b_doc = render_config(servers["b"], servers["b"].public_url, [])
    validate_config(b_doc, netns=lab.peer_ns)
    procs: dict[str, subprocess.Popen[Any]] = {}
    for name, ns in (("a", lab.server_ns), ("b", lab.peer_ns)):
        s = servers[name]
        ca = s.kea.config_path.with_name("kea-ctrl-agent.conf")
        ca.write_text(json.dumps(render_ctrl_agent(s)))
        d = str(ca.parent)
        env = {**os.environ, "KEA_PIDFILE_DIR": d, "KEA_LOCKFILE_DIR": d}
        log = (ca.parent / "ca.out").open("ab")
        lab.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, "kea-ctrl-agent", "-c", str(ca)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))  # fmt: skip
        log.close()
        procs[name] = start_kea(lab, s, ns)
    a, b = servers["a"], servers["b"]
    assert DhcpLab.wait_for(
        lambda: ha_state(a) == "hot-standby" and ha_state(b) == "hot-standby", timeout=30
    ), (ha_state(a), ha_state(b), kea_output(a), kea_output(b))

    app, api = _brain(a, "admin")
    try:
        api.post("/networks", {"name": "lab", "cidr": "10.231.0.0/24"}, expect=201)
        api.post(
            "/machines",
            {"hostname": "node-b", "nics": [{"mac": MAC_B}], "network": "lab",
             "address": "10.231.0.60"},
            expect=201,
        )  # fmt: skip
    finally:
        app.extensions["bootbrain"].events.close()
        app.extensions["bootbrain"].db.dispose()
    db = Database(a.database_url)
    reconcile_once(a, db)  # host A's reconciler; B's would find nothing to change
    db.dispose()
    first = until_offered(lab, MAC_B, "10.231.0.60")
    assert first.get("serverid") == SERVER_IP, first

    os.killpg(procs["a"].pid, signal.SIGKILL)
    procs["a"].wait(10)
    started = time.monotonic()
    assert DhcpLab.wait_for(lambda: ha_state(b) == "partner-down", timeout=30), (
        ha_state(b), kea_output(b))  # fmt: skip
    second = until_offered(lab, MAC_B, "10.231.0.60")
    print(f"primary killed -> standby serving: {time.monotonic() - started:.1f} s")
    assert second.get("serverid") == PEER_IP, second
