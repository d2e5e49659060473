"""What predict takes and gives for array models (networks, models from students' code): JSON
instances checked against the model's input shape, and outputs turned into predictions and
class probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.errors import SpecError

MAX_INSTANCES = 10_000  # inputs per predict request
INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8")


def array_batch(instances: Any, input_shape: list[int], dtype: str = "float32") -> np.ndarray:
    """Instances for an array model: each one nested lists of the input's shape (an image may
    leave out its channel axis), as `dtype` (whole numbers for an integer input: token ids)."""
    if not isinstance(instances, list) or not instances:
        raise SpecError("instances must be a non-empty list of inputs", field="instances")
    if len(instances) > MAX_INSTANCES:
        raise SpecError(f"send at most {MAX_INSTANCES} instances per request", field="instances")
    shape = tuple(input_shape)
    accepted = {shape, shape[:-1]} if len(shape) == 3 and shape[-1] == 1 else {shape}
    integer = dtype in INTEGER_DTYPES
    rows = []
    for i, instance in enumerate(instances):
        try:
            row = np.asarray(instance, dtype=np.float64)
        except (ValueError, TypeError):
            raise SpecError(
                f"instances[{i}] must be nested lists of numbers of shape {list(shape)}", field=f"instances.{i}"
            ) from None
        if row.shape not in accepted:
            raise SpecError(
                f"instances[{i}] has shape {list(row.shape)}; the model expects {list(shape)}",
                field=f"instances.{i}",
                details={"expected": list(shape), "got": list(row.shape)},
            )
        if not np.isfinite(row).all():
            raise SpecError(f"instances[{i}] holds a value that is not a finite number", field=f"instances.{i}")
        if integer and not (row == np.round(row)).all():
            raise SpecError(f"instances[{i}] must hold whole numbers (the model takes {dtype})", field=f"instances.{i}")
        if integer and (row < np.iinfo(dtype).min).any() | (row > np.iinfo(dtype).max).any():
            raise SpecError(f"instances[{i}] holds a number out of {dtype}'s range", field=f"instances.{i}")
        rows.append(row.reshape(shape))
    return np.stack(rows).astype(dtype)


def softmax(outputs: np.ndarray) -> np.ndarray:
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def class_output(outputs: np.ndarray, classes: list[Any] | None, probabilities: bool) -> dict[str, Any]:
    """A classifier's predictions (its classes, or output indices without them) and probabilities."""
    probs = outputs if probabilities else softmax(outputs.astype(np.float64))
    chosen = probs.argmax(axis=1)
    labels = np.asarray(classes)[chosen] if classes else chosen
    return {"predictions": labels.tolist(), "probabilities": np.asarray(probs, dtype=float).round(6).tolist()}
