"""The dashboard's rules, through Flask's test client on both databases: who may see
what, CSRF on every form, the session cookie, logout and revocation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bootbrain.app import create_app
from bootbrain.db import Database
from tests.conftest import Api, make_settings, make_token

from .conftest import STUCK_HOST, csrf_of, login, seed_fleet


@pytest.fixture
def fleet(api: Api, client: FlaskClient, app: Flask, db: Database) -> dict[str, Any]:
    return seed_fleet(api, client, app, db)


def _ui_pages(app: Flask, machine_id: int) -> list[tuple[str, str]]:
    """(method, path) of every dashboard route but the login page and static files."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("ui.") or rule.endpoint in ("ui.login", "ui.static"):
            continue
        path = rule.rule.replace("<int:machine_id>", str(machine_id))
        out += [(m, path) for m in sorted(rule.methods or ()) if m in ("GET", "POST")]
    return out


def test_anonymous_is_sent_to_login_from_every_page(
    app: Flask, client: FlaskClient, fleet: dict[str, Any]
) -> None:
    pages = _ui_pages(app, fleet["id"])
    assert ("GET", "/ui/") in pages and ("POST", "/ui/logout") in pages
    for method, path in pages:
        resp = client.open(path, method=method)
        if method == "GET":
            assert resp.status_code == 302, path
            assert resp.headers["Location"].startswith("/ui/login?next="), path
        else:
            assert resp.status_code == 401, path


def test_a_read_token_sees_the_fleet_but_no_actions_and_may_not_post(
    app: Flask, client: FlaskClient, api: Api, fleet: dict[str, Any]
) -> None:
    csrf = login(client, make_token(app, "viewer", "read"))
    front = client.get("/ui/").get_data(as_text=True)
    assert "viewer <em>(read)</em>" in front
    assert 'id="state-deployed">4<' in front
    assert STUCK_HOST in front.split('id="stuck"')[1].split("</section>")[0]

    page = client.get(f"/ui/machines/{fleet['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/vmlinuz" in html  # the boot preview's script
    assert 'id="actions"' not in html and "set-next-boot" not in html

    # A forged form, with a valid CSRF token: refused for the scope.
    resp = client.post(
        f"/ui/machines/{fleet['id']}/next-boot", data={"profile": "rescue", "csrf_token": csrf}
    )
    assert resp.status_code == 403
    assert api.get(f"/machines/{fleet['id']}", expect=200).json["next_boot"] is None


def test_a_write_token_sets_and_cancels_the_next_boot_and_changes_the_profile(
    app: Flask, client: FlaskClient, api: Api, fleet: dict[str, Any]
) -> None:
    csrf = login(client, make_token(app, "operator", "write"))
    mid = fleet["id"]
    assert 'id="set-next-boot"' in client.get(f"/ui/machines/{mid}").get_data(as_text=True)
    resp = client.post(
        f"/ui/machines/{mid}/next-boot",
        data={
            "profile": "rescue",
            "expires_in_minutes": "90",
            "complete_state": "ready",
            "csrf_token": csrf,
        },
    )
    assert resp.status_code == 302
    nb = api.get(f"/machines/{mid}", expect=200).json["next_boot"]
    assert (nb["profile"], nb["complete_state"]) == ("rescue", "ready")
    page = client.get(f"/ui/machines/{mid}").get_data(as_text=True)
    assert "Next boot set to rescue." in page
    assert "next boot of machine" in page  # its event

    # A profile that does not exist is said so, and changes nothing.
    client.post(f"/ui/machines/{mid}/next-boot", data={"profile": "nope", "csrf_token": csrf})
    assert "no profile named" in client.get(f"/ui/machines/{mid}").get_data(as_text=True)
    assert api.get(f"/machines/{mid}", expect=200).json["next_boot"]["profile"] == "rescue"

    client.post(f"/ui/machines/{mid}/next-boot/cancel", data={"csrf_token": csrf})
    assert api.get(f"/machines/{mid}", expect=200).json["next_boot"] is None

    client.post(f"/ui/machines/{mid}/profile", data={"profile": "disk", "csrf_token": csrf})
    assert api.get(f"/machines/{mid}", expect=200).json["profile"] == "disk"
    client.post(f"/ui/machines/{mid}/profile", data={"profile": "", "csrf_token": csrf})
    assert api.get(f"/machines/{mid}", expect=200).json["profile"] is None


def test_every_post_without_a_valid_csrf_token_is_refused(
    app: Flask, client: FlaskClient, api: Api, fleet: dict[str, Any]
) -> None:
    csrf = login(client, make_token(app, "operator", "write"))
    mid = fleet["id"]
    for method, path in _ui_pages(app, mid):
        if method != "POST":
            continue
        for token in (None, "forged", csrf[:-2] + "xx"):
            data = {"profile": "rescue", "action": "on"}
            if token:
                data["csrf_token"] = token
            resp = client.post(path, data=data)
            assert resp.status_code == 400, (path, token)
            assert "CSRF" in resp.get_data(as_text=True)
    assert api.get(f"/machines/{mid}", expect=200).json["next_boot"] is None
    assert client.get("/ui/").status_code == 200  # logout was refused too

    # The login form needs it as well.
    other = app.test_client()
    resp = other.post("/ui/login", data={"token": make_token(app, "late", "read")})
    assert resp.status_code == 400


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_under_https(
    app: Flask, fleet: dict[str, Any]
) -> None:
    token = make_token(app, "viewer", "read")
    for base, secure in (("http://bootbrain.test", False), ("https://bootbrain.test", True)):
        client = app.test_client()
        form = client.get("/ui/login", base_url=base)
        resp = client.post(
            "/ui/login",
            base_url=base,
            data={"token": token, "csrf_token": csrf_of(form.get_data(as_text=True))},
        )
        cookie = resp.headers["Set-Cookie"]
        assert cookie.startswith("bootbrain_ui=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
        assert ("Secure" in cookie) is secure, cookie
        assert token not in cookie


def test_logout_ends_the_session_even_for_a_copy_of_the_cookie(
    app: Flask, client: FlaskClient, fleet: dict[str, Any]
) -> None:
    token = make_token(app, "viewer", "read")
    login(client, token)
    first = client.get_cookie("bootbrain_ui", path="/ui")
    assert first is not None
    csrf = login(client, token)  # logging in again ends the first session
    cookie = client.get_cookie("bootbrain_ui", path="/ui")
    assert cookie is not None and cookie.value != first.value
    replay = app.test_client()
    replay.set_cookie("bootbrain_ui", first.value, path="/ui")
    assert replay.get("/ui/").status_code == 302
    resp = client.post("/ui/logout", data={"csrf_token": csrf})
    assert resp.status_code == 302 and resp.headers["Location"] == "/ui/login"
    replay = app.test_client()
    replay.set_cookie("bootbrain_ui", cookie.value, path="/ui")
    assert replay.get("/ui/").status_code == 302


def test_revoking_the_token_ends_its_sessions(
    app: Flask, client: FlaskClient, api: Api, fleet: dict[str, Any]
) -> None:
    login(client, make_token(app, "temp", "write"))
    assert client.get("/ui/").status_code == 200
    (tok,) = [t for t in api.get("/tokens", expect=200).json["items"] if t["name"] == "temp"]
    api.delete(f"/tokens/{tok['id']}", expect=200)
    resp = client.get("/ui/machines")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/ui/login")


def test_login_refuses_bad_and_lease_tokens_and_never_redirects_elsewhere(
    app: Flask, client: FlaskClient, fleet: dict[str, Any]
) -> None:
    for bad in ("bbt_00000000_nope", "", make_token(app, "hook", "lease")):
        form = client.get("/ui/login").get_data(as_text=True)
        resp = client.post("/ui/login", data={"token": bad, "csrf_token": csrf_of(form)})
        assert resp.status_code == 401
        assert "Login refused" in resp.get_data(as_text=True)
    form = client.get("/ui/login?next=https://evil.example/ui/").get_data(as_text=True)
    resp = client.post(
        "/ui/login?next=https://evil.example/ui/",
        data={"token": make_token(app, "viewer", "read"), "csrf_token": csrf_of(form)},
    )
    assert resp.headers["Location"] == "/ui/"


def test_the_machine_list_filters_and_pages(
    app: Flask, client: FlaskClient, api: Api, fleet: dict[str, Any]
) -> None:
    login(client, make_token(app, "viewer", "read"))

    def hosts(query: str) -> list[str]:
        html = client.get(f"/ui/machines?{query}").get_data(as_text=True)
        return _hostnames(html)

    assert len(hosts("")) == 11
    assert hosts("state=ready") == ["gpu-02", "gpu-03"]
    assert hosts("tag=db") == ["db-01", "db-02"]
    assert hosts("profile=disk") == ["web-01", "web-02", "web-03", "db-01"]
    assert hosts("text=GPU") == ["gpu-01", "gpu-02", "gpu-03"]
    assert hosts("text=cz2099") == ["old-01"]
    assert hosts("text=52-54-00-10-00-03") == ["web-03"]
    assert hosts("text=00:10:00:0a") == ["old-01"]
    assert hosts("text=100%25") == []  # a LIKE wildcard is a character like any other
    assert hosts("state=deployed&tag=web&text=web-0") == ["web-01", "web-02", "web-03"]
    for bad in ("state=nonsense", "tag=a%20b", "after=-1", "text=" + "x" * 200):
        resp = client.get(f"/ui/machines?{bad}")
        assert resp.status_code == 400, bad
        assert f"Bad filter: {bad.split('=')[0]}:" in resp.get_data(as_text=True)

    # Pages of 4 by the "next page" link: every machine once, in order.
    seen: list[str] = []
    url: str | None = "/ui/machines?tag=rack-b&limit=4"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += _hostnames(html)
        m = re.search(r'id="next-page" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert seen == ["gpu-01", "gpu-02", "gpu-03", "spare-01", "old-01", STUCK_HOST]


def test_a_page_shows_what_it_is_given_escaped(
    app: Flask, client: FlaskClient, api: Api, fleet: dict[str, Any]
) -> None:
    api.patch(f"/machines/{fleet['id']}", {"serial": "<script>alert(1)</script>"}, expect=200)
    login(client, make_token(app, "viewer", "read"))
    for path in ("/ui/machines", f"/ui/machines/{fleet['id']}"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_unknown_machine_is_404(app: Flask, client: FlaskClient, fleet: dict[str, Any]) -> None:
    login(client, make_token(app, "viewer", "read"))
    assert client.get("/ui/machines/999999").status_code == 404


def _hostnames(html: str) -> list[str]:
    return re.findall(r'<a href="/ui/machines/\d+">([^<]+)</a>', html)


def test_behind_a_trusted_https_proxy_the_cookie_is_secure(db_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(db_url, tmp_path, trusted_proxies=1))
    try:
        token = make_token(app, "viewer", "read")
        for proto, secure in (("http", False), ("https", True)):
            client = app.test_client()
            headers = {"X-Forwarded-Proto": proto, "X-Forwarded-For": "192.0.2.1"}
            form = client.get("/ui/login", headers=headers).get_data(as_text=True)
            resp = client.post(
                "/ui/login", headers=headers, data={"token": token, "csrf_token": csrf_of(form)}
            )
            assert resp.status_code == 302
            assert ("Secure" in resp.headers["Set-Cookie"]) is secure, proto
    finally:
        app.extensions["bootbrain"].close()
