"""The application factory and composition root: settings → services → routes.

Nothing is created or read at import time. :func:`create_app` builds the services
(:func:`bootbrain.services.build`, which the CLI uses too) and registers the three
kinds of routes: the machine routes (:mod:`bootbrain.machine.routes`), the operator
API (:mod:`bootbrain.api`), the monitoring routes (:mod:`bootbrain.ops`) and the web
dashboard (:mod:`bootbrain.ui`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from bootbrain import api, logs, ops, services, ui
from bootbrain.config import Settings, load_settings
from bootbrain.machine import errors as machine_errors
from bootbrain.machine import routes as machine_routes


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """``config``: settings or a mapping of them (tests); None reads file and environment."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask("bootbrain")
    app.config["BOOTBRAIN"] = settings
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if not app.debug:
        logs.configure(settings.log_format, only_if_unconfigured=True)

    settings.secret()  # refuse to start without one: tokens are HMACs keyed with it
    built = services.build(settings)
    app.extensions["bootbrain"] = built
    machine_routes.init_app(app, built)
    ops.init_app(app)
    api.init_app(app, script_fallback=machine_errors.for_request)
    ui.init_app(app, built)
    if settings.trusted_proxies:
        # Outermost, so the /ipxe fast path sees the machine's address too: events,
        # last-seen and the boot funnel's attribution by address depend on it.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    # Outermost of all: every line logged while answering carries the request's id.
    app.wsgi_app = logs.RequestIds(  # type: ignore[method-assign]
        app.wsgi_app, trust_header=settings.trusted_proxies > 0
    )
    return app
