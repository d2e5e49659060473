"""Errors the domain raises for bad input; the API turns them into 4xx answers."""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


class ServiceError(Exception):
    """A request that cannot be served as asked: an HTTP status, a code and a message."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.code
        self.status = status or self.status
        self.details = dict(details or {})
        if field is not None:
            self.details.setdefault("field", field)


class SpecError(ServiceError):
    status = 422
    code = "invalid_spec"


class Forbidden(ServiceError):
    """Known to the caller, but not theirs to change (another user's object is a NotFound)."""

    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "wrong_state"


def field_path(model: type[BaseModel], loc: tuple, prefix: str = "") -> str:
    """The dotted field name of a pydantic error location, without union member tags."""
    parts = [prefix] if prefix else []
    current: Any = model
    keyed = False  # the previous field was a dict: this item is one of its keys
    for item in loc:
        if isinstance(item, int) or keyed:
            parts.append(str(item))
            keyed = False
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or item not in fields:
            break
        parts.append(item)
        annotation = fields[item].annotation
        keyed = get_origin(annotation) is dict
        current = _model_in(annotation)
    return ".".join(parts) or prefix


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds: itself, or a member of `Model | None` or `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for member in get_args(annotation):
        found = _model_in(member)
        if found is not None:
            return found
    return None


def spec_error_from(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> SpecError:
    """One SpecError for a pydantic error: the first bad field, all its alternatives' messages."""
    grouped: dict[str, list[str]] = {}
    for error in exc.errors():
        path = field_path(model, error["loc"], prefix)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            parent = error["loc"][:-1]
            path = ".".join(filter(None, [field_path(model, parent, prefix), str(error["loc"][-1])]))
            message = f"unknown field; allowed fields are: {', '.join(model_field_names(model, parent))}"
        elif error["type"] == "missing":
            message = "this field is required"
        grouped.setdefault(path, [])
        if message not in grouped[path]:
            grouped[path].append(message)
    field, messages = next(iter(grouped.items()))
    errors = [{"field": f, "message": " or ".join(m)} for f, m in grouped.items()]
    return SpecError(f"{field}: {' or '.join(messages)}", field=field, details={"errors": errors})


def model_field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for item in loc:
        fields = getattr(current, "model_fields", {})
        current = _model_in(fields[item].annotation) if item in fields else current
    return list(getattr(current, "model_fields", {}))
