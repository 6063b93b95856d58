"""What a lease event or a completion report may carry (issue 16, case 11).

A lease ``at`` more than five minutes ahead or more than 30 days old is refused
(422 ``at``), so a wrong clock never moves last-seen; one that is plausible but older
than the machine's last sighting is recorded without moving last-seen back. Lease
addresses are host unicast addresses; hostnames and user classes are one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_boot import boot, done_url, flush, inventory  # noqa: F401
from tests.api.test_leases import lease
from tests.conftest import Api

MAC = "52:54:00:aa:cc:01"


def fields(resp: Any) -> list[str]:
    assert resp.mimetype == "application/problem+json"
    return [e["field"] for e in resp.json["errors"]]


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:59:59Z",
        iso(datetime.now(UTC) + timedelta(hours=1)),
        "2019-06-01T00:00:00Z",
        iso(datetime.now(UTC) - timedelta(days=31)),
    ],
)
def test_implausible_at_is_refused_and_moves_nothing(api: Api, at: str) -> None:
    m = api.post("/machines", {"nics": [{"mac": MAC}]}, expect=201).json
    resp = api.post("/lease-events", lease(at=at), expect=422)
    assert fields(resp) == ["at"]
    after = api.get(f"/machines/{m['id']}").json
    assert (after["last_seen_at"], after["last_seen_ip"]) == (None, None)
    assert api.get("/events?kind=lease").json["items"] == []


def test_a_late_replay_is_recorded_but_does_not_move_last_seen_back(api: Api) -> None:
    m = api.post("/machines", {"nics": [{"mac": MAC}]}, expect=201).json
    now = datetime.now(UTC)
    api.post("/lease-events", lease(ip="10.0.0.6", at=iso(now)), expect=202)
    api.post("/lease-events", lease(ip="10.0.0.5", at=iso(now - timedelta(days=2))), expect=202)
    after = api.get(f"/machines/{m['id']}").json
    assert after["last_seen_ip"] == "10.0.0.6"
    assert datetime.fromisoformat(after["last_seen_at"]) >= now - timedelta(seconds=1)
    assert len(api.get("/events?kind=lease").json["items"]) == 2


@pytest.mark.parametrize(
    "ip",
    [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "127.0.0.1",
        "240.0.0.1",
        "169.254.1.1",
    ],
)
def test_non_unicast_lease_address_is_refused(api: Api, ip: str) -> None:
    assert fields(api.post("/lease-events", lease(ip=ip), expect=422)) == ["ip"]


@pytest.mark.parametrize("field", ["hostname", "user_class"])
@pytest.mark.parametrize("value", ["n1\x00", "a\nb", "esc\x1b[31m", "tab\tx", "del\x7f"])
def test_control_characters_in_lease_text_are_refused(api: Api, field: str, value: str) -> None:
    assert fields(api.post("/lease-events", lease(**{field: value}), expect=422)) == [field]


@pytest.mark.parametrize(
    "report",
    [{"status": "ok\x00"}, {"k" * 200_000: "v"}, {"nul\x00key": "v"}, {"": "v"}],
)
def test_completion_report_with_nul_or_an_oversized_key_is_refused(
    api: Api,
    client: FlaskClient,
    app: Flask,
    inventory: dict,  # noqa: F811
    report: dict[str, str],
) -> None:
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    path = done_url(boot(client)).removeprefix("http://bootbrain.test")
    flush(app)
    assert client.post(path, data=report).status_code == 400
    assert api.get(f"/machines/{mid}").json["next_boot"]["profile"] == "installer"
    assert api.get(f"/events?machine_id={mid}&kind=completion").json["items"] == []
    # the same token still completes with a sound report; long values are cut
    assert client.post(path, data={"status": "x" * 1000}).status_code == 200
    [event] = api.get(f"/events?machine_id={mid}&kind=completion").json["items"]
    assert event["data"]["report"] == {"status": "x" * 256}
