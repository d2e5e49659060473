"""A spec's parameters and a job's metrics as flat, dotted names, the way a comparison's rows
(and a CSV's columns) name them: `training.learning_rate`, `params.n_neighbors`, `cv.mean`."""

from __future__ import annotations

import json
import math
from typing import Any

from service.jobs import keep_model

MAX_PARAMS = 1000  # rows one item adds: a spec is bounded, but a long layer list is still long
MAX_METRICS = 500
SHOWN_ELSEWHERE = ("name",)  # a spec's top-level fields an item shows as its own


def flatten_params(spec: dict[str, Any] | None) -> dict[str, Any]:
    """Every leaf of the spec under its dotted path. A list of plain values is one value (its
    JSON text: `training.metrics` = `["accuracy"]`); a list of objects is indexed
    (`network.layers.1.units`), so one layer's change is one row."""
    flat: dict[str, Any] = {}
    # A trial's model rule (the search's best score when it was submitted) is no parameter of it.
    runnable, _rule = keep_model.split(spec or {})
    stack: list[tuple[str, Any]] = [
        (key, value) for key, value in reversed(list(runnable.items())) if key not in SHOWN_ELSEWHERE
    ]
    while stack and len(flat) < MAX_PARAMS:  # a stack, not recursion: a deep spec cannot exhaust it
        path, value = stack.pop()
        if isinstance(value, dict) and value:
            stack.extend((f"{path}.{key}", inner) for key, inner in reversed(list(value.items())))
        elif isinstance(value, list) and any(isinstance(inner, (dict, list)) for inner in value):
            stack.extend((f"{path}.{index}", inner) for index, inner in reversed(list(enumerate(value))))
        else:
            flat[path] = _scalar(value)
    return flat


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, dict)):  # a list of plain values, or an empty object
        return json.dumps(value, separators=(", ", ": "))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; the text keeps it readable
    return value


def number(value: Any) -> float | None:
    """A finite number as float; None for anything else (bools, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def flatten_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """A job's final metrics: its numbers under dotted names (`cv.mean`), leaving out what is
    no single number (a confusion matrix, per-fold lists, text)."""
    flat: dict[str, float] = {}
    stack: list[tuple[str, Any]] = [(str(key), value) for key, value in reversed(list((metrics or {}).items()))]
    while stack and len(flat) < MAX_METRICS:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}", inner) for key, inner in reversed(list(value.items())))
        elif (found := number(value)) is not None:
            flat[path] = found
    return flat
