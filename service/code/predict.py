"""Predict for models from students' code, exported to ONNX by `labtrain_job.save_model` and
run here by onnxruntime: the API never imports or runs the student's code, only the graph of
standard operators the worker checked (workers/trainers/code/served.py).

Inputs are JSON instances of the model's input shape and dtype, or, for an image model,
uploaded pictures: a model of one 28x28 channel (or 784 inputs) gets MNIST's preparation
scaled to 0..1 (x / 255.0, as the course does); any model may declare its own with
save_model(..., preprocess={"size", "channels", "scale", "invert", "mean", "std"}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from service.code import onnx_check
from service.core.errors import Conflict, SpecError
from service.data.images import mnist_digit, picture, to_input
from service.data.instances import array_batch, class_labels, class_output, picture_batch, pictures_sent

if TYPE_CHECKING:  # a model's process imports this module: no database code for a type hint
    from service.core.orm import Model

MNIST_SIDE = 28
MIN_SIDE = 8  # narrower inputs are sequences or tables (40 steps of 1 value), not pictures


class OnnxPredictor:
    def load(self, model: Model) -> Any:
        import onnxruntime  # loaded with the first ONNX model, not with the API

        with open(model.artifact_path, "rb") as handle:
            data = handle.read()
        try:  # again at every load: a file stored before a check was added is held to it too
            onnx_check.check(data, model.input["shape"])
        except onnx_check.ModelRefused as exc:
            raise Conflict(f"the ONNX model cannot be served: {exc}", field="id") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # the API serves many requests at once
        options.inter_op_num_threads = 1
        try:
            # From bytes: the session has no folder to look for other files in.
            return onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise Conflict(f"this model cannot be loaded here: {exc}", field="id") from None

    def predict(self, loaded: Any, model: Model, instances: Any, images: list[tuple[str, bytes]] | None) -> dict:
        shape, dtype = model.input["shape"], model.input["dtype"]
        batch = image_batch(images, shape, model.meta or {}) if images is not None else None
        if batch is None:
            batch = array_batch(instances, shape, dtype)
        batch = batch.astype(dtype)
        try:
            outputs = loaded.run(None, {loaded.get_inputs()[0].name: batch})[0]
        except Exception as exc:
            raise SpecError(f"the model could not run on these instances: {exc}", field="instances") from None
        return model_output(np.asarray(outputs), model)

    def picture(self, model: Model) -> dict[str, Any] | None:
        """An ONNX model that takes pictures: the size they are resized to (its page offers an upload)."""
        if (model.meta or {}).get("format") != "onnx":
            return None
        return picture_input(model.input["shape"], model.meta.get("preprocess"))


def model_output(outputs: np.ndarray, model: Model) -> dict[str, Any]:
    if model.task == "classification":
        answer = class_output(outputs.reshape(len(outputs), -1), model.classes, model.meta["outputs_probabilities"])
        if model.class_names:
            answer["labels"] = class_labels(answer["predictions"], model.classes, model.class_names)
        return answer
    rows = outputs.reshape(len(outputs), -1)
    if model.task == "regression" and rows.shape[1] == 1:
        return {"predictions": rows[:, 0].astype(float).tolist()}
    return {"predictions": outputs.astype(float).round(6).tolist()}


# --- pictures -------------------------------------------------------------------------------


def image_layout(shape: list[int], preprocess: dict[str, Any] | None) -> tuple[int, int, int, str] | None:
    """(height, width, channels, layout) when the input is a picture: CHW, HWC, HW or flat
    (a flattened picture of the size preprocess names, or MNIST's 784); None otherwise."""
    size = (preprocess or {}).get("size")
    channels = (preprocess or {}).get("channels")
    if len(shape) == 3 and shape[2] in (1, 3) and min(shape[:2]) >= MIN_SIDE:
        return shape[0], shape[1], shape[2], "hwc"
    if len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= MIN_SIDE:
        return shape[1], shape[2], shape[0], "chw"
    if len(shape) == 2 and min(shape) >= MIN_SIDE:
        return shape[0], shape[1], 1, "hw"
    if len(shape) == 1:
        if size:
            depth = channels or 1
            return (size[0], size[1], depth, "flat") if size[0] * size[1] * depth == shape[0] else None
        if shape[0] == MNIST_SIDE * MNIST_SIDE:
            return MNIST_SIDE, MNIST_SIDE, 1, "flat"
    return None


def _digits(layout: tuple[int, int, int, str], preprocess: dict[str, Any] | None) -> bool:
    """A 28x28 grey input with no preprocess of its own is taken for MNIST digits."""
    return preprocess is None and layout[:3] == (MNIST_SIDE, MNIST_SIDE, 1)


def picture_input(shape: list[int], preprocess: dict[str, Any] | None) -> dict[str, Any] | None:
    """How predict takes pictures for this model, for its page: their size and channels, and
    whether they are read as digits (found and centred the way MNIST was made)."""
    layout = image_layout(shape, preprocess)
    if layout is None:
        return None
    return {"size": list(layout[:2]), "channels": layout[2], "digits": _digits(layout, preprocess)}


def image_batch(images: list[tuple[str, bytes]], shape: list[int], meta: dict[str, Any]) -> np.ndarray:
    pictures_sent(images)
    preprocess = meta.get("preprocess")
    layout = image_layout(shape, preprocess)
    if layout is None:
        raise SpecError(
            f"this model takes inputs of shape {shape}, not pictures; send JSON instances (or save the model "
            "with save_model(..., preprocess={'size': [h, w], 'channels': 1 or 3}))",
            field="file",
        )
    height, width, channels, arrangement = layout
    mnist = _digits(layout, preprocess)

    def prepare(data: bytes) -> np.ndarray:
        if mnist:  # the digit found, centred and scaled the way MNIST was made, then x / 255.0
            pixels = to_input(mnist_digit(data), height, width, 1.0)[..., None]
        else:
            pixels = _prepared(picture(data, height, width, channels), preprocess or {})
        return _arranged(pixels, arrangement)

    return picture_batch(images, prepare)


def _prepared(pixels: np.ndarray, preprocess: dict[str, Any]) -> np.ndarray:
    if preprocess.get("invert"):
        pixels = 255.0 - pixels
    pixels = pixels * np.float32(preprocess.get("scale") or 1.0 / 255.0)
    if preprocess.get("mean") is not None:
        pixels = pixels - np.asarray(preprocess["mean"], dtype=np.float32)
    if preprocess.get("std") is not None:
        pixels = pixels / np.asarray(preprocess["std"], dtype=np.float32)
    return pixels.astype(np.float32)


def _arranged(pixels: np.ndarray, arrangement: str) -> np.ndarray:
    """(height, width, channels) pixels in the model's own layout."""
    if arrangement == "chw":
        return np.transpose(pixels, (2, 0, 1))
    if arrangement == "hw":
        return pixels[..., 0]
    if arrangement == "flat":
        return pixels.reshape(-1)
    return pixels
