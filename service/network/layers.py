"""The declarative layer list: one schema per layer type, and shape inference.

`infer_shapes` walks a layer list from the data's input shape, so a list whose shapes
cannot connect is a 422 naming the layer at submit time, and it counts each layer's
parameters the way Keras and PyTorch both do. Image shapes are (height, width,
channels) here on both frameworks; the PyTorch builder maps them to its own layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.core.errors import SpecError, spec_error_from
from service.core.schema import describe_params

ActivationName = Literal["relu", "sigmoid", "tanh", "softmax", "gelu", "linear"]


class Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Flatten(Layer):
    type: Literal["flatten"] = "flatten"


class Dense(Layer):
    type: Literal["dense"] = "dense"
    units: int = Field(ge=1, le=65_536, description="Output features")
    activation: ActivationName | None = None


class Dropout(Layer):
    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1, description="Fraction of inputs zeroed while training")


class Conv2D(Layer):
    type: Literal["conv2d"] = "conv2d"
    filters: int = Field(ge=1, le=4096)
    kernel_size: int = Field(ge=1, le=64, description="Side of the square kernel")
    strides: int = Field(1, ge=1, le=16)
    padding: Literal["valid", "same"] = "valid"
    activation: ActivationName | None = None


class MaxPool2D(Layer):
    type: Literal["maxpool2d"] = "maxpool2d"
    pool_size: int = Field(2, ge=1, le=64)
    strides: int | None = Field(None, ge=1, le=64, description="Defaults to pool_size")


class AvgPool2D(Layer):
    type: Literal["avgpool2d"] = "avgpool2d"
    pool_size: int = Field(2, ge=1, le=64)
    strides: int | None = Field(None, ge=1, le=64, description="Defaults to pool_size")


class BatchNorm(Layer):
    type: Literal["batchnorm"] = "batchnorm"


class Activation(Layer):
    type: Literal["activation"] = "activation"
    activation: ActivationName


class Reshape(Layer):
    type: Literal["reshape"] = "reshape"
    shape: list[int] = Field(min_length=1, max_length=3, description="Target shape, batch axis excluded")


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.model_fields["type"].default: cls
    for cls in (Flatten, Dense, Dropout, Conv2D, MaxPool2D, AvgPool2D, BatchNorm, Activation, Reshape)
}
MAX_LAYERS = 100


def validate_layers(layers: Any, field: str = "network.layers") -> list[dict[str, Any]]:
    """Each layer checked against its type's schema; returns them with defaults filled in."""
    if not isinstance(layers, list) or not layers:
        raise SpecError("layers must be a non-empty list of layer objects", field=field)
    if len(layers) > MAX_LAYERS:
        raise SpecError(f"at most {MAX_LAYERS} layers", field=field)
    normalized = []
    for index, layer in enumerate(layers):
        where = f"{field}.{index}"
        if not isinstance(layer, dict):
            raise SpecError(f'layer {index} must be an object with a "type"', field=where)
        cls = LAYER_TYPES.get(layer.get("type"))  # type: ignore[arg-type]
        if cls is None:
            raise SpecError(
                f"layer {index}: unknown type {layer.get('type')!r}; use one of {', '.join(LAYER_TYPES)}",
                field=f"{where}.type",
            )
        try:
            normalized.append(cls.model_validate(layer).model_dump())
        except ValidationError as exc:
            error = spec_error_from(exc, cls, prefix=where)
            error.message = f"layer {index} ({layer['type']}): {error.message}"
            raise error from None
    return normalized


@dataclass(frozen=True)
class LayerShape:
    output: tuple[int, ...]
    trainable: int  # parameters the optimiser updates
    non_trainable: int  # e.g. batch-norm running statistics (buffers in PyTorch)


def infer_shapes(
    layers: list[dict[str, Any]], input_shape: tuple[int, ...], field: str = "network.layers"
) -> list[LayerShape]:
    """Output shape and parameter counts of every layer, or a 422 at the first that cannot connect."""
    shape = tuple(input_shape)
    shapes = []
    for index, layer in enumerate(layers):
        try:
            shape, trainable, fixed = _step(layer, shape)
        except _ShapeError as exc:
            raise SpecError(
                f"layer {index} ({layer['type']}): {exc}", field=f"{field}.{index}", code="invalid_network"
            ) from None
        shapes.append(LayerShape(shape, trainable, fixed))
    return shapes


class _ShapeError(Exception):
    pass


def _step(layer: dict[str, Any], shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    kind = layer["type"]
    if kind == "flatten":
        return (math.prod(shape),), 0, 0
    if kind == "dense":
        if len(shape) != 1:
            raise _ShapeError(f"dense needs a flat input but gets shape {list(shape)}; add a flatten layer before it")
        return (layer["units"],), shape[0] * layer["units"] + layer["units"], 0
    if kind in ("dropout", "activation"):
        return shape, 0, 0
    if kind == "batchnorm":
        channels = shape[-1]
        return shape, 2 * channels, 2 * channels
    if kind == "reshape":
        target = tuple(layer["shape"])
        if any(d < 1 for d in target) or math.prod(target) != math.prod(shape):
            raise _ShapeError(f"cannot reshape {list(shape)} ({math.prod(shape)} values) to {list(target)}")
        return target, 0, 0
    if len(shape) != 3:
        raise _ShapeError(
            f"{kind} needs an image input (height, width, channels) but gets shape {list(shape)}; "
            "add a reshape layer before it"
        )
    height, width, channels = shape
    if kind == "conv2d":
        k, s = layer["kernel_size"], layer["strides"]
        if layer["padding"] == "same":
            if s != 1:
                raise _ShapeError("padding 'same' works with strides 1 only; use padding 'valid'")
            out_h, out_w = height, width
        else:
            out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
        if out_h < 1 or out_w < 1:
            raise _ShapeError(f"a {k}x{k} kernel does not fit the {height}x{width} input")
        return (out_h, out_w, layer["filters"]), k * k * channels * layer["filters"] + layer["filters"], 0
    # pooling
    p = layer["pool_size"]
    s = layer["strides"] or p
    out_h, out_w = (height - p) // s + 1, (width - p) // s + 1
    if out_h < 1 or out_w < 1:
        raise _ShapeError(f"a {p}x{p} pool does not fit the {height}x{width} input")
    return (out_h, out_w, channels), 0, 0


def parameter_counts(shapes: list[LayerShape]) -> dict[str, int]:
    trainable = sum(s.trainable for s in shapes)
    fixed = sum(s.non_trainable for s in shapes)
    return {"trainable": trainable, "non_trainable": fixed, "total": trainable + fixed}


def ends_with_softmax(layers: list[dict[str, Any]]) -> bool:
    """Whether the network outputs probabilities (else logits, and the loss takes from_logits)."""
    for layer in reversed(layers):
        if layer["type"] in ("dropout", "reshape", "flatten"):
            continue
        return layer.get("activation") == "softmax"
    return False


def catalog() -> list[dict[str, Any]]:
    return [
        {"type": name, "parameters": [p for p in describe_params(cls) if p["name"] != "type"]}
        for name, cls in LAYER_TYPES.items()
    ]
