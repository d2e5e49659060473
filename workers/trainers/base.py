"""What every trainer receives and returns.

A trainer is a module of workers/trainers with two functions, named by its job family's
registry record: `load_data(run, source)` reads the data set the run names, and
`train(run, data, report)` returns a TrainedModel (or an OptimizationResult where the job
makes no model). `run` is the family's typed run model. Trainers import neither the
database nor Celery, so each can be tested on tiny data with no services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class Cancelled(Exception):
    """Raised by a reporter when the job was cancelled, and by a trainer that stopped on request;
    the runner records why the job stopped."""


class Reporter(Protocol):
    """Receives a trainer's events and progress. Both calls raise Cancelled once the job is cancelled."""

    # Where a trainer keeps per-epoch checkpoints (None: it keeps none).
    checkpoint_dir: Path | None

    def event(self, type_: str, data: dict[str, Any]) -> None: ...

    def progress(self, **fields: Any) -> None: ...

    def stop_requested(self) -> bool:
        """Cheap enough to ask after every batch: whether the job should stop now."""
        ...


@dataclass
class DataSource:
    """Where a job's data is: the server's data directory and the file of the upload it names."""

    data_dir: Path
    uploaded: tuple[str, str] | None = None  # (kind, path) of the uploaded data set, if the job names one


@dataclass
class TrainedModel:
    artifact: Any  # the object the worker saves ...
    write: Callable[[Any, Path], None]  # ... with this, in its framework's own format ...
    suffix: str  # ... to a file with this suffix
    framework: str  # sklearn | tensorflow | pytorch
    task: str
    input: dict[str, Any]  # {"features": [...]} or {"shape": [...]}
    metrics: dict[str, Any]
    algorithm: str | None = None
    classes: list[Any] | None = None
    class_names: list[str] | None = None
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizationResult:
    """What a trainer returns when its outcome is a result, not a model: the job's `result` and `metrics`."""

    result: dict[str, Any]
    metrics: dict[str, Any]
