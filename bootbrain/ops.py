"""Routes for whoever watches the brain: ``/healthz`` (liveness, for load balancers and
the Ansible role's verify) and ``/metrics`` (Prometheus text format). Neither needs a
token: they say nothing about the inventory's contents.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, current_app

from bootbrain.machine.flow import failures
from bootbrain.services import Services

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


def _services() -> Services:
    services: Services = current_app.extensions["bootbrain"]
    return services


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness and database reachability, for load balancers and the Ansible verify."""
    try:
        _services().db.ping()
    except Exception:
        log.exception("health check: database unreachable")
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    return Response("ok\n", mimetype="text/plain")


@bp.get("/metrics")
def metrics() -> Response:
    """Counters in Prometheus text format."""
    writer = _services().events
    lines = [
        "# TYPE bootbrain_machine_route_failures_total counter",
        *(
            f'bootbrain_machine_route_failures_total{{kind="{k}"}} {v}'
            for k, v in sorted(failures.items())
        ),
        "# TYPE bootbrain_events_written_total counter",
        f"bootbrain_events_written_total {writer.written}",
        "# TYPE bootbrain_events_failed_total counter",
        f"bootbrain_events_failed_total {writer.failures}",
        "# TYPE bootbrain_events_rejected_total counter",
        f"bootbrain_events_rejected_total {writer.rejected}",
        "# TYPE bootbrain_events_journalled_total counter",
        f"bootbrain_events_journalled_total {writer.journalled}",
        "# TYPE bootbrain_events_replayed_total counter",
        f"bootbrain_events_replayed_total {writer.replayed}",
        "# TYPE bootbrain_event_writes_failing_seconds gauge",
        f"bootbrain_event_writes_failing_seconds {writer.failing_for:.1f}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
