"""The `search` part of a job spec: a hyperparameter search whose trials are jobs of their own.
What a user sends, and the search as stored once checked (service/search/validate.py)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.core.schema import Strict, describe_params
from service.jobs import families
from service.jobs.spec import Run
from service.metaheuristics import METAHEURISTICS
from service.metaheuristics.params import strategies_catalog

OPTUNA_STRATEGIES = ("grid", "random", "tpe")
STRATEGIES = OPTUNA_STRATEGIES + METAHEURISTICS
KEEP_MODELS = ("best", "all")  # which trials save a model (service/jobs/keep_model.py)
MAX_GRID = 10_000
MINIMIZED = {"test_loss", "mae", "rmse", "mse", "inertia"}  # scores where lower is better
LOWER_IS_BETTER = ("loss", "error", "perplexity")  # ... and any a script names like these (val_loss)


def default_direction(metric: str) -> str:
    lower = metric in MINIMIZED or any(word in metric.lower() for word in LOWER_IS_BETTER)
    return "minimize" if lower else "maximize"


class SpaceDimension(Strict):
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = Field(False, description="Sample on a log scale (low above 0)")
    step: float | None = Field(None, gt=0, description="Spacing of the values; grid search needs it for floats")
    choices: list[str | int | float | bool | None] | None = Field(None, min_length=1, max_length=100)


class SearchDef(Strict):
    strategy: Literal[STRATEGIES]  # type: ignore[valid-type]
    space: dict[str, SpaceDimension] = Field(min_length=1, max_length=20)
    trials: int = Field(20, ge=1, le=1000, description="Trials to run (a grid runs at most its size)")
    metric: str | None = Field(None, description="Default: accuracy, r2 or silhouette by task")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="Default: by metric")
    parallel: int = Field(1, ge=1, le=64, description="Trials queued or running at once")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    params: dict[str, Any] = Field(default_factory=dict, description="The strategy's own parameters")
    keep_models: Literal[KEEP_MODELS] = Field(  # type: ignore[valid-type]
        "best",
        description=(
            "Which trials save a model: best (those whose score is at least the best so far when "
            "they were submitted: the search's best trial always has one) or all"
        ),
    )


class TpeParams(Strict):
    n_startup_trials: int = Field(10, ge=1, le=1000, description="Random trials before the model is used")
    multivariate: bool = Field(False, description="Model the parameters jointly")


class NoParams(Strict):
    pass


class SearchPlan(BaseModel):
    """A validated search, as stored under the job's `search`."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal[STRATEGIES]  # type: ignore[valid-type]
    space: dict[str, dict[str, Any]]
    trials: int
    metric: str
    direction: Literal["maximize", "minimize"]
    parallel: int
    seed: int
    params: dict[str, Any]
    base: dict[str, Any]  # what each trial submits, with its parameters put in
    # A search stored before keep_models existed kept every trial's model.
    keep_models: Literal[KEEP_MODELS] = "all"  # type: ignore[valid-type]


class SearchRun(Run):
    """A search job as stored: the base job's run (what each trial runs), its search, and the
    family of its trials."""

    model_config = ConfigDict(extra="allow")

    search: SearchPlan
    trial_family: str

    def base_run(self) -> Run:
        fields = {k: v for k, v in self.model_dump(mode="json").items() if k not in ("search", "trial_family")}
        return families.get(self.trial_family).run_model.model_validate(fields)

    def hooks(self) -> families.SearchHooks:
        return families.get(self.trial_family).search


def grid_values(dim: dict[str, Any]) -> list[Any]:
    """The values a grid search tries along one dimension."""
    if dim["type"] == "categorical":
        return list(dim["choices"])
    step = dim["step"] or 1
    count = int(math.floor((dim["high"] - dim["low"]) / step + 1e-9)) + 1
    values = [dim["low"] + i * step for i in range(min(count, MAX_GRID + 1))]
    return [int(v) for v in values] if dim["type"] == "int" else [round(v, 12) for v in values]


def catalog() -> dict[str, Any]:
    """The search strategies with their parameters, and what a search spec and space take."""
    optuna_titles = {
        "grid": "Grid search: every point of the grid (Optuna's GridSampler)",
        "random": "Random search (Optuna's RandomSampler)",
        "tpe": "Tree-structured Parzen Estimator (Optuna's TPESampler)",
    }
    strategies = [
        {"name": name, "title": title, "parameters": describe_params(TpeParams if name == "tpe" else NoParams)}
        for name, title in optuna_titles.items()
    ]
    strategies += [s for s in strategies_catalog() if s["name"] in METAHEURISTICS]
    return {
        "strategies": strategies,
        "fields": describe_params(SearchDef),
        "dimension": describe_params(SpaceDimension),
        "network_space": {
            "training": "any training option except early_stopping",
            "units": "every hidden dense layer's units",
            "dropout": "every dropout layer's rate",
        },
    }
