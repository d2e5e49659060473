"""What the competition routes accept, the metrics a competition may rank by, and the run a
scoring job stores (no database code: the scoring trainer receives it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.core.schema import Strict
from service.courses.spec import COURSE_NAME
from service.jobs.spec import Run

NAME = r"^[A-Za-z0-9_.-]{1,64}$"

# metric -> (the task it scores, whether a higher score is better)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("classification", True),
    "macro_f1": ("classification", True),
    "rmse": ("regression", False),
    "mae": ("regression", False),
    "r2": ("regression", True),
}
Metric = Literal["accuracy", "macro_f1", "rmse", "mae", "r2"]

# How a scoring job fails because of the submission (it counts against the daily limit); any
# other failure is the service's (a lost worker, an internal error, a cancel) and does not.
SUBMISSION_FAILED = "submission_failed"
MODEL_FAULTS = (SUBMISSION_FAILED, "time_limit_exceeded")

ID_COLUMN = "id"  # the test set's own ids where it has this column; else row numbers from 1


def task_of(metric: str) -> str:
    return METRICS[metric][0]


def higher_is_better(metric: str) -> bool:
    return METRICS[metric][1]


class CourseDataRef(Strict):
    course: str = Field(pattern=COURSE_NAME)
    name: str = Field(min_length=1, max_length=255)


class CompetitionCreate(Strict):
    name: str = Field(pattern=NAME, description="Letters, digits, - _ . (at most 64), unique in the course")
    metric: Metric = Field(description="accuracy and macro_f1 for classification; rmse, mae and r2 for regression")
    train: CourseDataRef | None = Field(None, description='The course data set students train on: {"course", "name"}')
    test: str = Field(min_length=1, max_length=64, description="The id of your labelled hidden test set (a CSV)")
    target: str = Field(min_length=1, max_length=255, description="The test set's label column")
    public_fraction: Annotated[float, Field(gt=0, lt=1, strict=False)] = 0.3
    daily_limit: int = Field(5, ge=1, le=1000)
    final_selections: int = Field(2, ge=1, le=100)
    closes_at: Annotated[
        datetime, Field(strict=False, description="ISO 8601 with a time zone, e.g. 2027-01-31T23:59:00Z")
    ]


class ModelSubmission(Strict):
    model: str = Field(min_length=1, max_length=64, description="The id of one of your models")


class Selection(Strict):
    selected: bool = True


class ModelToScore(BaseModel):
    """What the scoring job needs to start the model's own process (service/serving/process.py)."""

    model_config = ConfigDict(extra="forbid")

    predictor: str  # module:Class
    fields: dict[str, Any]  # service.serving.pool.model_fields
    path: str
    columns: list[str]  # the test set's columns sent to it, in the order it takes them


class ScoreRun(Run):
    """A scoring job's stored spec: everything the worker needs without the database."""

    competition: str
    submission: str
    metric: Metric
    test_path: str
    target: str
    id_column: str | None  # None: ids are row numbers from 1
    public_fraction: float
    model: ModelToScore | None = None
    predictions_path: str | None = None
