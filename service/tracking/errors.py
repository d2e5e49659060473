"""MLflow's error shape: an error code of MLflow's, a message and the HTTP status MLflow gives it."""

from __future__ import annotations

import json
from typing import Any

# MLflow's own mapping (mlflow.exceptions), for the codes labtrain answers with
HTTP_STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "INVALID_STATE": 409,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "RESOURCE_LIMIT_EXCEEDED": 400,
    "RESOURCE_EXHAUSTED": 429,
    "NOT_IMPLEMENTED": 501,
    "INTERNAL_ERROR": 500,
}


class TrackingError(Exception):
    """A request MLflow's server would refuse, as MLflow's client reads it."""

    def __init__(self, error_code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status or HTTP_STATUS.get(error_code, 400)

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


def not_found(what: str) -> TrackingError:
    return TrackingError("RESOURCE_DOES_NOT_EXIST", what)


def invalid(message: str) -> TrackingError:
    return TrackingError("INVALID_PARAMETER_VALUE", message)


def request_body(raw: bytes) -> dict[str, Any] | None:
    """A request's JSON object as MLflow's server reads it (None when empty; old clients' JSON
    sent twice encoded accepted), else INVALID_PARAMETER_VALUE."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
        if isinstance(body, str):
            body = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise invalid("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body
