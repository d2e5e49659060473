"""Reading request bodies and query parameters, with a clear 4xx for anything malformed."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from service.core.errors import ServiceError, SpecError

# A job spec nests a few levels (a search's space, a layer list); a bound far above that keeps
# pathological bodies away from the validators, copies and JSON columns downstream.
MAX_SPEC_DEPTH = 64


def json_body(max_depth: int | None = None) -> Any:
    """The request body parsed as JSON (whatever the Content-Type says), nested at most
    `max_depth` levels where one is given."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ServiceError("the request body is empty; send a JSON object", field="body", code="invalid_json")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(f"the request body is not valid JSON ({exc})", field="body", code="invalid_json") from None
    except RecursionError:
        raise ServiceError(
            "the request body nests too deeply to read; no job spec is deeper than a few levels",
            field="body",
            code="invalid_json",
        ) from None
    if max_depth is not None and _depth(payload) > max_depth:
        raise ServiceError(
            f"the request body nests deeper than {max_depth} levels; no job spec needs more",
            field="body",
            code="invalid_json",
        )
    return payload


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value`, without recursing (so a deep body cannot
    exhaust the stack of whatever reads it next)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item if isinstance(child, (list, dict)))
    return deepest


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
