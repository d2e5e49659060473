"""What every trainer receives and returns."""
from __future__ import annotations

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
class TrainedModel:
    artifact: Any                     # the object the worker saves (framework's own format)
    framework: str                    # sklearn | tensorflow | pytorch
    task: str
    input: dict[str, Any]             # {"features": [...]} or {"shape": [...]}
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
