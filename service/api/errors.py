"""Every error leaves the API in one JSON shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from service.core.errors import ServiceError

log = logging.getLogger("labtrain.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "wrong_state",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_spec",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, details: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if "retry_after" in exc.details:  # a rate limit says when to come back
            response.headers["Retry-After"] = str(exc.details["retry_after"])
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        details = {}
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is larger than the limit of {limit} bytes; send a smaller file"
            details = {"field": "file" if request.path.endswith("/datasets") else "body", "limit_bytes": limit}
        elif status == 404:
            message = "no such route; see /api/v1 in the API documentation"
        response = error_response(status, HTTP_CODES.get(status, "http_error"), message, details)
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the server failed to answer this request; it was logged")
