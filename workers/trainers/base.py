"""What every trainer receives and returns.

A trainer is a module of workers/trainers with two functions, named by its job family's
registry record: `load_data(run, source)` reads the data set the run names, and
`train(run, data, report, allotted)` returns a TrainedModel (or a JobResult where the job
makes no model). `run` is the family's typed run model, `report` where its events and
progress go, `allotted` what this attempt runs with (its Allotment). Trainers import neither
the database nor Celery, so each can be tested on tiny data with no services.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from service.core.config import Settings


class Cancelled(Exception):
    """Raised by a reporter when the job was cancelled, and by a trainer that stopped on request;
    the runner records why the job stopped."""


class Preempted(Exception):
    """Raised by a trainer that stopped because the job was asked to yield its slot (a job of a
    higher tier waits): the runner puts the job back in the queue without spending an attempt,
    and the next attempt resumes from the checkpoint written before stopping."""


class JobFailed(Exception):
    """Raised by a trainer when the job fails for a reason it can name: the job fails with this
    error code and message (not the generic training_error)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Reporter(Protocol):
    """Receives a trainer's events and progress. Both calls raise Cancelled once the job is cancelled."""

    def event(self, type_: str, data: dict[str, Any]) -> None: ...

    def progress(self, **fields: Any) -> None: ...

    def output(self, stream: str, line: str) -> None:
        """A line the job's program printed (stdout or stderr): into the job's log, no event."""
        ...


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def _never() -> bool:
    return False


@dataclass
class Allotment:
    """What one attempt of a job runs with, apart from where its reports go: the folder its
    checkpoints are kept in, its share of a GPU, and the checks a trainer makes to know whether
    it must stop or yield its slot."""

    checkpoint_dir: Path | None = None  # kept across attempts (None: the job keeps no checkpoints)
    # The GPU memory this job may use, in MB, on a GPU shared with other jobs (None: no GPU or
    # the whole of it). Trainers hold their framework to it (workers/gpu_share.py).
    gpu_memory_mb: int | None = None
    checkpoint_every_s: float = 0.0  # at most this often, but for the last epoch's and a yield's
    stop: Callable[[], bool] = _never  # the job must stop now (cancelled, out of time, worker stopping)
    preempt: Callable[[], bool] = _never  # the job was asked to yield its slot (a higher tier waits)
    yielded: bool = False  # a checkpoint was written after a yield was asked: stop now
    # The job's own MLflow endpoint (service/tracking/job_endpoint.py), for a trainer that runs
    # students' code: a factory taking on_metrics (called, from the endpoint's threads, with the
    # latest values logged to the job's run) and giving the WSGI app; None: the job has none.
    tracking_app: Callable[[Callable[[dict[str, float]], None]], WSGIApp] | None = None
    tracking_run_id: str | None = None  # the job's MLflow run id (MLFLOW_RUN_ID), with tracking_app
    _checkpoint_at: float = field(default_factory=lambda: time.monotonic())

    def stop_requested(self) -> bool:
        """Cheap enough to ask after every batch: whether the job should stop now."""
        return self.stop() or self.yielded

    def preempt_requested(self) -> bool:
        """Whether the job was asked to yield its slot: checkpoint at the next epoch boundary and
        stop (network trainers do this through checkpoint_due and stop_requested; a code job's
        trainer signals the script, which sees `labtrain_job.preempted()`), then raise Preempted."""
        return self.preempt()

    def checkpoint_due(self, last: bool) -> bool:
        """Asked at each epoch's end (`last`: the final epoch): the final epoch's checkpoint, and
        others at most every checkpoint_every_s (a save costs a short epoch a few percent, and a
        lost worker costs at most that much training); at once when the job must yield."""
        if self.checkpoint_dir is None:
            return False
        if self.preempt_requested():
            self.yielded = True  # this epoch's checkpoint is the one the next attempt resumes from
            return True
        if last or time.monotonic() - self._checkpoint_at >= self.checkpoint_every_s:
            self._checkpoint_at = time.monotonic()
            return True
        return False


@dataclass
class DataSource:
    """Where a job's data is (the server's data directory, the file of the upload it names), and,
    for trainers that run more than a fit (code jobs), the job and the worker's settings."""

    data_dir: Path
    uploaded: tuple[str, str] | None = None  # (kind, path) of the uploaded data set, if the job names one
    settings: Settings | None = None
    job_id: str = ""
    attempt: int = 1


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
    result: dict[str, Any] = field(default_factory=dict)  # more of the job's result (a code job's exit, artifacts)
    # A file the job's own code wrote: loaded once in a model's process of its own before it
    # becomes a model (the worker never opens it itself).
    left_by_job: bool = False


@dataclass
class JobResult:
    """What a trainer returns when its outcome is a result, not a model: the job's `result` and `metrics`."""

    result: dict[str, Any]
    metrics: dict[str, Any]
