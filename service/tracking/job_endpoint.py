"""A running code job's own MLflow endpoint: the WSGI app a worker serves on the job's Unix socket
(workers/tracking_socket.py), which the script inside reaches at MLFLOW_TRACKING_URI.

The caller is the job (a JobPrincipal): it writes its own run and the runs it creates, and reads
nothing else (service/tracking/protocol.py decides). Every request has a database session of its
own. The job's run keeps labtrain's status: the client's start_run and end_run ask to set it,
and that part of their request is dropped. The values a request logged to the job's run go to
`on_metrics`, which the code trainer folds into the job's metrics.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from service.core.config import Settings
from service.core.db import Database
from service.core.orm import Job
from service.tracking import artifacts, protocol, store
from service.tracking.errors import TrackingError, request_body
from service.tracking.principal import JobPrincipal, find_run
from service.tracking.runs import job_run_id

TRACKING_PREFIX = "/api/2.0/mlflow/"
ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts/"
MAX_JSON_BYTES = 16 * 1024 * 1024  # a JSON request (MLflow's log-batch at its limits is far less)
LOGGING_ENDPOINTS = ("runs/log-metric", "runs/log-batch")
# set_experiment("x") before start_run: the job's run moves into the experiment it names (the
# client resumes MLFLOW_RUN_ID only in the active experiment), so an unchanged script works.
EXPERIMENT_ENDPOINTS = ("experiments/get-by-name", "experiments/create")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

log = logging.getLogger("labtrain.worker")


def job_app(db: Database, settings: Settings, job_id: str, on_metrics: Callable[[dict[str, float]], None]) -> WSGIApp:
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        principal = JobPrincipal(job_id=job_id, owner_id=job.owner_id)
    own_run = job_run_id(job_id)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            if request.path.startswith(TRACKING_PREFIX):
                request.max_content_length = MAX_JSON_BYTES
                response = _tracking(request, db, settings, principal, own_run, on_metrics)
            elif request.path.startswith(ARTIFACTS_PREFIX):
                response = _artifacts(request, db, settings, principal)
            else:
                raise TrackingError("ENDPOINT_NOT_FOUND", f"no such endpoint: {request.method} {request.path}")
        except TrackingError as exc:
            response = _json(exc.status, exc.body())
        except RequestEntityTooLarge:
            response = _json(413, {"error_code": "INVALID_PARAMETER_VALUE", "message": "the request body is too large"})
        except Exception:  # the job sees MLflow's shape; the worker's log has the rest
            log.exception("the tracking endpoint of job %s failed on %s %s", job_id, request.method, request.path)
            response = _json(500, {"error_code": "INTERNAL_ERROR", "message": "the tracking endpoint failed"})
        return response(environ, start_response)

    return app


def _tracking(
    request: Request,
    db: Database,
    settings: Settings,
    principal: JobPrincipal,
    own_run: str,
    on_metrics: Callable[[dict[str, float]], None],
) -> Response:
    endpoint = request.path[len(TRACKING_PREFIX) :]
    body = _body(request)
    if endpoint == "runs/update" and body is not None and _run_of(body) == own_run:
        # The job's status is labtrain's: start_run's RUNNING and end_run's FINISHED are dropped.
        body = {k: v for k, v in body.items() if k not in ("status", "end_time")}
    with db.session() as session:
        status, answer = protocol.handle(
            session, settings, principal, request.method, endpoint, request.args.to_dict(flat=False), body
        )
        if status == 200 and endpoint in EXPERIMENT_ENDPOINTS:
            _move_own_run(session, own_run, answer)
    if status == 200 and endpoint in LOGGING_ENDPOINTS and body is not None and _run_of(body) == own_run:
        values = logged_values(endpoint, body)
        if values:
            on_metrics(values)
    return _json(status, answer)


def _move_own_run(session, own_run: str, answer: dict[str, Any]) -> None:
    experiment = answer.get("experiment") or {}
    experiment_id = answer.get("experiment_id") or experiment.get("experiment_id")
    ref = find_run(session, own_run)
    if ref is None or experiment_id is None:
        return
    store.job_row(session, ref).experiment_id = int(experiment_id)


def _artifacts(request: Request, db: Database, settings: Settings, principal: JobPrincipal) -> Response:
    endpoint = request.path[len(ARTIFACTS_PREFIX) :]
    with db.session() as session:
        answer = artifacts.handle(
            session,
            settings,
            principal,
            request.method,
            endpoint,
            request.args.to_dict(flat=False),
            request.stream,
            request.content_length,
        )
    if answer.file is not None:
        download = answer.file
        response = Response(
            wrap_file(request.environ, download.handle),
            mimetype="application/octet-stream",
            direct_passthrough=True,
        )
        response.content_length = download.size
        return response
    return _json(answer.status, answer.body or {})


def _body(request: Request) -> dict[str, Any] | None:
    return None if request.method in ("GET", "HEAD") else request_body(request.get_data(cache=False))


def _run_of(body: dict[str, Any]) -> Any:
    return body.get("run_id") or body.get("run_uuid")


def logged_values(endpoint: str, body: dict[str, Any]) -> dict[str, float]:
    """The latest value per key a log-metric or log-batch request holds (the highest step; at
    the same step, the later one), finite values only."""
    metrics = [body] if endpoint == "runs/log-metric" else body.get("metrics")
    latest: dict[str, tuple[int, float]] = {}
    for metric in metrics if isinstance(metrics, list) else []:
        if not isinstance(metric, dict) or not isinstance(metric.get("key"), str):
            continue
        value, step = _number(metric.get("value")), _number(metric.get("step", 0))
        if value is None or step is None:
            continue
        key = metric["key"]
        if key not in latest or step >= latest[key][0]:
            latest[key] = (int(step), value)
    return {key: value for key, (_, value) in latest.items()}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _json(status: int, answer: dict[str, Any]) -> Response:
    return Response(json.dumps(answer), status=status, mimetype="application/json")
