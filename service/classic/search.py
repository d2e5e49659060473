"""How a hyperparameter search varies a classic job: its algorithm's parameters."""

from __future__ import annotations

import copy
from typing import Any

from service.classic.algorithms import ALGORITHMS
from service.classic.spec import ClassicRun
from service.core.errors import SpecError
from service.data.tasks import CLASSIFICATION, CLUSTERING, REGRESSION
from service.jobs.families import SearchHooks, pick_score, score_in

SCORES = {
    CLASSIFICATION: ["accuracy", "f1_macro"],
    REGRESSION: ["r2", "mae", "rmse"],
    CLUSTERING: ["silhouette", "inertia", "adjusted_rand"],
}
CV_SCORES = {CLASSIFICATION: "accuracy", REGRESSION: "r2"}  # the one scorer a k-fold mean is computed for


def check(run: ClassicRun, name: str) -> None:
    accepted = ALGORITHMS[run.algorithm].params.model_fields
    if name not in accepted:
        raise SpecError(
            f"{run.algorithm} has no parameter {name!r}; it has {', '.join(accepted)}", field=f"search.space.{name}"
        )


def apply(payload: dict[str, Any], run: ClassicRun, params: dict[str, Any]) -> dict[str, Any]:
    trial = copy.deepcopy(payload)
    trial.setdefault("params", {}).update(params)
    return trial


def metric(run: ClassicRun, asked: str | None) -> str:
    available = SCORES.get(run.task)
    if not available:
        raise SpecError(f"a {run.task} job has no score to search on", field="search")
    if not run.evaluation.cv:
        return pick_score(available, asked)
    # With cv each trial is scored by the k-fold mean, which the trainer computes for one scorer.
    cv_metric = CV_SCORES[run.task]
    if asked not in (None, cv_metric):
        raise SpecError(
            f"with evaluation.cv, trials are scored by the k-fold mean {cv_metric}; "
            f"set metric to {cv_metric} or drop cv",
            field="search.metric",
        )
    return cv_metric


def score(run: ClassicRun, metrics: dict[str, Any] | None, name: str) -> float | None:
    """A finished trial's score: the k-fold mean with cv, else the test metric (None if absent)."""
    if run.evaluation.cv:
        return score_in((metrics or {}).get("cv"), "mean")
    return score_in(metrics, name)


HOOKS = SearchHooks(check=check, apply=apply, metric=metric, score=score)
