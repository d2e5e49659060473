"""Network jobs: what the Keras and PyTorch trainers share (input scaling, checkpoints,
epoch reports, test metrics); each framework's fitting is in its own module."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.algorithms import CLASSIFICATION
from service.arrays import ArrayData
from workers.trainers.base import Reporter, TrainedModel
from workers.trainers.metrics import classification_metrics, regression_metrics
from workers.trainers.registry import register


@register("network")
def train(spec: dict[str, Any], data: ArrayData, report: Reporter) -> TrainedModel:
    if spec["framework"] == "tensorflow":
        from workers.trainers.keras_trainer import train_keras

        return train_keras(spec, data, report)
    from workers.trainers.torch_trainer import train_torch

    return train_torch(spec, data, report)


def input_preparation(data: ArrayData) -> dict[str, Any]:
    """How the model turns raw input into what its first layer expects (saved with the model)."""
    if data.image:
        return {"scale": 1.0 / float(data.pixel_max or 1.0)}
    x = data.x_train.astype(np.float64)
    std = x.std(axis=0)
    return {"mean": x.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def split_validation(data: ArrayData, fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The last `fraction` of the training rows, unshuffled, as Keras's validation_split takes them."""
    if not fraction:
        return data.x_train, data.y_train, None, None
    cut = int(len(data.x_train) * (1 - fraction))
    return data.x_train[:cut], data.y_train[:cut], data.x_train[cut:], data.y_train[cut:]


def epoch_report(report: Reporter, epoch: int, epochs: int, logs: dict[str, float], seconds: float) -> None:
    metrics = {key: float(value) for key, value in logs.items()}
    report.event("epoch", {"epoch": epoch, "epochs": epochs, **metrics, "epoch_time": round(seconds, 4)})
    report.progress(fraction=epoch / epochs, epoch=epoch, epochs=epochs, metrics=metrics)


@dataclass
class Checkpoint:
    epoch: int
    path: Path


CHECKPOINT = re.compile(r"epoch-(\d+)\.")


def latest_checkpoint(directory: Path | None, suffix: str) -> Checkpoint | None:
    if directory is None or not directory.exists():
        return None
    found = [Checkpoint(int(m.group(1)), p) for p in directory.glob(f"epoch-*{suffix}")
             if (m := CHECKPOINT.match(p.name))]
    return max(found, key=lambda c: c.epoch, default=None)


def checkpoint_path(directory: Path, epoch: int, suffix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"epoch-{epoch:04d}{suffix}"


def drop_older_checkpoints(directory: Path, keep: Path) -> None:
    for path in directory.glob("epoch-*"):
        if path != keep:
            path.unlink(missing_ok=True)


def remove_checkpoints(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def held_out_metrics(data: ArrayData, outputs: np.ndarray, test_loss: float) -> dict[str, Any]:
    """Metrics on the test part from the model's outputs, labelled as the data set labels them."""
    if data.task == CLASSIFICATION:
        classes = np.asarray(data.classes)
        metrics = classification_metrics(classes[data.y_test], classes[outputs.argmax(axis=1)])
    else:
        metrics = regression_metrics(data.y_test, outputs.reshape(-1))
    return {"test_loss": float(test_loss), **metrics}


def model_input(data: ArrayData) -> dict[str, Any]:
    described: dict[str, Any] = {"shape": list(data.input_shape), "kind": "image" if data.image else "table"}
    if data.image:
        described["pixel_max"] = data.pixel_max
    if data.features:
        described["features"] = data.features
    return described
