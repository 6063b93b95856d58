"""Schemathesis against our own OpenAPI document: no 5xx, no response off-schema.

Two runs on SQLite: every operation on its own (a bounded number of examples each),
and stateful — sequences that follow the document's OpenAPI links, so a write is
followed by reads of what it wrote (a PATCH that stores a value the reads then
cannot take, issue 16 case 18). The stateful run's seed is printed; set
BOOTBRAIN_FUZZ_SEED to replay one, BOOTBRAIN_FUZZ_EXAMPLES to run longer.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import delete, update

from bootbrain.app import create_app
from bootbrain.db import Database
from bootbrain.models import ApiToken, Base
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
    # These talk to the machine's BMC, at whatever address a generated BMC record
    # names: traffic must stay on loopback, so they are tested against emulated BMCs
    # (tests/bmc), never from generated data.
    return schema.exclude(path_regex=r"/(power|reinstall|reinstalls)$")


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


def test_api_links_chain_writes_to_reads(st_schema) -> None:  # type: ignore[no-untyped-def]
    links = st_schema.raw_schema["paths"]["/api/v1/rules"]["post"]["responses"]["201"]["links"]
    assert {"get__api_v1_rules_{item_id}", "patch__api_v1_rules_{item_id}"} <= set(links)
    patch = st_schema.raw_schema["paths"]["/api/v1/rules/{item_id}"]["patch"]
    assert "get__api_v1_rules_{item_id}" in patch["responses"]["200"]["links"]


def test_api_conforms_statefully(st_schema, st_app) -> None:  # type: ignore[no-untyped-def]
    app, token = st_app
    services = app.extensions["bootbrain"]
    fuzz_seed = int(os.environ.get("BOOTBRAIN_FUZZ_SEED") or random.randrange(2**32))
    print(f"stateful schemathesis seed: BOOTBRAIN_FUZZ_SEED={fuzz_seed}")
    base = st_schema.as_state_machine()

    class ApiStates(base):  # type: ignore[misc,valid-type]
        def teardown(self) -> None:
            """Each sequence starts from an empty inventory: Hypothesis replays them."""
            services.events.flush()
            with services.db.write() as s:
                for table in reversed(Base.metadata.sorted_tables):
                    if table.name != ApiToken.__tablename__:
                        s.execute(delete(table))
                s.execute(delete(ApiToken).where(ApiToken.name != "fuzz"))
                s.execute(update(ApiToken).values(revoked_at=None))

        def get_call_kwargs(self, case):  # type: ignore[no-untyped-def]
            return {"headers": {"Authorization": f"Bearer {token}"}}

        def validate_response(self, response, case, additional_checks=None, **kw):  # type: ignore[no-untyped-def]
            assert response.status_code < 500, (case.method, case.path, response.text)
            case.validate_response(
                response,
                checks=[
                    response_schema_conformance,
                    content_type_conformance,
                    status_code_conformance,
                ],
            )

    seed(fuzz_seed)(ApiStates)
    ApiStates.run(
        settings=settings(
            max_examples=int(os.environ.get("BOOTBRAIN_FUZZ_EXAMPLES", "60")),
            stateful_step_count=8,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )


@pytest.mark.parametrize("resource", ["rules", "networks", "profiles", "machines"])
def test_generated_writes_never_break_the_reads_after_them(  # type: ignore[no-untyped-def]
    st_schema, st_app, resource: str
) -> None:
    """The sequence that found issue 16's case 18, for every resource: an object that
    exists, a PATCH whose body Schemathesis generates from the document, then the list
    and the item read back. A write that stores what a read cannot answer fails here
    (``{"tags": null}`` on a rule broke both reads for every caller)."""
    from tests.api.test_null_fields import PROFILE, RESOURCES

    app, token = st_app
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    profile = client.post("/api/v1/profiles", json=PROFILE, headers=auth)
    assert profile.status_code == 201, profile.get_data(as_text=True)
    item_id = (
        profile.json["id"]
        if resource == "profiles"
        else client.post(f"/api/v1/{resource}", json=RESOURCES[resource][1], headers=auth).json[
            "id"
        ]
    )
    patch = st_schema[f"/api/v1/{resource}/{{item_id}}"]["PATCH"]
    fuzz_seed = int(os.environ.get("BOOTBRAIN_FUZZ_SEED") or random.randrange(2**32))
    print(f"{resource}: BOOTBRAIN_FUZZ_SEED={fuzz_seed}")

    @seed(fuzz_seed)
    @settings(
        max_examples=int(os.environ.get("BOOTBRAIN_FUZZ_EXAMPLES", "60")),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=patch.as_strategy())
    def write_then_read(case) -> None:  # type: ignore[no-untyped-def]
        case.path_parameters = {"item_id": item_id}
        written = case.call(headers=auth)
        assert written.status_code < 500, (case.body, written.text)
        for path in (f"/api/v1/{resource}", f"/api/v1/{resource}/{item_id}"):
            read = client.get(path, headers=auth)
            assert read.status_code == 200, (case.body, path, read.get_data(as_text=True))

    write_then_read()
