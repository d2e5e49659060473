"""What predict takes and gives for array models (networks, models from students' code): JSON
instances checked against the model's input shape, uploaded pictures made inputs, and outputs
turned into predictions, class probabilities and class names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.core.errors import SpecError
from service.data.images import ImageError

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


def pictures_sent(images: list[tuple[str, bytes]]) -> None:
    """A 4xx unless one picture or more (at most MAX_INSTANCES) came."""
    if not images:
        raise SpecError("send one or more images as multipart form fields named 'file'", field="file")
    if len(images) > MAX_INSTANCES:
        raise SpecError(f"send at most {MAX_INSTANCES} images per request", field="file")


def picture_batch(images: list[tuple[str, bytes]], prepare: Callable[[bytes], np.ndarray]) -> np.ndarray:
    """Each uploaded (filename, bytes) made an input by `prepare`, stacked; a 4xx naming the
    file that is not a usable image."""
    rows = []
    for index, (filename, data) in enumerate(images):
        try:
            rows.append(prepare(data))
        except ImageError as exc:
            raise SpecError(
                f"file {index} ({filename or 'unnamed'}): {exc}", field=f"file.{index}", code="invalid_image"
            ) from None
    return np.stack(rows)


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


def class_labels(predictions: list[Any], classes: list[Any], class_names: list[Any]) -> list[Any]:
    """The name of each predicted class (`class_names` in the order of `classes`)."""
    position = {label: i for i, label in enumerate(classes)}
    return [class_names[position[p]] for p in predictions]
