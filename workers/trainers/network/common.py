"""What the Keras and PyTorch trainers share: input scaling, checkpoints, epoch reports and
test metrics. Each framework's fitting is in its own module."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from service.core.storage import atomic_path
from service.data.arrays import ArrayData
from service.data.tasks import CLASSIFICATION
from service.network.spec import NetworkRun
from workers.trainers.base import Reporter, TrainedModel
from workers.trainers.scores import classification_metrics, regression_metrics

T = TypeVar("T")


def input_preparation(data: ArrayData) -> dict[str, Any]:
    """How the model turns raw input into what its first layer expects (saved with the model)."""
    if data.image:
        return {"scale": 1.0 / float(data.pixel_max or 1.0)}
    x = data.x_train.astype(np.float64)
    std = x.std(axis=0)
    return {"mean": x.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def split_validation(
    data: ArrayData, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
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
# Checkpoints kept while a job runs: the newest, and the one before in case the newest
# cannot be read back (a file a dying worker left half-written, or one that vanished).
KEEP = 2


def checkpoints(directory: Path | None, suffix: str) -> list[Checkpoint]:
    """The job's checkpoints, newest first."""
    if directory is None or not directory.exists():
        return []
    found = [
        Checkpoint(int(m.group(1)), p) for p in directory.glob(f"epoch-*{suffix}") if (m := CHECKPOINT.match(p.name))
    ]
    return sorted(found, key=lambda c: c.epoch, reverse=True)


def resume(report: Reporter, folder: Path | None, suffix: str, load: Callable[[Path], T]) -> tuple[T, int] | None:
    """What the newest readable checkpoint holds, and its epoch; None to start from epoch 1.

    A checkpoint that cannot be read is said so in the job's events, removed, and the one
    before it tried; when none can be read the job starts over rather than fail.
    """
    found = checkpoints(folder, suffix)
    for checkpoint in found:
        try:
            state = load(checkpoint.path)
        except Exception as exc:  # truncated, corrupt or gone: any of them means "not this one"
            report.event(
                "log",
                {
                    "message": f"the checkpoint of epoch {checkpoint.epoch} could not be read "
                    f"({type(exc).__name__}: {str(exc)[:200]}); skipping it"
                },
            )
            checkpoint.path.unlink(missing_ok=True)
            continue
        report.event("log", {"message": f"resuming from the checkpoint of epoch {checkpoint.epoch}"})
        return state, checkpoint.epoch
    if found:
        report.event("log", {"message": "no checkpoint could be read; starting over from epoch 1"})
    return None


def save_checkpoint(directory: Path, epoch: int, suffix: str, write: Callable[[Path], None]) -> None:
    """Write the epoch's checkpoint under a temporary name and rename it into place, so a
    worker killed while writing leaves no half file; then drop all but the newest KEEP."""
    with atomic_path(directory / f"epoch-{epoch:04d}{suffix}") as tmp:
        write(tmp)
    for old in checkpoints(directory, suffix)[KEEP:]:
        old.path.unlink(missing_ok=True)


def keep_last_checkpoint(directory: Path | None, suffix: str) -> None:
    """Once training has ended, only the final checkpoint is worth keeping (for a job that
    keeps its checkpoints)."""
    for old in checkpoints(directory, suffix)[1:]:
        old.path.unlink(missing_ok=True)


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
    if data.resize:  # an image folder's: predict resizes pictures the same way
        described["resize"] = data.resize
    if data.features:
        described["features"] = data.features
    return described


def trained_network(
    run: NetworkRun,
    data: ArrayData,
    prepare: dict[str, Any],
    *,
    artifact: Any,
    write: Callable[[Any, Path], None],
    suffix: str,
    metrics: dict[str, Any],
    summary: str,
    parameters: dict[str, int],
    device: str,
) -> TrainedModel:
    """What either framework's trainer returns: the model, and all predict needs to rebuild and run it."""
    return TrainedModel(
        artifact=artifact,
        write=write,
        suffix=suffix,
        framework=run.framework,
        task=data.task,
        input=model_input(data),
        metrics=metrics,
        classes=data.classes,
        class_names=data.class_names,
        summary=summary,
        extra={
            "network": run.network.model_dump(),
            "prepare": prepare,
            "parameters": parameters,
            "device": device,
            "outputs_probabilities": run.outputs_probabilities,
        },
        result={"dataset": data.dataset_label} if data.dataset_label else {},  # `mnist (subset: ...)`
    )
