"""Kea at fleet scale, as rendered: the ``hosts-database`` entry from the URL an operator
writes, the HA hook's relationship and the control agent of each member, and the
settings that cannot make a pair or a host backend. Real Kea and PostgreSQL run them
in tests/integration/test_kea_host_database.py."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bootbrain.integrations.kea import hosts_database, render_config, render_ctrl_agent
from bootbrain.integrations.reservations import Reservation
from tests.unit.test_kea_config import BASE, MAC1, make

PEERS = [
    {"name": "kea-a", "url": "http://10.0.0.1:8000/", "role": "primary"},
    {"name": "kea-b", "url": "http://10.0.0.2:8000", "role": "standby"},
]


def test_host_database_mode_names_the_database_instead_of_listing_hosts() -> None:
    s = make(
        mode="host-database", hosts_database_url="postgresql://kea:s%40cret@db.example:5433/kea"
    )
    d = render_config(s, BASE, [Reservation(1, MAC1, "10.0.0.50", "n1")])["Dhcp4"]
    assert "reservations" not in d["subnet4"][0]
    db = d["hosts-database"]
    assert (db["type"], db["name"], db["host"], db["port"]) == (
        "postgresql",
        "kea",
        "db.example",
        5433,
    )
    assert (db["user"], db["password"]) == ("kea", "s@cret")
    assert db["on-fail"] == "serve-retry-continue"
    # config-reload mode is as before: the hosts in the file, no database
    plain = render_config(make(), BASE, [Reservation(1, MAC1, "10.0.0.50", "n1")])["Dhcp4"]
    assert plain["subnet4"][0]["reservations"][0]["hw-address"] == MAC1
    assert "hosts-database" not in plain


def test_a_socket_directory_url() -> None:
    db = hosts_database("postgresql+psycopg://kea:pw@/kea?host=/run/postgresql&port=5432")
    assert (db["host"], db["port"], db["name"]) == ("/run/postgresql", 5432, "kea")


@pytest.mark.parametrize(
    "values",
    [
        {"mode": "host-database"},
        {"mode": "host-database", "hosts_database_url": "mysql://kea@db/kea"},
        {"ha": {"this_server": "kea-c", "peers": PEERS}},
        {"ha": {"this_server": "kea-a", "peers": [PEERS[0], {**PEERS[1], "role": "primary"}]}},
        {"ha": {"this_server": "kea-a", "peers": [PEERS[0], {**PEERS[1], "name": "kea-a"}]}},
        {"ha": {"this_server": "kea-a", "peers": PEERS[:1]}},
        {"ha": {"this_server": "kea-a", "peers": PEERS, "max_response_delay": 1000}},
        {"ha": {"this_server": "kea-a", "peers": [{**PEERS[0], "url": "http://a b/"}, PEERS[1]]}},
    ],
)
def test_settings_that_make_no_backend_or_pair(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make(**values)


def test_hot_standby_pair_and_its_control_agents() -> None:
    docs = {}
    for me in ("kea-a", "kea-b"):
        s = make(ha={"this_server": me, "peers": PEERS, "max_unacked_clients": 0})
        hooks = render_config(s, BASE, [])["Dhcp4"]["hooks-libraries"]
        libs = [h["library"].rsplit("/", 1)[1] for h in hooks]
        assert libs[:2] == ["libdhcp_lease_cmds.so", "libdhcp_ha.so"]
        (rel,) = hooks[1]["parameters"]["high-availability"]
        docs[me] = rel
        ca = render_ctrl_agent(s)["Control-agent"]
        assert ca["control-sockets"]["dhcp4"]["socket-name"] == str(s.kea.control_socket)
        assert (ca["http-host"], ca["http-port"]) == (
            ("10.0.0.1", 8000) if me == "kea-a" else ("10.0.0.2", 8000)
        )
    a, b = docs["kea-a"], docs["kea-b"]
    assert (a["this-server-name"], b["this-server-name"]) == ("kea-a", "kea-b")
    assert a["mode"] == "hot-standby" and a["max-unacked-clients"] == 0
    # the members differ only in who they are
    assert {**a, "this-server-name": ""} == {**b, "this-server-name": ""}
    assert [p["url"] for p in a["peers"]] == ["http://10.0.0.1:8000/", "http://10.0.0.2:8000/"]
    with pytest.raises(ValueError, match=r"kea\.ha"):
        render_ctrl_agent(make())
