"""What the dashboard tests share: logging a test client in through the login form, and
a small, realistic inventory (with one stuck machine) to look at."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bootbrain.db import Database
from bootbrain.models import Boot, Event
from tests.api.test_funnel import IP, MAC, pxe_boot_until_decision
from tests.conftest import Api, add_rack1

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, html
    return m.group(1)


def login(client: FlaskClient, token: str) -> str:
    """Log in through the form; the CSRF token of the session (for later forms)."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    resp = client.post(
        "/ui/login", data={"token": token, "csrf_token": csrf_of(form.get_data(as_text=True))}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return csrf_of(client.get("/ui/").get_data(as_text=True))


#: (hostname, state, tags, serial): a rack and a half of an ordinary fleet.
FLEET: list[tuple[str, str, list[str], str]] = [
    ("web-01", "deployed", ["rack-a", "web"], "CZ2101A001"),
    ("web-02", "deployed", ["rack-a", "web"], "CZ2101A002"),
    ("web-03", "deployed", ["rack-a", "web"], "CZ2101A003"),
    ("db-01", "deployed", ["rack-a", "db"], "CZ2101A004"),
    ("db-02", "maintenance", ["rack-a", "db"], "CZ2101A005"),
    ("gpu-01", "provisioning", ["rack-b", "gpu"], "CZ2101B001"),
    ("gpu-02", "ready", ["rack-b", "gpu"], "CZ2101B002"),
    ("gpu-03", "ready", ["rack-b", "gpu"], "CZ2101B003"),
    ("spare-01", "new", ["rack-b"], "CZ2101B004"),
    ("old-01", "retired", ["rack-b"], "CZ2099B005"),
]
STUCK_HOST = "node-var"


def seed_fleet(api: Api, client: FlaskClient, app: Flask, db: Database) -> dict[str, Any]:
    """The FLEET plus node-var, whose installer boot stopped after the decision 31
    minutes ago (past the default 30-minute limit): stuck. node-var's record."""
    add_rack1(api)
    api.post("/profiles", {"name": "disk", "kind": "local"}, expect=201)
    for name in ("installer", "rescue"):
        api.post(
            "/profiles",
            {
                "name": name,
                "kind": "linux",
                "kernel": "{{ assets }}/vmlinuz",
                "initrds": ["{{ assets }}/initrd.img"],
                "cmdline": "${IPXE_BOOT_LINUX_IP_CONFIG} bootbrain.done=${IPXE_BOOT_DONE_URL}",
            },
            expect=201,
        )
    for i, (host, state, tags, serial) in enumerate(FLEET, start=1):
        api.post(
            "/machines",
            {
                "hostname": host,
                "nics": [{"mac": f"52:54:00:10:00:{i:02x}", "boot": True}],
                "network": "rack1",
                "address": f"10.200.0.{100 + i}",
                "profile": "disk" if state == "deployed" else "installer",
                "state": state,
                "tags": tags,
                "serial": serial,
                "manufacturer": "Dell Inc.",
                "product": "PowerEdge R650",
            },
            expect=201,
        )
    stuck: dict[str, Any] = api.post(
        "/machines",
        {
            "hostname": STUCK_HOST,
            "nics": [{"mac": MAC, "boot": True}],
            "network": "rack1",
            "address": IP,
            "profile": "installer",
            "state": "provisioning",
            "tags": ["rack-b"],
        },
        expect=201,
    ).json
    pxe_boot_until_decision(client, api)
    with db.write() as s:  # 31 minutes pass for its boot
        for row in [*s.scalars(select(Event)), *s.scalars(select(Boot))]:
            for col in ("at", "created_at", "expires_at"):
                if hasattr(row, col):
                    setattr(row, col, getattr(row, col) - timedelta(minutes=31))
    return stuck
