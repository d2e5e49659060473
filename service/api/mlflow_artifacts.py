"""MLflow's proxied artifact routes (/api/2.0/mlflow-artifacts/...) for a user's token: each
request handed to service/tracking/artifacts.py, its answer sent as MLflow's client reads it.
Every error on these routes, a missing token included, is in MLflow's shape {"error_code", "message"}."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.wsgi import wrap_file

from service.api.auth import current_user, db_session
from service.api.context import services
from service.api.mlflow import answer_errors_as_mlflow
from service.tracking import artifacts
from service.tracking.errors import TrackingError
from service.tracking.principal import UserPrincipal

PREFIX = "/api/2.0/mlflow-artifacts"
bp = Blueprint("mlflow_artifacts", __name__, url_prefix=PREFIX)
# An upload is bounded by its run's limit (a job's outputs, or its owner's storage quota), not by
# the API's request limit: a model file may be far larger than a data set upload.
UNBOUNDED = 2**62
log = logging.getLogger("labtrain.api")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/artifacts")
def list_artifacts():
    return _serve()


@bp.get("/artifacts/<path:artifact_path>")
def download_artifact(artifact_path: str):
    return _serve()


@bp.put("/artifacts/<path:artifact_path>")
def upload_artifact(artifact_path: str):
    return _serve()


@bp.delete("/artifacts/<path:artifact_path>")
def delete_artifact(artifact_path: str):
    return _serve()


@bp.post("/mpu/create/<path:artifact_path>")
def create_multipart_upload(artifact_path: str):
    return _serve()


@bp.post("/mpu/complete/<path:artifact_path>")
def complete_multipart_upload(artifact_path: str):
    return _serve()


@bp.post("/mpu/abort/<path:artifact_path>")
def abort_multipart_upload(artifact_path: str):
    return _serve()


@bp.get("/presigned/<path:artifact_path>")
def presigned_download(artifact_path: str):
    return _serve()


def _serve() -> Response:
    body = None
    if request.method == "PUT":
        if request.content_length is None and not request.environ.get("wsgi.input_terminated"):
            # Without either the server cannot tell where the body ends: it would read as empty.
            return _json(
                TrackingError("INVALID_PARAMETER_VALUE", "send the file with a Content-Length", 411).body(), 411
            )
        request.max_content_length = UNBOUNDED
        body = request.stream
    answer = artifacts.handle(
        db_session(),
        services().settings,
        UserPrincipal(current_user()),
        request.method,
        request.path.removeprefix(PREFIX),
        request.args.to_dict(flat=False),
        body,
        request.content_length,
    )
    if answer.file is None:
        return _json(answer.body or {}, answer.status)
    sent = answer.file
    response = Response(wrap_file(request.environ, sent.handle), mimetype="application/octet-stream")
    response.direct_passthrough = True
    response.content_length = sent.size
    response.headers.set("Content-Disposition", "attachment", filename=sent.name)
    # A student's file is data, never a page of this site: no sniffing, no scripts if opened.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


def _json(body: dict, status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


answer_errors_as_mlflow(bp, "RESOURCE_DOES_NOT_EXIST")
