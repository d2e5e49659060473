"""What a student's script gets from labtrain, inside a code job: `import labtrain_job`.

Standard library only, and nothing here talks to the service: reports go down a pipe the
job's worker reads, files go to folders it collects. On a laptop (no job around) every call
still works and does nothing harmful: `report` prints, the folders are ./checkpoints and
./outputs.

    import labtrain_job

    for epoch in range(1, epochs + 1):
        loss, accuracy = train_one_epoch()
        labtrain_job.report(epoch=epoch, loss=loss, accuracy=accuracy)   # a live curve
    torch.save(model.state_dict(), labtrain_job.outputs_dir() / "model.pt")  # an artifact

    model.fit(x, y, epochs=5, callbacks=[labtrain_job.keras_callback()])  # Keras: every epoch

    labtrain_job.save_model(model, x_test[:64])  # served by POST /api/v1/models/<id>/predict
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "ModelExportError",
    "checkpoint_dir",
    "dataset_path",
    "in_job",
    "keras_callback",
    "outputs_dir",
    "report",
    "save_model",
]

_EVENTS_FD = "JOB_EVENTS_FD"
_MAX_METRICS = 50


def in_job() -> bool:
    """Whether this runs as a labtrain job (rather than on a laptop)."""
    return _EVENTS_FD in os.environ


def report(epoch: int | None = None, **metrics: float) -> None:
    """Report an epoch's metrics (loss, accuracy, val_loss, ...): they become the job's epoch
    event, its live curves and its metrics, as a built-in network job's do. Without `epoch`,
    the values update the job's metrics only (a final score, say)."""
    values = {}
    for name, value in list(metrics.items())[:_MAX_METRICS]:
        try:
            number = float(value)  # numpy and torch scalars too
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            values[str(name)[:64]] = number
    line: dict[str, Any] = {"metrics": values}
    if epoch is not None:
        line["epoch"] = int(epoch)
    _send(line)


def checkpoint_dir() -> Path:
    """A folder kept across the job's attempts: save checkpoints here and, when the job is
    run again after its worker was lost, load the newest one and carry on."""
    return _folder("JOB_CHECKPOINT_DIR", "checkpoints")


def outputs_dir() -> Path:
    """Files written here become the job's artifacts, listed and downloadable once it ends."""
    return _folder("JOB_OUTPUTS_DIR", "outputs")


def dataset_path() -> Path | None:
    """The data set the job names (read-only): MNIST's .npz, digits as .npz, a table as .csv, an
    uploaded .csv or .npz, or an image-folder data set's folder (one folder of images per class,
    named after the class); None without one."""
    path = os.environ.get("JOB_DATASET")
    return Path(path) if path else None


def keras_callback():
    """A Keras callback that reports every epoch's logs."""
    import keras  # the script's own Keras, only when it asks for this

    class _Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            report(epoch=epoch + 1, **(logs or {}))

    return _Reporter()


def _folder(variable: str, default: str) -> Path:
    path = Path(os.environ.get(variable) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _send(line: dict[str, Any]) -> None:
    text = json.dumps(line, separators=(",", ":"))
    fd = os.environ.get(_EVENTS_FD)
    if fd is None:  # not in a job: show what would have been reported
        print(f"[labtrain_job] {text}", file=sys.stderr)
        return
    try:
        os.write(int(fd), (text + "\n").encode())
    except OSError:  # the worker stopped reading (the job is ending): nothing to do
        pass


from labtrain_job.models import ModelExportError, save_model  # noqa: E402  (it uses _send above)
