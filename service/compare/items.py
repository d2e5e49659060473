"""One column of a comparison: a job, or an MLflow run that is no job (`kind` tells them apart;
both have parameters, final metrics and curves; a run also its experiment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JOB = "job"
RUN = "run"  # an MLflow run logged from a laptop: no job behind it (service/compare/runs.py)

EPOCH = "epoch"  # a series' x: the epoch of a job's `epoch` events ...
STEP = "step"  # ... or the step of its `metrics` events (MLflow, TensorBoard)


@dataclass
class Series:
    x: str  # EPOCH or STEP
    points: list[list[float]]  # [x, y], x ascending


@dataclass
class CompareItem:
    id: str
    kind: str  # JOB or RUN
    name: str | None
    status: str
    params: dict[str, Any]  # dotted name -> a scalar (str, int, float, bool or None)
    metrics: dict[str, float]  # dotted name -> the final value
    series: dict[str, Series] = field(default_factory=dict)  # metric key -> its curve
    family: str | None = None  # a job's family; None for a run
    owner: str | None = None
    parent_id: str | None = None  # the search a trial belongs to
    trial_number: int | None = None
    downsampled: bool = False  # its curves were read from a sample of its events (a very long run)
    experiment: str | None = None  # a run's MLflow experiment, by name

    @property
    def label(self) -> str:
        """What a table's column or a chart's legend calls it."""
        if self.name:  # a search's trials are named for it already: "mlp · trial 3"
            return self.name
        return f"trial {self.trial_number}" if self.trial_number is not None else self.id

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "label": self.label,
            "family": self.family,
            "owner": self.owner,
            "status": self.status,
            "parent_id": self.parent_id,
            "trial_number": self.trial_number,
            "params": self.params,
            "metrics": self.metrics,
            "series": {key: {"x": s.x, "points": s.points} for key, s in self.series.items()},
            "downsampled": self.downsampled,
            "experiment": self.experiment,
        }
