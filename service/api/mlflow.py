"""MLflow's tracking REST API (/api/2.0/mlflow/...) for a user's token (MLflow's client sends
MLFLOW_TRACKING_TOKEN as `Authorization: Bearer`): each request handed to
service/tracking/protocol.py. Every answer on these paths, an auth failure or a bad body
included, is in MLflow's error shape {"error_code", "message"}, as its client reads it."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from service.api.auth import current_user, db_session
from service.api.context import services
from service.core.errors import ServiceError
from service.tracking import protocol
from service.tracking.errors import TrackingError, request_body
from service.tracking.principal import UserPrincipal

PREFIX = "/api/2.0/mlflow"
bp = Blueprint("mlflow", __name__, url_prefix=PREFIX)
log = logging.getLogger("labtrain.api")

# labtrain's own codes as MLflow's (its client turns these into MlflowException error codes)
ERROR_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    429: "REQUEST_LIMIT_EXCEEDED",
}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.route("/<path:endpoint>", methods=["GET", "POST", "PATCH", "DELETE"])
def tracking(endpoint: str) -> Response:
    status, answer = protocol.handle(
        db_session(),
        services().settings,
        UserPrincipal(current_user()),
        request.method,
        endpoint,
        request.args.to_dict(flat=False),
        _body(),
    )
    return _json(answer, status)


def _body() -> dict | None:
    return None if request.method == "GET" else request_body(request.get_data(cache=False))


def _json(answer: dict, status: int) -> Response:
    return Response(json.dumps(answer), status=status, mimetype="application/json")


def answer_errors_as_mlflow(blueprint: Blueprint, not_found: str) -> None:
    """Every error on `blueprint`'s paths in MLflow's shape; a 404 of labtrain's own is `not_found`
    (an unknown endpoint here, a missing run for the artifact routes)."""

    def error(status: int, message: str) -> Response:
        fallback = "INVALID_PARAMETER_VALUE" if status < 500 else "INTERNAL_ERROR"
        code = not_found if status == 404 else ERROR_CODES.get(status, fallback)
        return _json({"error_code": code, "message": message}, status)

    @blueprint.errorhandler(TrackingError)
    def _tracking_error(exc: TrackingError) -> Response:
        return _json(exc.body(), exc.status)

    @blueprint.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        response = error(exc.status, exc.message)
        if "retry_after" in exc.details:
            response.headers["Retry-After"] = str(exc.details["retry_after"])
        return response

    @blueprint.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error(exc.code or 500, exc.description or exc.name)

    @blueprint.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.path)
        return error(500, "the server failed to answer this request; it was logged")


answer_errors_as_mlflow(bp, "ENDPOINT_NOT_FOUND")
