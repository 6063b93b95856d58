"""Two brains on one inventory behave as one (fleet issue, part 6): a per-boot token
issued by brain A is accepted by brain B, a one-shot action set through A is consumed
by a completion B records, and the discovery cap is shared. Both databases; each
brain has its own data directory, as two boot hosts do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from bootbrain.app import create_app
from bootbrain.models import Machine
from tests.api.test_boot import boot, done_url, flush, inventory  # noqa: F401
from tests.conftest import Api, make_settings


@pytest.fixture
def brain_b(db_url: str, tmp_path: Path) -> Any:
    app = create_app(make_settings(db_url, tmp_path / "host-b"))
    app.testing = True
    yield app
    app.extensions["bootbrain"].events.close()
    app.extensions["bootbrain"].db.dispose()


def test_a_token_from_brain_a_completes_on_brain_b(
    api: Api,
    app: Flask,
    brain_b: Flask,
    inventory: dict[str, Any],  # noqa: F811
) -> None:
    mid = inventory["id"]
    api.put(f"/machines/{mid}/next-boot", {"profile": "installer"}, expect=200)
    script = boot(app.test_client())  # brain A answers the boot
    url = done_url(script)
    flush(app)
    token = url.split("/boot/")[1].split("/")[0]
    b = brain_b.test_client()
    assert b.get(f"/boot/{token}/meta-data").status_code == 200  # B serves A's token
    done = b.post(f"/boot/{token}/done", data={"hostname": "node-var"})
    assert done.status_code == 200, done.data
    m = api.get(f"/machines/{mid}", expect=200).json  # through A again
    assert m["next_boot"] is None and m["state"] == "deployed"
    assert app.test_client().post(f"/boot/{token}/done", data={}).status_code == 403


def test_the_discovery_cap_is_shared(db_url: str, tmp_path: Path) -> None:
    apps = [
        create_app(
            make_settings(db_url, tmp_path / f"host-{n}", discovery=True, discovery_per_minute=3)
        )
        for n in "ab"
    ]
    try:
        for i in range(6):  # alternately through each brain
            boot(apps[i % 2].test_client(), uuid="", mac=f"52:54:00:00:02:0{i}")
        with apps[0].extensions["bootbrain"].db.read() as s:
            found = s.scalar(
                select(func.count()).select_from(Machine).where(Machine.state == "discovered")
            )
        assert found == 3
    finally:
        for app in apps:
            app.extensions["bootbrain"].events.close()
            app.extensions["bootbrain"].db.dispose()
