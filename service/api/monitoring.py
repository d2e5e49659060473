"""Readiness and Prometheus metrics: `/readyz` and `/metrics` (public paths, outside /api/).

HTTP latency is measured per route template (never the raw path, which would make a series
per job id). Under gunicorn each process keeps its own samples in PROMETHEUS_MULTIPROC_DIR
(service/cli/gunicorn_app.py sets it), and a scrape adds them up; the job, queue, user and worker
figures come from the database (service/lab/prometheus.py).
"""

from __future__ import annotations

import hmac
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest, multiprocess
from sqlalchemy import text

from service.api.auth import Unauthorized
from service.api.context import services
from service.core.errors import ServiceError
from service.lab.prometheus import LabCollector

bp = Blueprint("monitoring", __name__)

REQUEST_SECONDS = Histogram(
    "labtrain_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Summed over the API's live processes; a stream is counted while its client is connected.
OPEN_STREAMS = Gauge("labtrain_open_event_streams", "Event streams open now", ["kind"], multiprocess_mode="livesum")


class NotReady(ServiceError):
    status = 503
    code = "not_ready"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_start_timer)
    app.after_request(_observe)


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None and request.path != "/metrics":
        route = request.url_rule.rule if request.url_rule else "unmatched"
        REQUEST_SECONDS.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - started)
    return response


@bp.get("/readyz")
def readyz():
    """200 when the database and the broker answer; 503 naming what does not."""
    settings = services().settings
    checks = {"database": _check(_ping_database), "broker": _check(lambda: _ping_broker(settings))}
    if any(value != "ok" for value in checks.values()):
        failing = ", ".join(f"{name}: {value}" for name, value in checks.items() if value != "ok")
        raise NotReady(f"not ready: {failing}", details={"checks": checks})
    answer = {"status": "ready", "checks": checks}
    hub = current_app.extensions.get("labtrain.streams")
    if hub is not None:  # served by `labtrain api`: this process's streams (they work either way)
        answer["streams"] = {"open": hub.open_streams, "wake_ups": hub.state}
    return answer


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # what failed is the answer
        return f"{type(exc).__name__}: {exc}".strip()[:300]


def _ping_database() -> None:
    with services().db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _ping_broker(settings) -> None:
    with Connection(settings.broker_url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@bp.get("/metrics")
def metrics():
    settings = services().settings
    if settings.metrics_token:
        sent = request.headers.get("Authorization", "").partition(" ")[2].strip()
        if not hmac.compare_digest(sent.encode(), settings.metrics_token.encode()):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <LABTRAIN_METRICS_TOKEN>'")
    registry = CollectorRegistry()
    registry.register(LabCollector(settings, services().db))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_SECONDS)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
