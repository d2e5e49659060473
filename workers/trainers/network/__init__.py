"""Network jobs: Keras and PyTorch networks built from a layer list, trained epoch by epoch
with a report and a checkpoint after each. What both frameworks share is in `common`."""

from __future__ import annotations

import importlib

from service.data.arrays import ArrayData
from service.network.spec import NetworkRun
from workers.trainers.base import Allotment, DataSource, Reporter, TrainedModel
from workers.trainers.datasets import load_arrays


def load_data(run: NetworkRun, source: DataSource) -> ArrayData:
    image = run.image.model_dump() if run.image else None
    return load_arrays(
        run.dataset, tuple(run.input_shape), run.task, run.evaluation, source.uploaded, source.data_dir, image
    )


def preload() -> None:
    """Load both frameworks now (a CPU worker does this before it forks, so every job starts warm)."""
    importlib.import_module("workers.trainers.network.keras_trainer")
    importlib.import_module("workers.trainers.network.torch_trainer")


def train(run: NetworkRun, data: ArrayData, report: Reporter, allotted: Allotment) -> TrainedModel:
    # Each framework loads only when a job needs it (TensorFlow takes seconds to import, and a
    # GPU worker must not initialise CUDA before it forks its job's process).
    if run.framework == "tensorflow":
        from workers.trainers.network.keras_trainer import train_keras

        return train_keras(run, data, report, allotted)
    from workers.trainers.network.torch_trainer import train_torch

    return train_torch(run, data, report, allotted)
