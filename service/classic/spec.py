"""Classic job specs (`algorithm`): what a user sends, and the run it becomes once checked
(service/classic/validate.py), as stored and as the classic trainer receives it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.core.schema import Strict
from service.data.tasks import TASKS
from service.jobs.spec import JobSpec, Run


class Evaluation(Strict):
    test_size: float = Field(0.2, gt=0, lt=1, description="Fraction of rows held out for the test metrics")
    cv: int | None = Field(None, ge=2, le=50, description="Folds of k-fold cross-validation on the training part")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the split, the folds and the estimator")


class Preprocessing(Strict):
    scale: bool = Field(False, description="Standard-scale numeric features inside the saved pipeline")
    impute: Literal["mean", "median", "most_frequent"] | None = Field(
        None, description="Fill missing feature values; without it, data with gaps is rejected"
    )


class ClassicSpec(JobSpec):
    algorithm: str
    task: Literal[TASKS] | None = None  # type: ignore[valid-type]
    params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The algorithm's hyperparameters; GET /api/v1/algorithms lists each algorithm's with types and bounds"
        ),
    )
    evaluation: Evaluation = Field(default_factory=Evaluation)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)


class ClassicRun(Run):
    """A classic job as stored and as its trainer receives it."""

    dataset: str | dict[str, Any]
    algorithm: str
    task: Literal[TASKS]  # type: ignore[valid-type]
    params: dict[str, Any]
    evaluation: Evaluation
    preprocessing: Preprocessing
    device: Literal["cpu"] = "cpu"
