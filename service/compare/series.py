"""A job's curves, from its events (the shared contract of issue 22, item 1): `epoch` events
give points (epoch, value), `metrics` events (what a job logged with MLflow or TensorBoard)
points (step, value); one series per metric key, one point per x (a later repeat, from a
resumed attempt, is dropped). What a job wrote is hostile: keys, counts and values are bounded
and checked here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.compare.flatten import number
from service.compare.items import EPOCH, STEP, Series
from service.jobs import lifecycle

EPOCH_FIELDS = frozenset({"epoch", "epochs", "epoch_time"})  # what an epoch event carries besides metrics
X_FIELD = {"epoch": (EPOCH, EPOCH_FIELDS), "metrics": (STEP, lifecycle.METRICS_EVENT_FIELDS)}
EVENT_TYPES = tuple(X_FIELD)
MAX_SERIES = 100  # metric keys per item
MAX_KEY_LENGTH = 250  # MLflow's own limit on a metric key
MAX_POINTS = 500  # per series, after thinning: more than a chart's width has pixels for


def job_series(events: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Series]:
    """The series of a job's (type, data) events, in their order."""
    found: dict[str, tuple[str, dict[float, float]]] = {}
    for type_, data in events:
        if type_ not in X_FIELD or not isinstance(data, dict):
            continue
        axis, skipped = X_FIELD[type_]
        x = number(data.get(axis))
        if x is None:
            continue
        for key, value in data.items():
            y = number(value)
            if key in skipped or y is None or not isinstance(key, str) or len(key) > MAX_KEY_LENGTH:
                continue
            if key not in found:
                if len(found) >= MAX_SERIES:
                    continue
                found[key] = (axis, {})
            series_axis, points = found[key]
            # One key on both axes (a script that calls report() and logs to MLflow): the first wins.
            if series_axis == axis:
                points.setdefault(x, y)
    return {key: Series(axis, thin(sorted(points.items()))) for key, (axis, points) in found.items() if points}


def thin(points: list[tuple[float, float]]) -> list[list[float]]:
    """At most MAX_POINTS of the points, evenly spread, the first and the last kept."""
    if len(points) > MAX_POINTS:
        last = len(points) - 1
        points = [points[round(i * last / (MAX_POINTS - 1))] for i in range(MAX_POINTS)]
    return [[_plain(x), y] for x, y in points]


def _plain(x: float) -> float | int:
    return int(x) if x.is_integer() else x
