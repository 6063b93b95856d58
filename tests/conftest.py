"""Shared fixtures. API tests run once on SQLite and once on a real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from bootbrain import inventory, migrate, schemas
from bootbrain.app import create_app
from bootbrain.config import Settings
from bootbrain.db import Database
from bootbrain.inventory.keahosts import dispose, engine_url
from bootbrain.models import Base

PG_ENV = "BOOTBRAIN_TEST_PG_URL"


def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: run scripts/test (it starts PostgreSQL and sets it)")
    return url


@pytest.fixture(scope="session")
def pg_schema() -> str:
    """The PostgreSQL test database, migrated to head once per session."""
    url = pg_url()
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.dispose()
    migrate.upgrade(url)
    return url


@contextlib.contextmanager
def kea_schema_database(server_url: str, reach: Callable[[str], str]) -> Iterator[str]:
    """A fresh database on ``server_url``'s PostgreSQL with Kea's schema (``kea-admin
    db-init pgsql``, as the README says), dropped afterwards. Yields its libpq URL as
    ``reach`` rewrites it (e.g. through a forwarded unix socket)."""
    base = urlsplit(server_url.replace("+psycopg", ""))
    host, port = base.hostname or "127.0.0.1", base.port or 5432
    user, password = base.username or "", base.password or ""
    name = f"{base.path.lstrip('/')}_kea_{secrets.token_hex(3)}"
    admin = create_engine(engine_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = reach(f"postgresql://{quote(user)}:{quote(password)}@/{name}")
    try:
        proc = subprocess.run(
            ["kea-admin", "db-init", "pgsql", "-u", user, "-p", password, "-n", name,
             "-h", host, "-P", str(port)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield url
    finally:
        dispose(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate(url: str) -> None:
    db = Database(url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'inventory.db'}"
        db = Database(url)
        Base.metadata.create_all(db.engine)
        with db.engine.begin() as conn:  # what the migrations leave, for `bootbrain serve`
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": migrate.newest()})
        db.dispose()
        return url
    url: str = request.getfixturevalue("pg_schema")
    _truncate(url)
    return url


def make_settings(db_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "database_url": db_url,
            "secret_key": "test-secret-not-for-production",
            "public_url": "http://bootbrain.test",
            "event_flush_interval": 0.05,
            "dnsmasq": {"tftp_root": str(tmp_path / "tftp")},
            **extra,
        }
    )


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.testing = True
    yield app
    app.extensions["bootbrain"].events.close()
    app.extensions["bootbrain"].db.dispose()


@pytest.fixture
def db(app: Flask) -> Database:
    return app.extensions["bootbrain"].db  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def make_token(app: Flask, name: str, scope: str) -> str:
    _, token = inventory.create_token(
        app.extensions["bootbrain"].db,
        app.config["BOOTBRAIN"].secret(),
        schemas.TokenIn(name=name, scope=scope),
        "test",
    )
    return token


class Api:
    """The test client with a token, and the JSON bodies the API answers."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
        expect: int | None = None,
    ) -> Any:
        resp = self.client.open(
            f"/api/v1{path}", method=method, json=json, headers={**self.headers, **(headers or {})}
        )
        if expect is not None:
            assert resp.status_code == expect, (resp.status_code, resp.get_data(as_text=True))
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, json: Any, **kw: Any) -> Any:
        return self.call("POST", path, json=json, **kw)

    def patch(self, path: str, json: Any, **kw: Any) -> Any:
        return self.call("PATCH", path, json=json, **kw)

    def put(self, path: str, json: Any, **kw: Any) -> Any:
        return self.call("PUT", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)


def add_rack1(api: Api) -> None:
    """rack1, 10.200.0.0/24: gateway .1, DNS .2 and .3, domain lab.example (the static
    ip= and network-config the boot and metadata tests expect)."""
    api.post(
        "/networks",
        {
            "name": "rack1",
            "cidr": "10.200.0.0/24",
            "gateway": "10.200.0.1",
            "dns": ["10.200.0.2", "10.200.0.3"],
            "domain": "lab.example",
        },
        expect=201,
    )


@pytest.fixture
def api(client: FlaskClient, app: Flask) -> Api:
    return Api(client, make_token(app, "admin", "write"))


@pytest.fixture
def reader(client: FlaskClient, app: Flask) -> Api:
    return Api(client, make_token(app, "reader", "read"))
