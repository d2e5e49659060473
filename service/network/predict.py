"""Predict for networks: JSON inputs of the model's shape, or pictures for image models:
resized as the model's image folder was, or, for a model of digits, prepared the way MNIST was
made, then sized and scaled for the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from service.core.errors import SpecError
from service.data.images import mnist_digit, picture, to_input
from service.data.instances import array_batch, class_labels, class_output, picture_batch, pictures_sent
from service.data.tasks import CLASSIFICATION
from service.network.artifacts import load_network

if TYPE_CHECKING:  # a model's process imports this module: no database code for a type hint
    from service.core.orm import Model


class NetworkPredictor:
    def load(self, model: Model) -> Any:
        return load_network(model.framework, model.artifact_path, model.meta, model.input["shape"])

    def predict(self, loaded: Any, model: Model, instances: Any, images: list[tuple[str, bytes]] | None) -> dict:
        batch = image_batch(images, model.input) if images is not None else array_batch(instances, model.input["shape"])
        answer = network_output(loaded(batch), model.task, model.classes, model.meta["outputs_probabilities"])
        if model.class_names and model.task == CLASSIFICATION:
            answer["labels"] = class_labels(answer["predictions"], model.classes, model.class_names)
        return answer


def image_batch(images: list[tuple[str, bytes]], model_input: dict) -> np.ndarray:
    """Uploaded pictures as a batch of the model's input."""
    pictures_sent(images)
    shape = model_input["shape"]
    if model_input.get("kind") != "image" or (shape[-1] != 1 and not model_input.get("resize")):
        raise SpecError(f"this model takes inputs of shape {shape}, not images; send JSON instances", field="file")
    return picture_batch(images, lambda data: _image_input(data, model_input))


def _image_input(data: bytes, model_input: dict) -> np.ndarray:
    height, width, channels = model_input["shape"]
    if model_input.get("resize"):  # trained on an image folder, whose pictures were resized just so
        return picture(data, height, width, channels)
    digit = mnist_digit(data)
    return to_input(digit, height, width, model_input.get("pixel_max") or 255.0)[..., None]


def network_output(outputs: np.ndarray, task: str, classes: list[Any] | None, probabilities: bool) -> dict[str, Any]:
    """Predictions (class labels or numbers) and class probabilities from a network's outputs."""
    if task != CLASSIFICATION:
        return {"predictions": outputs.reshape(len(outputs), -1)[:, 0].astype(float).tolist()}
    return class_output(outputs, classes, probabilities)
