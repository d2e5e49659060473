"""Turning JSON instances into a model's input, and its output into JSON."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from service.errors import SpecError

MAX_INSTANCES = 10_000


def tabular_frame(instances: Any, features: list[str], categorical: list[str]) -> pd.DataFrame:
    """Rows given as lists (in feature order) or objects (by feature name), checked cell by cell."""
    if not isinstance(instances, list) or not instances:
        raise SpecError("instances must be a non-empty list of rows", field="instances")
    if len(instances) > MAX_INSTANCES:
        raise SpecError(f"send at most {MAX_INSTANCES} instances per request", field="instances")
    rows = []
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            unknown = sorted(set(row) - set(features))
            missing = [f for f in features if f not in row]
            if unknown or missing:
                raise SpecError(f"instances[{i}]: " + "; ".join(filter(None, [
                    f"unknown features {unknown}" if unknown else "",
                    f"missing features {missing}" if missing else ""])), field=f"instances.{i}")
            row = [row[f] for f in features]
        if not isinstance(row, list):
            raise SpecError(f"instances[{i}] must be a list of {len(features)} values or an object "
                            "keyed by feature name", field=f"instances.{i}")
        if len(row) != len(features):
            raise SpecError(f"instances[{i}] has {len(row)} features; the model expects {len(features)} "
                            f"({', '.join(features)})", field=f"instances.{i}",
                            details={"expected": len(features), "got": len(row)})
        rows.append([_cell(value, name in categorical, i, j) for j, (value, name) in enumerate(zip(row, features))])
    frame = pd.DataFrame(rows, columns=features)
    numeric = [f for f in features if f not in categorical]
    return frame.astype({name: float for name in numeric})


def _cell(value: Any, categorical: bool, i: int, j: int) -> Any:
    if value is None:
        return np.nan
    if categorical:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value) if not isinstance(value, str) else value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    kind = "text or a number" if categorical else "a finite number"
    raise SpecError(f"instances[{i}][{j}] must be {kind} (or null for a missing value), not {value!r}",
                    field=f"instances.{i}.{j}")


def predict_tabular(pipeline: Any, frame: pd.DataFrame, task: str) -> dict[str, Any]:
    try:
        if task == "decomposition":
            return {"predictions": pipeline.transform(frame).tolist()}
        output: dict[str, Any] = {"predictions": np.asarray(pipeline.predict(frame)).tolist()}
        if task == "classification" and hasattr(pipeline, "predict_proba"):
            output["probabilities"] = np.asarray(pipeline.predict_proba(frame)).round(6).tolist()
    except ValueError as exc:
        # e.g. a missing value sent to a model trained without imputation
        raise SpecError(f"the model cannot use these instances: {exc}", field="instances") from None
    return output


def array_batch(instances: Any, input_shape: list[int]) -> np.ndarray:
    """Instances for an array model: each one nested lists of the input's shape (an image may
    leave out its channel axis), as float32."""
    if not isinstance(instances, list) or not instances:
        raise SpecError("instances must be a non-empty list of inputs", field="instances")
    if len(instances) > MAX_INSTANCES:
        raise SpecError(f"send at most {MAX_INSTANCES} instances per request", field="instances")
    shape = tuple(input_shape)
    accepted = {shape, shape[:-1]} if len(shape) == 3 and shape[-1] == 1 else {shape}
    rows = []
    for i, instance in enumerate(instances):
        try:
            row = np.asarray(instance, dtype=np.float32)
        except (ValueError, TypeError):
            raise SpecError(f"instances[{i}] must be nested lists of numbers of shape {list(shape)}",
                            field=f"instances.{i}") from None
        if row.shape not in accepted:
            raise SpecError(f"instances[{i}] has shape {list(row.shape)}; the model expects {list(shape)}",
                            field=f"instances.{i}", details={"expected": list(shape), "got": list(row.shape)})
        if not np.isfinite(row).all():
            raise SpecError(f"instances[{i}] holds a value that is not a finite number", field=f"instances.{i}")
        rows.append(row.reshape(shape))
    return np.stack(rows)


def network_output(outputs: np.ndarray, task: str, classes: list[Any] | None, probabilities: bool) -> dict[str, Any]:
    """Predictions (class labels or numbers) and class probabilities from a network's outputs."""
    if task != "classification":
        return {"predictions": outputs.reshape(len(outputs), -1)[:, 0].astype(float).tolist()}
    from service.nets.artifacts import softmax

    probs = outputs if probabilities else softmax(outputs.astype(np.float64))
    labels = np.asarray(classes)[probs.argmax(axis=1)]
    return {"predictions": labels.tolist(), "probabilities": np.asarray(probs, dtype=float).round(6).tolist()}
