"""The reconciler keeps this host's DHCP reservations equal to the inventory,
whoever changed it and however (fleet issue, part 1): two brains' APIs, the CLI's
path into the inventory, an operator's SQL; a hand-damaged host file heals; and
``bootbrain serve`` runs it. Both databases: on PostgreSQL the wake-up is a NOTIFY,
on SQLite a poll of the change counter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import text

from bootbrain import inventory, schemas
from bootbrain.app import create_app
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.integrations.reconcile import Reconciler, reconcile_once
from tests.api.serving import bootbrain_env, start_serve
from tests.conftest import Api, make_settings, make_token

MAC1, MAC2, MAC3 = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"


@pytest.fixture
def dnsmasq_settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path, dhcp="dnsmasq")


@pytest.fixture
def running(dnsmasq_settings: Settings) -> Iterator[Reconciler]:
    db = Database(dnsmasq_settings.database_url)
    r = Reconciler(dnsmasq_settings, db)
    stop = threading.Event()
    t = threading.Thread(target=r.run, args=(stop.is_set,), daemon=True)
    t.start()
    try:
        yield r
    finally:
        stop.set()
        t.join(timeout=10)
        db.dispose()


def _brain(settings: Settings, name: str = "admin") -> tuple[Flask, Api]:
    app = create_app(settings)
    app.testing = True
    return app, Api(app.test_client(), make_token(app, name, "write"))


def _hosts(settings: Settings) -> dict[str, str]:
    d = settings.dnsmasq.hostsdir
    assert d is not None
    if not d.exists():
        return {}
    return {p.name: p.read_text() for p in sorted(d.glob("machine-*.hosts"))}


def _until(settings: Settings, want: dict[str, str], timeout: float = 10.0) -> float:
    """Seconds until the host files are ``want``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _hosts(settings) == want:
            return time.monotonic() - start
        time.sleep(0.05)
    assert _hosts(settings) == want
    return timeout


def test_changes_from_anywhere_reach_dhcp(
    dnsmasq_settings: Settings, running: Reconciler, tmp_path: Path
) -> None:
    s = dnsmasq_settings
    a_app, a = _brain(s)
    b_settings = s.model_copy(update={"data_dir": tmp_path / "brain-b"})
    b_app, b = _brain(b_settings, "admin-b")
    try:
        a.post("/networks", {"name": "rack1", "cidr": "10.20.0.0/24"}, expect=201)
        m1 = a.post(
            "/machines",
            {"hostname": "node-01", "nics": [{"mac": MAC1}], "network": "rack1",
             "address": "10.20.0.50"},
            expect=201,
        ).json["id"]  # fmt: skip
        waited = [_until(s, {f"machine-{m1}.hosts": f"{MAC1},10.20.0.50,node-01\n"})]
        # brain B's API, same database
        m2 = b.post(
            "/machines",
            {"hostname": "node-02", "nics": [{"mac": MAC2}], "network": "rack1",
             "address": "10.20.0.51"},
            expect=201,
        ).json["id"]  # fmt: skip
        both = {
            f"machine-{m1}.hosts": f"{MAC1},10.20.0.50,node-01\n",
            f"machine-{m2}.hosts": f"{MAC2},10.20.0.51,node-02\n",
        }
        waited.append(_until(s, both))
        # the CLI's path: the inventory's functions, no web process at all
        db = Database(s.database_url)
        inventory.update_machine(db, m2, schemas.MachineUpdate(hostname="node-22"), None, "cli")
        both[f"machine-{m2}.hosts"] = f"{MAC2},10.20.0.51,node-22\n"
        waited.append(_until(s, both))
        # an operator's SQL fix
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE machine SET address = '10.20.0.60' WHERE id = :i"), {"i": m1})
        both[f"machine-{m1}.hosts"] = f"{MAC1},10.20.0.60,node-01\n"
        waited.append(_until(s, both))
        with db.engine.begin() as conn:
            conn.execute(
                text("UPDATE nic SET mac = :m WHERE machine_id = :i"), {"m": MAC3, "i": m1}
            )
        both[f"machine-{m1}.hosts"] = f"{MAC3},10.20.0.60,node-01\n"
        waited.append(_until(s, both))
        b.delete(f"/machines/{m2}", expect=204)
        del both[f"machine-{m2}.hosts"]
        waited.append(_until(s, both))
        db.dispose()
        print(f"change to host file: {', '.join(f'{w:.2f}' for w in waited)} s")
        # Boots (last-seen updates) are not reservation changes: no pass for them.
        passes = running.passes
        for _ in range(5):
            a_app.test_client().get(f"/ipxe?mac={MAC3}")
        a_app.extensions["bootbrain"].events.flush()
        time.sleep(1.5)
        assert running.passes == passes
    finally:
        for app in (a_app, b_app):
            app.extensions["bootbrain"].events.close()
            app.extensions["bootbrain"].db.dispose()


def test_a_damaged_hostsdir_heals_on_the_next_pass(dnsmasq_settings: Settings) -> None:
    """What a crash half-way through, or a hand edit, leaves is put right by a full
    pass, which runs whatever the version says."""
    s = dnsmasq_settings
    app, api = _brain(s)
    db = app.extensions["bootbrain"].db
    try:
        api.post("/networks", {"name": "rack1", "cidr": "10.20.0.0/24"}, expect=201)
        for i, mac in enumerate((MAC1, MAC2)):
            api.post(
                "/machines",
                {"hostname": f"node-{i}", "nics": [{"mac": mac}], "network": "rack1",
                 "address": f"10.20.0.{50 + i}"},
                expect=201,
            )  # fmt: skip
        r = Reconciler(s, db)
        assert r.step() is not None
        good = _hosts(s)
        assert len(good) == 2
        assert r.step() is None  # nothing moved, no full pass due: nothing done
        hostsdir = s.dnsmasq.hostsdir
        assert hostsdir is not None
        (hostsdir / "machine-1.hosts").write_text("52:54:00:ff:ff:ff,10.20.0.99,evil\n")
        (hostsdir / "machine-2.hosts").unlink()
        (hostsdir / "machine-7.hosts").write_text(f"{MAC3},10.20.0.77,gone\n")
        r._last_full = float("-inf")  # as when FULL_INTERVAL has passed
        assert r.step() is not None
        assert _hosts(s) == good
        assert reconcile_once(s, db).changed is False  # converged: nothing to write
    finally:
        app.extensions["bootbrain"].events.close()
        db.dispose()


def test_serve_runs_the_reconciler(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("one database is enough for the process wiring")
    env = bootbrain_env(db_url, tmp_path)
    env.update({"BOOTBRAIN_DHCP": "dnsmasq", "BOOTBRAIN_PUBLIC_URL": "http://10.20.0.1"})
    setup = create_app(make_settings(db_url, tmp_path, secret_key=env["BOOTBRAIN_SECRET_KEY"]))
    token = make_token(setup, "admin", "write")
    setup.extensions["bootbrain"].db.dispose()
    proc, base = start_serve(env, tmp_path / "gunicorn.log", "--workers", "1")
    hostsdir = tmp_path / "dnsmasq-hosts"
    try:
        auth = {"Authorization": f"Bearer {token}"}
        requests.post(f"{base}/api/v1/networks", json={"name": "rack1", "cidr": "10.20.0.0/24"},
                      headers=auth, timeout=10).raise_for_status()  # fmt: skip
        r = requests.post(
            f"{base}/api/v1/machines",
            json={"hostname": "node-01", "nics": [{"mac": MAC1}], "network": "rack1",
                  "address": "10.20.0.50"},
            headers=auth, timeout=10,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        want: Callable[[], bool] = lambda: (hostsdir / f"machine-{r.json()['id']}.hosts").exists()  # noqa: E731
        for _ in range(100):
            if want():
                break
            time.sleep(0.1)
        assert want(), (tmp_path / "gunicorn.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "reservations at version" in log
