"""Layer lists as PyTorch modules (`api`: sequential -> nn.Sequential, module -> an nn.Module).

Images arrive as (batch, height, width, channels), as they are stored and as Keras
takes them; the first module turns them into PyTorch's (batch, channels, height, width)
once, and every later layer works in that layout. Scaling of raw pixels or features
is part of the module, so a saved model takes raw input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "linear": nn.Identity,
    # dim 1 is the feature axis of (batch, features) and the channel axis of (batch, C, H, W),
    # which is the axis Keras's softmax normalises (its last axis, channels-last).
    "softmax": lambda: nn.Softmax(dim=1),
}

# Keras's BatchNormalization defaults, in PyTorch's terms (its momentum is 1 - Keras's).
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.01


class Prepare(nn.Module):
    """Raw input to what the first layer expects: float, scaled or standardised, channels first."""

    def __init__(self, prepare: dict[str, Any], image: bool):
        super().__init__()
        self.image = image
        self.scale = float(prepare.get("scale") or 1.0)
        mean, std = prepare.get("mean"), prepare.get("std")
        self.standardise = mean is not None
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.standardise:
            x = (x - self.mean) / self.std
        if self.image:
            x = x.permute(0, 3, 1, 2)
        return x


class Reshape(nn.Module):
    """Reshape in the channels-last terms the layer list uses, whatever the layout inside."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        x = x.reshape(x.shape[0], *self.shape)
        if len(self.shape) == 3:
            x = x.permute(0, 3, 1, 2)
        return x


def layer_modules(layers: list[dict[str, Any]], input_shape: tuple[int, ...]) -> list[nn.Module]:
    modules: list[nn.Module] = []
    shape = tuple(input_shape)  # channels-last, as in the layer list
    for layer in layers:
        kind = layer["type"]
        if kind == "flatten":
            modules.append(nn.Flatten())
            shape = (math.prod(shape),)
        elif kind == "dense":
            modules.append(nn.Linear(shape[0], layer["units"]))
            shape = (layer["units"],)
        elif kind == "dropout":
            modules.append(nn.Dropout(layer["rate"]))
        elif kind == "conv2d":
            padding = "same" if layer["padding"] == "same" else 0
            conv = nn.Conv2d(shape[2], layer["filters"], layer["kernel_size"], stride=layer["strides"], padding=padding)
            modules.append(conv)
            k, s = layer["kernel_size"], layer["strides"]
            side = (lambda n: n) if padding == "same" else (lambda n, k=k, s=s: (n - k) // s + 1)
            shape = (side(shape[0]), side(shape[1]), layer["filters"])
        elif kind in ("maxpool2d", "avgpool2d"):
            pool = nn.MaxPool2d if kind == "maxpool2d" else nn.AvgPool2d
            p, s = layer["pool_size"], layer["strides"] or layer["pool_size"]
            modules.append(pool(p, stride=s))
            shape = ((shape[0] - p) // s + 1, (shape[1] - p) // s + 1, shape[2])
        elif kind == "batchnorm":
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            modules.append(norm(shape[-1], eps=BN_EPSILON, momentum=BN_MOMENTUM))
        elif kind == "activation":
            pass  # added below, like every layer's activation
        elif kind == "reshape":
            modules.append(Reshape(layer["shape"]))
            shape = tuple(layer["shape"])
        else:
            raise ValueError(f"unknown layer type {kind!r}")
        activation = layer.get("activation")
        if activation:
            modules.append(ACTIVATIONS[activation]())
    return modules


class LayerListNet(nn.Module):
    """The layer list as a subclassed module with an explicit forward (api 'module')."""

    def __init__(self, prepare: Prepare, layers: list[nn.Module]):
        super().__init__()
        self.prepare = prepare
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare(x)
        for layer in self.layers:
            x = layer(x)
        return x


def build_torch(
    layers: list[dict[str, Any]], input_shape: tuple[int, ...], api: str, prepare: dict[str, Any]
) -> nn.Module:
    front = Prepare(prepare, image=len(input_shape) == 3)
    body = layer_modules(layers, input_shape)
    if api == "sequential":
        return nn.Sequential(front, *body)
    if api == "module":
        return LayerListNet(front, body)
    raise ValueError(f"unknown PyTorch api {api!r}")


def count_parameters(module: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    # Buffers such as batch-norm running statistics, the counterpart of Keras's non-trainable weights.
    fixed = sum(b.numel() for name, b in module.named_buffers() if name.endswith(("running_mean", "running_var")))
    return {"trainable": trainable, "non_trainable": fixed, "total": trainable + fixed}
