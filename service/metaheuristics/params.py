"""The optimisers' parameter schemas, built from each algorithm's PARAMS and BOUNDS.

One strict pydantic model per strategy checks the `params` of optimisation jobs and of
hyperparameter searches before anything is stored, and describes them in the catalog. The
algorithms keep their own clamps; these bounds are what the service accepts.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from service.core.errors import SpecError, spec_error_from
from service.core.schema import describe_params
from service.metaheuristics import OPTIMIZERS


def params_model(
    name: str,
    params: dict[str, tuple[Any, str]],
    bounds: dict[str, tuple[Any, Any]],
    choices: dict[str, tuple[str, ...]] | None = None,
) -> type[BaseModel]:
    """A strict model with one field per parameter: its default, bounds, choices and description."""
    fields: dict[str, Any] = {}
    for param, (default, description) in params.items():
        low, high = bounds.get(param, (None, None))
        allowed = (choices or {}).get(param)
        if allowed:
            kind: Any = Literal[allowed]
        elif isinstance(default, bool):
            kind = bool
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in (default, low, high) if v is not None):
            kind = int
        else:
            kind = float  # strict floats still take whole numbers: 1 is a valid rate
        if default is None:
            kind = kind | None
        fields[param] = (kind, Field(default, ge=low, le=high, description=description))
    return create_model(f"{name}_params", __config__=ConfigDict(extra="forbid", strict=True), **fields)


@cache
def strategy_models() -> dict[str, type[BaseModel]]:
    return {name: params_model(name, cls.PARAMS, cls.BOUNDS, cls.CHOICES) for name, cls in OPTIMIZERS.items()}


def validate_strategy_params(strategy: str, params: Any, field: str) -> dict[str, Any]:
    """`params` completed with the strategy's defaults, or a 422 naming f"{field}.{param}"."""
    models = strategy_models()
    if strategy not in models:
        # The strategy sits beside its params: "search.params" -> "search.strategy".
        parent = field.rpartition(".")[0]
        raise SpecError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(models)}",
            field=f"{parent}.strategy" if parent else "strategy",
        )
    return validate_params(models[strategy], params, field)


def validate_params(model: type[BaseModel], params: Any, field: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise SpecError(f"{field} must be an object of parameter names and values", field=field)
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as exc:
        raise spec_error_from(exc, model, prefix=field) from None


def strategies_catalog() -> list[dict[str, Any]]:
    return [
        {"name": name, "title": _title(cls), "parameters": describe_params(strategy_models()[name])}
        for name, cls in OPTIMIZERS.items()
    ]


def _title(cls: type) -> str:
    doc = sys.modules[cls.__module__].__doc__ or cls.__doc__ or cls.__name__
    return doc.strip().splitlines()[0].rstrip(".")
