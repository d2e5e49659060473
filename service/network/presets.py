"""The course's networks as layer lists."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "mlp": {
        "title": "TensorFlow 2 quickstart: Flatten, Dense 128 relu, Dropout 0.2, Dense 10 (logits)",
        "layers": [
            {"type": "flatten"},
            {"type": "dense", "units": 128, "activation": "relu"},
            {"type": "dropout", "rate": 0.2},
            {"type": "dense", "units": "classes"},
        ],
    },
    "feedforward": {
        "title": "PyTorch feed-forward network: Flatten, Linear 784-512, ReLU, Linear 512-10",
        "layers": [
            {"type": "flatten"},
            {"type": "dense", "units": 512},
            {"type": "activation", "activation": "relu"},
            {"type": "dense", "units": "classes"},
        ],
    },
    "lenet": {
        "title": "LeNet-style CNN: conv 6@5x5, max-pool 2, conv 16@5x5, max-pool 2, fc 120, fc 84, fc 10",
        "layers": [
            {"type": "conv2d", "filters": 6, "kernel_size": 5, "padding": "same", "activation": "relu"},
            {"type": "maxpool2d", "pool_size": 2},
            {"type": "conv2d", "filters": 16, "kernel_size": 5, "activation": "relu"},
            {"type": "maxpool2d", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 120, "activation": "relu"},
            {"type": "dense", "units": 84, "activation": "relu"},
            {"type": "dense", "units": "classes"},
        ],
    },
}


def preset_layers(name: str, n_outputs: int, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """The preset's layers sized for the data: the last layer has one unit per output.

    LeNet-5 was made for 32x32 input with unpadded convolutions; on MNIST's 28x28 the
    first convolution pads ('same') to get the same 5x5x16 maps, and on smaller images
    (scikit-learn's 8x8 digits) the second pads too so the maps do not vanish.
    """
    layers = [dict(layer) for layer in PRESETS[name]["layers"]]
    for layer in layers:
        if layer.get("units") == "classes":
            layer["units"] = n_outputs
    if name == "lenet" and len(input_shape) == 3:
        side = min(input_shape[:2])
        layers[0]["padding"] = "valid" if side >= 32 else "same"
        after_first_pool = (side - 4 if side >= 32 else side) // 2
        layers[2]["padding"] = "valid" if after_first_pool >= 10 else "same"
    return layers
