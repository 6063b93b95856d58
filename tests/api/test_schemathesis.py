"""Schemathesis against our own OpenAPI document: no 5xx, no response off-schema.

Runs on SQLite with a bounded number of examples per operation so it stays quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bootbrain.app import create_app
from bootbrain.db import Database
from bootbrain.models import Base
from tests.conftest import make_settings, make_token


@pytest.fixture
def st_app(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    url = f"sqlite:///{tmp_path / 'st.db'}"
    db = Database(url)
    Base.metadata.create_all(db.engine)
    db.dispose()
    app = create_app(make_settings(url, tmp_path))
    yield app, make_token(app, "fuzz", "write")
    app.extensions["bootbrain"].events.close()


@pytest.fixture
def st_schema(st_app: tuple[Flask, str]):  # type: ignore[no-untyped-def]
    app, token = st_app
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/openapi.json", app, headers={"Authorization": f"Bearer {token}"}
    )
    schema.config.headers = {"Authorization": f"Bearer {token}"}
    return schema


schema = schemathesis.pytest.from_fixture("st_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_api_conforms(case, st_app) -> None:  # type: ignore[no-untyped-def]
    _, token = st_app
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(
        response,
        checks=[response_schema_conformance, content_type_conformance, status_code_conformance],
    )
