"""Fitting a network with Keras (TensorFlow backend), reporting every epoch."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from service.data.arrays import ArrayData
from service.data.tasks import CLASSIFICATION
from service.network.keras_builder import build_keras, count_parameters, summary_text
from service.network.spec import NetworkRun, TrainingPlan
from workers import gpu_share
from workers.trainers.base import Allotment, Cancelled, Reporter, TrainedModel
from workers.trainers.network.common import (
    epoch_report,
    held_out_metrics,
    input_preparation,
    keep_last_checkpoint,
    resume,
    save_checkpoint,
    trained_network,
)

SUFFIX = ".keras"


def enable_memory_growth() -> None:
    # TensorFlow otherwise takes all GPU memory at start and keeps it until the process ends.
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised in this process
            tf.config.experimental.set_memory_growth(gpu, True)


def make_optimizer(training: TrainingPlan) -> keras.optimizers.Optimizer:
    lr, decay = training.learning_rate, training.weight_decay
    if training.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=decay or None)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=decay)
    if training.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=training.momentum, weight_decay=decay or None)
    return keras.optimizers.RMSprop(lr, momentum=training.momentum, weight_decay=decay or None)


def make_loss(run: NetworkRun) -> keras.losses.Loss:
    loss = run.training.canonical_loss
    if loss == "sparse_categorical_crossentropy":
        # Logits or probabilities, as the course's two quickstart variants have it.
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not run.outputs_probabilities)
    if loss == "huber":
        return keras.losses.Huber(delta=1.0)
    return keras.losses.MeanSquaredError() if loss == "mse" else keras.losses.MeanAbsoluteError()


class ServiceCallback(keras.callbacks.Callback):
    """Reports each epoch, writes its checkpoint, and stops within a batch of a cancel."""

    def __init__(self, report: Reporter, allotted: Allotment, epochs: int):
        super().__init__()
        self.report, self.allotted, self.epochs = report, allotted, epochs
        self.cancelled = False
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.allotted.stop_requested():
            self.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.cancelled:
            return
        seconds = time.perf_counter() - self.started
        # Report, then checkpoint: an attempt that dies between the two repeats this epoch,
        # and the repeated report is dropped (never a missing one).
        epoch_report(self.report, epoch + 1, self.epochs, logs or {}, seconds)
        if self.allotted.checkpoint_due(last=epoch + 1 == self.epochs):
            # Weights and optimizer state: a resumed job continues exactly.
            save_checkpoint(self.allotted.checkpoint_dir, epoch + 1, SUFFIX, self.model.save)


def save_model(model: keras.Model, path: Path) -> None:
    model.save(path)


def train_keras(run: NetworkRun, data: ArrayData, report: Reporter, allotted: Allotment) -> TrainedModel:
    # On a shared GPU, a logical device of the job's share; else memory growth (one or the other).
    if not gpu_share.limit_tensorflow(allotted.gpu_memory_mb):
        enable_memory_growth()
    with gpu_share.failing_on_gpu_oom(allotted.gpu_memory_mb):
        return _train_keras(run, data, report, allotted)


def _train_keras(run: NetworkRun, data: ArrayData, report: Reporter, allotted: Allotment) -> TrainedModel:
    training = run.training
    keras.utils.set_random_seed(training.seed)
    prepare = input_preparation(data)
    resumed = resume(report, allotted.checkpoint_dir, SUFFIX, keras.saving.load_model)
    if resumed is not None:
        model, start_epoch = resumed
    else:
        model, start_epoch = build_keras(run.network.layers, tuple(run.input_shape), run.network.api, prepare), 0
        model.compile(optimizer=make_optimizer(training), loss=make_loss(run), metrics=training.metrics)
    callback = ServiceCallback(report, allotted, training.epochs)
    callbacks: list[keras.callbacks.Callback] = [callback]
    stopping = training.early_stopping
    if stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stopping.monitor,
                patience=stopping.patience,
                min_delta=stopping.min_delta,
                restore_best_weights=stopping.restore_best_weights,
            )
        )
    y_train = data.y_train if data.task == CLASSIFICATION else data.y_train.astype("float32")
    history = model.fit(
        data.x_train,
        y_train,
        epochs=training.epochs,
        batch_size=training.batch_size,
        validation_split=training.validation_split or 0.0,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
        initial_epoch=start_epoch,
    )
    if callback.cancelled:
        raise Cancelled()
    keep_last_checkpoint(allotted.checkpoint_dir, SUFFIX)

    # Direct calls in chunks: predict() would trace a new function for a one-off pass.
    outputs = np.concatenate(
        [np.asarray(model(data.x_test[i : i + 1024], training=False)) for i in range(0, len(data.x_test), 1024)]
    )
    test_loss = float(make_loss(run)(data.y_test, outputs))
    metrics = held_out_metrics(data, outputs, test_loss)
    metrics["epochs_run"] = len(history.epoch) + start_epoch
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    return trained_network(
        run,
        data,
        prepare,
        artifact=model,
        write=save_model,
        suffix=SUFFIX,
        metrics=metrics,
        summary=summary_text(model),
        parameters=count_parameters(model),
        device=devices[0] if devices else "cpu",
    )
