"""The `mlp` preset trains like the TensorFlow 2 quickstart it stands for: same data, same
seed, 5 epochs at batch 32, and the test accuracy within a point of the plain script's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from service.data.arrays import ArrayData
from service.network.layers import validate_layers
from service.network.presets import preset_layers
from tests.support.digit_images import MNIST_8K
from tests.support.trainers import ListReporter
from tests.workers.trainers.test_network import network_spec
from workers.trainers import Allotment
from workers.trainers.network import train

QUICKSTART = """
import sys
import numpy as np
import keras
keras.utils.set_random_seed(0)
data = np.load(sys.argv[1])
x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
x_train, x_test = x_train / 255.0, x_test / 255.0
model = keras.models.Sequential([
    keras.layers.Input(shape=(28, 28)),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(10),
])
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(optimizer="adam", loss=loss_fn, metrics=["accuracy"])
model.fit(x_train, y_train, epochs=5, verbose=0)
print(model.evaluate(x_test, y_test, verbose=0)[1])
"""


def test_mlp_preset_matches_the_keras_quickstart():
    plain = subprocess.run(
        [sys.executable, "-c", QUICKSTART, str(MNIST_8K)], capture_output=True, text=True, timeout=600, check=True
    )
    plain_accuracy = float(plain.stdout.strip().splitlines()[-1])

    with np.load(MNIST_8K) as npz:
        data = ArrayData(
            x_train=npz["x_train"][..., None],
            y_train=npz["y_train"].astype(np.int64),
            x_test=npz["x_test"][..., None],
            y_test=npz["y_test"].astype(np.int64),
            task="classification",
            input_shape=(28, 28, 1),
            classes=list(range(10)),
            pixel_max=255.0,
        )
    layers = validate_layers(preset_layers("mlp", 10, (28, 28, 1)))
    trained = train(
        network_spec("tensorflow", layers, "sequential", epochs=5, seed=0), data, ListReporter(), Allotment()
    )
    ours = trained.metrics["accuracy"]
    assert ours >= 0.93, ours
    assert abs(ours - plain_accuracy) <= 0.01, (ours, plain_accuracy)
