"""The TensorFlow 2 quickstart as a code job: Keras reports each epoch through labtrain_job's
callback, and the script prints the same values."""

import keras
import numpy as np

import labtrain_job


class Printer(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print(
            f"epoch {epoch + 1} " + " ".join(f"{k} {float(v)!r}" for k, v in sorted((logs or {}).items())), flush=True
        )


keras.utils.set_random_seed(0)
data = np.load(labtrain_job.dataset_path())
x_train, y_train = data["x_train"][:3000] / 255.0, data["y_train"][:3000]
x_test, y_test = data["x_test"] / 255.0, data["y_test"]
model = keras.models.Sequential(
    [
        keras.layers.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ]
)
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, verbose=0, callbacks=[labtrain_job.keras_callback(), Printer()])
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
labtrain_job.report(test_accuracy=accuracy)
model.save(labtrain_job.outputs_dir() / "quickstart.keras")
print(f"test accuracy {accuracy!r}")
