"""The dashboard in a real headless Chromium (Debian's chromium and chromedriver, driven
by selenium), against bootbrain served on loopback by a werkzeug server thread.

``BOOTBRAIN_SCREENSHOT=docs/dashboard.png`` saves the fleet page as the README shows it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.serving import make_server

from bootbrain import migrate
from bootbrain.db import Database
from bootbrain.models import Base
from tests.conftest import Api, make_token

from .conftest import STUCK_HOST, seed_fleet

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Without these, Chromium waits on the network this closed machine does not have.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        f"{CHROMIUM} or {CHROMEDRIVER} is missing (Debian's chromium, chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the rules themselves run on both databases in test_auth.py."""
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    db = Database(url)
    Base.metadata.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": migrate.newest()})
    db.dispose()
    return url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def served(app: Flask, browser: Any) -> Iterator[str]:
    """The app on a loopback port; the browser starts with no cookie."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    browser.delete_all_cookies()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def stuck(api: Api, client: FlaskClient, app: Flask, db: Database) -> dict[str, Any]:
    return seed_fleet(api, client, app, db)


def navigate(browser: Any, element: Any) -> None:
    """Click ``element`` and wait until the page it was on is gone: a click that submits
    a form returns before the next page has loaded."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(page))


def log_in(browser: Any, base: str, token: str) -> None:
    browser.get(f"{base}/ui/")
    assert "/ui/login" in browser.current_url  # anonymous: sent to log in
    browser.find_element(By.ID, "token").send_keys(token)
    navigate(browser, browser.find_element(By.ID, "login"))
    assert browser.current_url == f"{base}/ui/"


def post_from_page(browser: Any, path: str, fields: dict[str, str], with_csrf: bool) -> int:
    """A form POST made by script from the page, as a forger's page would; its status."""
    return int(
        browser.execute_async_script(
            """
            const [path, fields, withCsrf, done] = arguments;
            const body = new FormData();
            for (const [k, v] of Object.entries(fields)) body.append(k, v);
            if (withCsrf) body.append('csrf_token',
                document.querySelector('input[name=csrf_token]').value);
            fetch(path, {method: 'POST', body, redirect: 'manual'})
                .then(r => done(r.status), e => done(-1));
            """,
            path,
            fields,
            with_csrf,
        )
    )


def test_a_read_token_sees_the_fleet_and_the_stuck_machine_but_may_not_act(
    browser: Any, served: str, app: Flask, api: Api, stuck: dict[str, Any]
) -> None:
    log_in(browser, served, make_token(app, "viewer", "read"))
    assert browser.find_element(By.ID, "who").text == "viewer (read)"
    assert browser.find_element(By.ID, "state-deployed").text == "4"
    rows = browser.find_elements(By.CSS_SELECTOR, "#stuck tr.stuck")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [STUCK_HOST]
    assert "never fetched its kernel" in rows[0].text
    if shot := os.environ.get("BOOTBRAIN_SCREENSHOT"):
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(shot)

    navigate(browser, rows[0].find_element(By.TAG_NAME, "a"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(STUCK_HOST)
    assert "installer" in browser.find_element(By.ID, "preview").text
    assert browser.find_elements(By.ID, "actions") == []
    assert browser.find_elements(By.CSS_SELECTOR, "form[action*='next-boot']") == []
    status = post_from_page(
        browser, f"/ui/machines/{stuck['id']}/next-boot", {"profile": "rescue"}, with_csrf=True
    )
    assert status == 403
    assert api.get(f"/machines/{stuck['id']}", expect=200).json["next_boot"] is None


def test_a_write_token_sets_the_next_boot_through_the_form(
    browser: Any, served: str, app: Flask, api: Api, stuck: dict[str, Any]
) -> None:
    log_in(browser, served, make_token(app, "operator", "write"))
    browser.get(f"{served}/ui/machines?text=gpu-02")
    navigate(browser, browser.find_element(By.LINK_TEXT, "gpu-02"))
    mid = int(browser.current_url.rsplit("/", 1)[1])
    for option in browser.find_elements(By.CSS_SELECTOR, "#next-boot-profile option"):
        if option.text == "rescue":
            option.click()
    navigate(browser, browser.find_element(By.ID, "set-next-boot"))
    assert "Next boot set to rescue." in browser.find_element(By.CLASS_NAME, "flash").text
    assert browser.find_element(By.ID, "next-boot").text.startswith("rescue until")
    assert api.get(f"/machines/{mid}", expect=200).json["next_boot"]["profile"] == "rescue"


def test_a_post_without_the_csrf_token_is_refused_and_logout_ends_the_session(
    browser: Any, served: str, app: Flask, api: Api, stuck: dict[str, Any]
) -> None:
    log_in(browser, served, make_token(app, "operator", "write"))
    path = f"/ui/machines/{stuck['id']}/next-boot"
    browser.get(f"{served}/ui/machines/{stuck['id']}")
    assert post_from_page(browser, path, {"profile": "rescue"}, with_csrf=False) == 400
    assert api.get(f"/machines/{stuck['id']}", expect=200).json["next_boot"] is None

    cookie = browser.get_cookie("bootbrain_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    navigate(browser, browser.find_element(By.ID, "logout"))
    assert "/ui/login" in browser.current_url
    browser.get(f"{served}/ui/")
    assert "/ui/login" in browser.current_url
    # The old cookie, replayed: the session it named is gone.
    old = requests.get(
        f"{served}/ui/", cookies={"bootbrain_ui": cookie["value"]}, allow_redirects=False
    )
    assert old.status_code == 302 and "/ui/login" in old.headers["Location"]


def test_anonymous_is_sent_to_login_from_every_page(
    browser: Any, served: str, app: Flask, stuck: dict[str, Any]
) -> None:
    for path in ("/ui/", "/ui/machines", f"/ui/machines/{stuck['id']}", "/ui/machines?tag=db"):
        browser.get(f"{served}{path}")
        assert "/ui/login" in browser.current_url, path
        assert browser.find_elements(By.ID, "token")
