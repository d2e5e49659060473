"""A Keras model (Functional API) trained briefly and saved with save_model; the inputs and
its own outputs go to outputs/check.npz."""

import keras
import numpy as np

import labtrain_job

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(300, 12)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int64")
inputs = keras.Input((12,))
hidden = keras.layers.Dense(16, activation="relu")(inputs)
outputs = keras.layers.Dense(3)(hidden)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=2, verbose=0, callbacks=[labtrain_job.keras_callback()])
check = np.random.default_rng(1).normal(size=(100, 12)).astype("float32")
np.savez(labtrain_job.outputs_dir() / "check.npz", x=check, y=model.predict(check, verbose=0))
labtrain_job.save_model(model, check[:10], task="output")
