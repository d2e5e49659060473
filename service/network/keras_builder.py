"""Layer lists as Keras models, in all three model APIs: Sequential, Functional, Subclassing.

Scaling of raw pixels or features is the model's first layer, so a saved model takes
raw input. Importing this module imports TensorFlow: do it only where it is needed.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers as kl


def keras_layer(layer: dict[str, Any]) -> keras.layers.Layer:
    kind = layer["type"]
    if kind == "flatten":
        return kl.Flatten()
    if kind == "dense":
        return kl.Dense(layer["units"], activation=layer["activation"])
    if kind == "dropout":
        return kl.Dropout(layer["rate"])
    if kind == "conv2d":
        return kl.Conv2D(
            layer["filters"],
            layer["kernel_size"],
            strides=layer["strides"],
            padding=layer["padding"],
            activation=layer["activation"],
        )
    if kind == "maxpool2d":
        return kl.MaxPooling2D(layer["pool_size"], strides=layer["strides"])
    if kind == "avgpool2d":
        return kl.AveragePooling2D(layer["pool_size"], strides=layer["strides"])
    if kind == "batchnorm":
        return kl.BatchNormalization()
    if kind == "activation":
        return kl.Activation(layer["activation"])
    if kind == "reshape":
        return kl.Reshape(tuple(layer["shape"]))
    raise ValueError(f"unknown layer type {kind!r}")


@keras.saving.register_keras_serializable(package="labtrain")
class Standardize(keras.layers.Layer):
    """(x - mean) / std with the training data's statistics, kept in the config (no weights)."""

    def __init__(self, mean: list[float], std: list[float], **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = list(mean), list(std)

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        return (x - keras.ops.convert_to_tensor(self.mean)) / keras.ops.convert_to_tensor(self.std)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def prepare_layer(prepare: dict[str, Any]) -> keras.layers.Layer | None:
    if prepare.get("mean") is not None:
        return Standardize(prepare["mean"], prepare["std"])
    if prepare.get("scale"):
        return kl.Rescaling(prepare["scale"])
    return None


@keras.saving.register_keras_serializable(package="labtrain")
class LayerListModel(keras.Model):
    """The layer list as a subclassed model with its own call() (api 'subclassing')."""

    def __init__(self, layer_specs: list[dict[str, Any]], input_shape: list[int], prepare: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        self.layer_specs, self.input_dims, self.prepare_spec = layer_specs, list(input_shape), prepare
        self.prepare = prepare_layer(prepare)
        self.body = [keras_layer(spec) for spec in layer_specs]

    def call(self, inputs, training=None):
        x = self.prepare(inputs) if self.prepare is not None else inputs
        for layer in self.body:
            x = layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "layer_specs": self.layer_specs,
            "input_shape": self.input_dims,
            "prepare": self.prepare_spec,
        }


def build_keras(
    layers: list[dict[str, Any]], input_shape: tuple[int, ...], api: str, prepare: dict[str, Any]
) -> keras.Model:
    front = prepare_layer(prepare)
    if api == "sequential":
        stack = [keras.Input(shape=input_shape)] + ([front] if front else []) + [keras_layer(layer) for layer in layers]
        return keras.Sequential(stack)
    if api == "functional":
        inputs = keras.Input(shape=input_shape)
        x = front(inputs) if front else inputs
        for layer in layers:
            x = keras_layer(layer)(x)
        return keras.Model(inputs, x)
    if api == "subclassing":
        model = LayerListModel(layers, list(input_shape), prepare)
        model(keras.ops.zeros((1, *input_shape)))  # a subclassed model makes its weights on first call
        return model
    raise ValueError(f"unknown Keras api {api!r}")


def count_parameters(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    fixed = sum(int(math.prod(w.shape)) for w in model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": fixed, "total": trainable + fixed}


def summary_text(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines)
