"""The application factory. Nothing is created or read at import time."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from bootbrain.config import Settings, load_settings
from bootbrain.db import Database
from bootbrain.events import EventWriter


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """``config``: settings or a mapping of them (tests); None reads file and environment."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask("bootbrain")
    app.config["BOOTBRAIN"] = settings
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if not app.debug:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )

    settings.secret()  # refuse to start without one: tokens are HMACs keyed with it
    db = Database(settings.database_url)
    writer = EventWriter(db, settings.event_flush_interval, settings.event_batch_max)
    app.extensions["bootbrain.db"] = db
    app.extensions["bootbrain.events"] = writer

    from bootbrain import api, machine_routes
    from bootbrain.integrations import sync

    machine_routes.init_app(app)
    api.init_app(app)
    sync.init_app(app, settings, db)
    return app
