"""Routes for whoever watches the brain: ``/healthz`` (liveness, for load balancers and
the Ansible role's verify) and ``/metrics`` (Prometheus text format). Neither needs a
token: they say nothing about the inventory's contents.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Flask, Response, current_app

from bootbrain import migrate, readiness
from bootbrain.metrics import exposition
from bootbrain.services import Services

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


def _services() -> Services:
    services: Services = current_app.extensions["bootbrain"]
    return services


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness, for load balancers and the Ansible verify: ``ok`` only when the
    database can answer — the file is the one opened, it reads, its schema is the one
    this bootbrain needs, and it takes a write. Otherwise 503, with a JSON body
    naming each check and what failed."""
    try:
        health = _services().db.health(migrate.newest())
    except Exception as e:  # a check that itself broke is a failing check
        log.exception("health check failed")
        health_checks = {"database": f"the health check failed: {type(e).__name__}"}
    else:
        if not health.failing:
            return Response("ok\n", mimetype="text/plain")
        health_checks = health.checks
    failing = [name for name, state in health_checks.items() if state != "ok"]
    log.error("health check: %s", "; ".join(f"{n}: {health_checks[n]}" for n in failing))
    body = {"status": "failing", "failing": failing, "checks": health_checks}
    resp = Response(json.dumps(body) + "\n", status=503, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/readyz")
def readyz() -> Response:
    """Whether this host can boot machines now; each failing check named (JSON)."""
    services = _services()
    results = readiness.checks(services.settings, services.db, services.events)
    ok = all(c.ok for c in results)
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in results},
    }
    resp = Response(json.dumps(body), status=200 if ok else 503, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/metrics")
def metrics() -> Response:
    """The host's metrics in Prometheus text format (summed over workers under serve)."""
    return Response(exposition(), mimetype="text/plain; version=0.0.4")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
