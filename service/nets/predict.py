"""Predict for networks: JSON inputs of the model's shape, or pictures of digits for
image models (prepared the way MNIST was made, then sized and scaled for the model)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.core.errors import SpecError
from service.core.orm import Model
from service.data.images import ImageError, mnist_digit, to_input
from service.data.tasks import CLASSIFICATION
from service.jobs.families import MAX_INSTANCES
from service.nets.artifacts import load_network, softmax


class NetworkPredictor:
    def load(self, model: Model) -> Any:
        return load_network(model.framework, model.artifact_path, model.meta, model.input["shape"])

    def predict(self, loaded: Any, model: Model, instances: Any, images: list[tuple[str, bytes]] | None) -> dict:
        batch = image_batch(images, model.input) if images is not None else array_batch(instances, model.input["shape"])
        return network_output(loaded(batch), model.task, model.classes, model.meta["outputs_probabilities"])


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
        rows.append(row.reshape(shape))
    return np.stack(rows)


def image_batch(images: list[tuple[str, bytes]], model_input: dict) -> np.ndarray:
    """Uploaded digit images converted the way MNIST was made, sized and scaled for the model."""
    if not images:
        raise SpecError("send one or more images as multipart form fields named 'file'", field="file")
    shape = model_input["shape"]
    if model_input.get("kind") != "image" or shape[-1] != 1:
        raise SpecError(f"this model takes inputs of shape {shape}, not images; send JSON instances", field="file")
    inputs = []
    for index, (filename, data) in enumerate(images):
        try:
            digit = mnist_digit(data)
        except ImageError as exc:
            raise SpecError(
                f"file {index} ({filename or 'unnamed'}): {exc}", field=f"file.{index}", code="invalid_image"
            ) from None
        inputs.append(to_input(digit, shape[0], shape[1], model_input.get("pixel_max") or 255.0))
    return np.stack(inputs)[..., None]


def network_output(outputs: np.ndarray, task: str, classes: list[Any] | None, probabilities: bool) -> dict[str, Any]:
    """Predictions (class labels or numbers) and class probabilities from a network's outputs."""
    if task != CLASSIFICATION:
        return {"predictions": outputs.reshape(len(outputs), -1)[:, 0].astype(float).tolist()}
    probs = outputs if probabilities else softmax(outputs.astype(np.float64))
    labels = np.asarray(classes)[probs.argmax(axis=1)]
    return {"predictions": labels.tolist(), "probabilities": np.asarray(probs, dtype=float).round(6).tolist()}
