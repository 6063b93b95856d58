"""Every operator route needs a token; read tokens cannot write."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_leases import lease
from tests.conftest import Api

#: Blueprints whose routes machines (not operators) call, the monitoring routes
#: (/healthz, /metrics: bootbrain.ops), and the dashboard (a session, not a bearer token:
#: tests/ui/test_auth.py sends anonymous to log in from each of its routes); everything
#: else is operator API.
MACHINE_BLUEPRINTS = ("machine.", "ops.", "static", "ui.")


def _concrete(rule: str) -> str:
    return re.sub(r"<(?:int:)?[^>]+>", "1", rule)


def operator_routes(app: Flask) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(MACHINE_BLUEPRINTS):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, _concrete(rule.rule)))
    return out


def test_every_non_machine_route_is_under_the_api(app: Flask) -> None:
    routes = operator_routes(app)
    assert len(routes) > 20
    assert all(path.startswith("/api/v1/") for _, path in routes), routes


@pytest.mark.parametrize(
    "header",
    [None, "Bearer ", "Bearer bbt_nothere_xyz", "Basic YTpi", "Bearer not-a-bootbrain-token"],
)
def test_every_operator_route_answers_401_without_a_valid_token(
    app: Flask, client: FlaskClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in operator_routes(app):
        resp = client.open(path, method=method, headers=headers, json={})
        assert resp.status_code == 401, (method, path, resp.status_code)
        assert resp.mimetype == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_read_token_gets_403_on_every_write(app: Flask, reader: Api) -> None:
    for method, path in operator_routes(app):
        if method == "GET":
            continue
        resp = reader.call(method, path.removeprefix("/api/v1"), json={})
        assert resp.status_code == 403, (method, path, resp.status_code)
        assert resp.json["status"] == 403


def test_lease_token_posts_lease_events_and_nothing_else(
    app: Flask, client: FlaskClient, api: Api
) -> None:
    """The DHCP hooks' token (scope lease): a stolen one cannot mint tokens, rewrite
    profiles or read the inventory; it can only tell bootbrain about leases."""
    created = api.post("/tokens", {"name": "dhcp-hook", "scope": "lease"}, expect=201).json
    assert created["scope"] == "lease"
    hook = Api(client, created["token"])
    api.post("/profiles", {"name": "p1", "kind": "local"}, expect=201)
    hook.post("/lease-events", lease(), expect=202)
    refused = [
        (method, path)
        for method, path in operator_routes(app)
        if path != "/api/v1/lease-events"
        and hook.call(method, path.removeprefix("/api/v1"), json={}).status_code != 403
    ]
    assert refused == []
    resp = hook.post("/tokens", {"name": "minted", "scope": "write"})
    assert resp.status_code == 403 and "scope lease" in resp.json["detail"]
    hook.patch("/profiles/1", {"kind": "chain", "chain_url": "http://evil/x"}, expect=403)
    assert api.get("/profiles/1", expect=200).json["kind"] == "local"
    assert [t["name"] for t in api.get("/tokens").json["items"]] == ["admin", "dhcp-hook"]


def test_lease_events_need_a_lease_or_write_token(api: Api, reader: Api) -> None:
    reader.post("/lease-events", lease(), expect=403)
    api.post("/lease-events", lease(), expect=202)


def test_read_token_can_read(reader: Api) -> None:
    assert reader.get("/machines").status_code == 200
    assert reader.get("/openapi.json").status_code == 200


def test_revoked_and_expired_tokens_are_refused(api: Api, app: Flask, client: FlaskClient) -> None:
    created = api.post("/tokens", {"name": "short", "scope": "read"}, expect=201).json
    other = Api(client, created["token"])
    assert other.get("/machines").status_code == 200
    api.delete(f"/tokens/{created['id']}", expect=200)
    resp = other.get("/machines")
    assert resp.status_code == 401
    assert "revoked" in resp.json["detail"]


def test_token_secret_is_shown_once_and_stored_hashed(api: Api, db) -> None:  # type: ignore[no-untyped-def]
    created = api.post("/tokens", {"name": "ci", "scope": "write"}, expect=201).json
    assert created["token"].startswith(created["prefix"] + "_")
    listed = api.get("/tokens", expect=200).json["items"]
    assert all("token" not in t for t in listed)
    from sqlalchemy import select

    from bootbrain.models import ApiToken

    with db.read() as s:
        hashes = list(s.scalars(select(ApiToken.token_hash)))
    assert created["token"] not in hashes
    assert all(len(h) == 64 for h in hashes)


def test_machine_routes_need_no_token(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    resp = client.get("/boot.ipxe")
    assert resp.status_code == 200
    assert resp.data.startswith(b"#!ipxe\n")


def test_token_check_tells_a_kept_token_from_one_this_inventory_lacks(
    app: Flask, tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """What the Ansible role asks before it keeps a token file: after a move to another
    database, the file's token opens nothing and must be replaced."""
    from click.testing import CliRunner

    from bootbrain.cli import main
    from tests.conftest import make_token

    settings = app.config["BOOTBRAIN"]
    (tmp_path / "c.toml").write_text("")
    monkeypatch.setenv("BOOTBRAIN_CONFIG", str(tmp_path / "c.toml"))
    monkeypatch.setenv("BOOTBRAIN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BOOTBRAIN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOOTBRAIN_SECRET_KEY", settings.secret_key)
    runner = CliRunner()
    kept = tmp_path / "api-token"

    kept.write_text(make_token(app, "kept", "write") + "\n")
    out = runner.invoke(main, ["token", "check", str(kept)])
    assert out.exit_code == 0, out.output
    assert "token kept (scope write) is valid" in out.output

    kept.write_text("bbt_0123abcd_" + "x" * 43 + "\n")  # well formed, from elsewhere
    out = runner.invoke(main, ["token", "check", str(kept)])
    assert out.exit_code == 1
    assert "unknown token" in out.output
    assert "x" * 43 not in out.output

    out = runner.invoke(main, ["token", "check", str(tmp_path / "missing")])
    assert out.exit_code == 2
