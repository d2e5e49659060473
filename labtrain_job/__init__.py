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

Preemption: a job may be asked to yield its worker (a job of a higher tier waits). The
script then gets SIGUSR1 and `preempted()` turns True; it should save a checkpoint to
`checkpoint_dir()` and exit with status 0, and the job goes back to the queue and runs again,
resuming from that checkpoint (on a SLURM cluster, SLURM's SIGTERM, which it sends to every
process of a job it preempts, counts the same). The Keras callback and the PyTorch helper do this at the end of
the epoch; the next attempt's `keras_resume` / `torch_resume` carry on from there:

    model, start = labtrain_job.keras_resume(model)  # the checkpointed model, or (model, 0)
    model.fit(x, y, epochs=5, initial_epoch=start, callbacks=[labtrain_job.keras_callback()])

    start = labtrain_job.torch_resume(model, optimizer)  # 0, or the epoch it resumes after
    for epoch in range(start + 1, epochs + 1):
        loss = train_one_epoch()
        labtrain_job.torch_epoch_end(epoch, model, optimizer, loss=loss)  # report; yield if asked

On a shared GPU the job holds `gpu_memory_mb()` of it: PyTorch and TensorFlow are held to it
when they load (or, for PyTorch, at `torch_resume`, `torch_epoch_end` or `limit_gpu_memory()`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import math
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from labtrain_job.channel import checkpoint_dir, in_job, outputs_dir, send
from labtrain_job.models import ModelExportError, save_model

__all__ = [
    "ModelExportError",
    "checkpoint_dir",
    "dataset_path",
    "gpu_memory_mb",
    "in_job",
    "keras_callback",
    "keras_resume",
    "limit_gpu_memory",
    "outputs_dir",
    "preempted",
    "report",
    "save_model",
    "torch_epoch_end",
    "torch_resume",
]

_GPU_MEMORY_ENV = "LABTRAIN_GPU_MEMORY_MB"
_SIGTERM_YIELDS_ENV = "JOB_YIELD_ON_SIGTERM"  # set by a worker that SLURM runs
_MAX_METRICS = 50
_MB = 1024 * 1024
_CHECKPOINT = re.compile(r"labtrain-epoch-(\d+)(\.keras|\.pt)$")
_preempted = False
_limited: set[str] = set()  # the frameworks already held to the job's GPU share


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
    send(line)


def dataset_path() -> Path | None:
    """The data set the job names (read-only): MNIST's .npz, digits as .npz, a table as .csv, an
    uploaded .csv or .npz, or an image-folder data set's folder (one folder of images per class,
    named after the class); None without one."""
    path = os.environ.get("JOB_DATASET")
    return Path(path) if path else None


def preempted() -> bool:
    """Whether the job was asked to yield its worker (the process got SIGUSR1): save a
    checkpoint to checkpoint_dir() and exit with status 0; the job runs again later and
    resumes from it. The Keras callback and torch_epoch_end do this at the epoch's end."""
    _install_preempt_handler()
    return _preempted


def gpu_memory_mb() -> int | None:
    """The GPU memory (MB) this job may use on a GPU it shares with other jobs; None: no GPU,
    the whole card, or not in a job."""
    try:
        value = int(os.environ.get(_GPU_MEMORY_ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def limit_gpu_memory() -> None:
    """Hold the frameworks loaded so far (PyTorch, TensorFlow) to gpu_memory_mb(); once each.
    TensorFlow is held as it loads when this module is imported first; otherwise this must run
    before TensorFlow uses the GPU (before a model is built)."""
    mb = gpu_memory_mb()
    if mb is None:
        return
    for name, limit in (("torch", _limit_torch), ("tensorflow", _limit_tensorflow)):
        module = sys.modules.get(name)
        if module is None or name in _limited:
            continue
        _limited.add(name)
        try:
            limit(module, mb)
        except Exception as exc:  # a framework without a GPU build, or one too old: train anyway
            print(f"[labtrain_job] {name} could not be held to {mb} MB of the GPU: {exc}", file=sys.stderr)


def keras_callback():
    """A Keras callback that reports every epoch's logs; asked to yield (preempted()), it saves
    the model to checkpoint_dir() at the epoch's end and exits (keras_resume carries on)."""
    import keras  # the script's own Keras, only when it asks for this

    limit_gpu_memory()

    class _Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            report(epoch=epoch + 1, **(logs or {}))
            if preempted():
                _save_checkpoint(epoch + 1, ".keras", self.model.save)
                _exit_preempted(epoch + 1)

    return _Reporter()


def keras_resume(model: Any, **load_options: Any) -> tuple[Any, int]:
    """(the model saved in checkpoint_dir() by keras_callback, its epoch), or (model, 0) when
    there is none: pass the epoch to fit() as `initial_epoch`. `load_options` go to
    keras.saving.load_model (custom_objects, ...)."""
    import keras

    limit_gpu_memory()
    found = _newest_checkpoint(".keras")
    if found is None:
        return model, 0
    path, epoch = found
    return keras.saving.load_model(path, **load_options), epoch


def torch_resume(model: Any, optimizer: Any = None) -> int:
    """Load the newest checkpoint torch_epoch_end saved (the model's weights and the
    optimizer's state) into `model` and `optimizer`: the epoch it was saved after, or 0
    without one (start at epoch 1). Also holds PyTorch to the job's GPU share."""
    import torch

    limit_gpu_memory()
    found = _newest_checkpoint(".pt")
    if found is None:
        return 0
    path, epoch = found
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return epoch


def torch_epoch_end(epoch: int, model: Any, optimizer: Any = None, **metrics: float) -> None:
    """At the end of an epoch (counted from 1): report its metrics and, when the job was asked
    to yield (preempted()), save the model's and the optimizer's state to checkpoint_dir() and
    exit (torch_resume carries on from there)."""
    import torch

    limit_gpu_memory()
    report(epoch=epoch, **metrics)
    if preempted():
        state = {
            "epoch": int(epoch),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
        }
        _save_checkpoint(epoch, ".pt", lambda path: torch.save(state, path))
        _exit_preempted(epoch)


def _save_checkpoint(epoch: int, suffix: str, write) -> Path:
    """Written whole or not at all (a temporary name, then renamed); older ones removed."""
    folder = checkpoint_dir()
    path = folder / f"labtrain-epoch-{int(epoch):06d}{suffix}"
    partial = folder / f".partial-{os.getpid()}{suffix}"  # Keras wants its suffix on the name
    write(partial)
    os.replace(partial, path)
    for old in folder.iterdir():
        match = _CHECKPOINT.match(old.name)
        if match and match.group(2) == suffix and old != path:
            old.unlink(missing_ok=True)
    return path


def _newest_checkpoint(suffix: str) -> tuple[Path, int] | None:
    found = []
    for path in checkpoint_dir().iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and match.group(2) == suffix:
            found.append((int(match.group(1)), path))
    if not found:
        return None
    epoch, path = max(found)
    return path, epoch


def _exit_preempted(epoch: int) -> None:
    print(f"[labtrain_job] asked to yield: checkpoint saved after epoch {epoch}; exiting", file=sys.stderr, flush=True)
    sys.stdout.flush()
    raise SystemExit(0)


def _on_sigusr1(signum, frame) -> None:
    global _preempted
    _preempted = True


def _install_preempt_handler() -> None:
    """SIGUSR1 sets preempted(), and SIGTERM too where the job runs under SLURM: only from the
    main thread (Python's rule), where there is a SIGUSR1 (not on Windows), and only if nothing
    else handles it."""
    sigusr1 = getattr(signal, "SIGUSR1", None)
    if sigusr1 is None or threading.current_thread() is not threading.main_thread():
        return
    signums = [sigusr1] + ([signal.SIGTERM] if os.environ.get(_SIGTERM_YIELDS_ENV) == "1" else [])
    for signum in signums:
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _on_sigusr1)
        except (ValueError, OSError):  # an embedded interpreter without signals
            pass


def _limit_torch(torch: Any, mb: int) -> None:
    if not torch.cuda.is_available():
        return
    index = torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, mb * _MB / total), index)


def _limit_tensorflow(tf: Any, mb: int) -> None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    try:
        tf.config.set_logical_device_configuration(gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=mb)])
    except RuntimeError as exc:  # TensorFlow already uses the GPU: too late to set a limit
        raise RuntimeError(
            "TensorFlow already uses the GPU; import labtrain_job before tensorflow (or call "
            f"labtrain_job.limit_gpu_memory() before building a model) ({exc})"
        ) from None


class _LimitTensorflowOnLoad(importlib.abc.MetaPathFinder):
    """Holds TensorFlow to the job's GPU share as soon as it is imported (before anything can
    use the GPU): its loader runs as usual, then limit_gpu_memory()."""

    def __init__(self):
        self.done = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or self.done:
            return None
        self.done = True  # once, and not for the search below
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLimit(spec.loader)
        return spec


class _ThenLimit(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        finally:  # the module keeps its own loader, as if nothing had been here
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
        limit_gpu_memory()

    def __getattr__(self, name):
        return getattr(self.loader, name)


def _on_import() -> None:
    _install_preempt_handler()
    if gpu_memory_mb() is None:
        return
    if "tensorflow" in sys.modules or "torch" in sys.modules:
        limit_gpu_memory()  # loaded before this module: held now
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _LimitTensorflowOnLoad())


_on_import()
