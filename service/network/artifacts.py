"""Loading saved networks for prediction, in each framework's safe format: `.keras`
(Keras's safe mode refuses code in the file) and PyTorch weights read with
weights_only=True into a module rebuilt from the stored layer list.

Each framework is imported when the first model of its kind is loaded: an API process
that serves scikit-learn models only never pays TensorFlow's seconds of import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]


def load_network(framework: str, path: str, meta: dict[str, Any], input_shape: list[int]) -> Predictor:
    if framework == "tensorflow":
        return _load_keras(path)
    if framework == "pytorch":
        return _load_torch(path, meta, input_shape)
    raise ValueError(f"unknown framework {framework!r}")


def _load_keras(path: str) -> Predictor:
    import keras  # a heavy framework, loaded on first use (see the module's docstring)

    import service.network.keras_builder  # noqa: F401  (registers the subclassed model for loading)

    model = keras.saving.load_model(path, safe_mode=True)
    # Calling the model directly avoids predict()'s per-call set-up for small batches.
    return lambda x: np.asarray(model(x, training=False))


def _load_torch(path: str, meta: dict[str, Any], input_shape: list[int]) -> Predictor:
    import torch  # a heavy framework, loaded on first use (see the module's docstring)

    from service.network.torch_builder import build_torch

    network = meta["network"]
    model = build_torch(network["layers"], tuple(input_shape), network["api"], meta["prepare"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return predict
