"""Reading request bodies and query parameters, with a clear 4xx for anything malformed."""
from __future__ import annotations

import json
from typing import Any

from flask import request

from service.errors import ServiceError, SpecError


def json_body() -> Any:
    """The request body parsed as JSON (whatever the Content-Type says)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ServiceError("the request body is empty; send a JSON object", field="body", code="invalid_json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(f"the request body is not valid JSON ({exc})", field="body", code="invalid_json") from None


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SpecError(f"{name} must be a whole number, not {raw!r}", field=name) from None
    if not low <= value <= high:
        raise SpecError(f"{name} must be between {low} and {high}", field=name)
    return value
