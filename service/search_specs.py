"""The `search` part of a job spec: a hyperparameter search whose trials are jobs of their own.

The space is checked against what the job's algorithm or network accepts by validating the
job with each bound and each choice put in: a bound the algorithm would refuse is a 422
naming it, e.g. `search.space.n_neighbors.low`.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Literal

from pydantic import Field, ValidationError

from service.algorithms import CLASSIFICATION, CLUSTERING, REGRESSION
from service.errors import SpecError, spec_error_from
from service.specs import Strict, ValidatedJob

OPTUNA_STRATEGIES = ("grid", "random", "tpe")
METAHEURISTICS = ("ga", "sa", "tabu", "aco", "pso", "bfo", "abc")
STRATEGIES = OPTUNA_STRATEGIES + METAHEURISTICS
MAX_GRID = 10_000
# Names a network search may use besides the training options: every hidden dense layer's
# units, every dropout layer's rate.
LAYER_KEYS = {"units": "dense", "dropout": "dropout"}
MINIMIZED = {"test_loss", "mae", "rmse", "inertia"}


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


class TpeParams(Strict):
    n_startup_trials: int = Field(10, ge=1, le=1000, description="Random trials before the model is used")
    multivariate: bool = Field(False, description="Model the parameters jointly")


class NoParams(Strict):
    pass


def validate_search(payload: dict[str, Any], validate_base: Callable[[dict[str, Any]], ValidatedJob]) -> ValidatedJob:
    """The search job: the base spec (what each trial runs) validated as a job of its own,
    plus the normalized search."""
    base_payload = {key: value for key, value in payload.items() if key != "search"}
    base = validate_base(base_payload)
    if base.family not in ("classic", "network"):
        raise SpecError("an optimisation job is a search already; it cannot carry one", field="search")
    try:
        search = SearchDef.model_validate(payload["search"])
    except ValidationError as exc:
        raise spec_error_from(exc, SearchDef, prefix="search") from None
    space = {name: _check_dimension(name, dim) for name, dim in search.space.items()}
    for name in space:
        _check_target(base, name)
    for name, dim in space.items():
        for where, value in _extremes(dim):
            try:
                validate_base(apply_params(base.family, base_payload, base.spec, {name: value}))
            except SpecError as exc:
                raise SpecError(f"search.space.{name}: {name}={value!r} is not accepted: {exc.message}",
                                field=f"search.space.{name}.{where}") from None
    metric, direction = _metric(search, base)
    trials = search.trials
    if search.strategy == "grid":
        trials = min(trials, _grid_size(space))
    normalized = {
        "strategy": search.strategy,
        "space": space,
        "trials": trials,
        "metric": metric,
        "direction": direction,
        "parallel": search.parallel,
        "seed": search.seed,
        "params": strategy_params(search.strategy, search.params),
        "base": base_payload,  # what each trial submits, with its parameters put in
    }
    spec = {**base.spec, "search": normalized, "trial_family": base.family}
    return ValidatedJob(family="search", spec=spec, queue=base.queue, name=base.name)


def strategy_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    if strategy in METAHEURISTICS:
        from service.strategies import validate_strategy_params

        return validate_strategy_params(strategy, params, "search.params")
    model = TpeParams if strategy == "tpe" else NoParams
    try:
        return model.model_validate(params).model_dump()
    except ValidationError as exc:
        raise spec_error_from(exc, model, prefix="search.params") from None


def apply_params(family: str, payload: dict[str, Any], normalized: dict[str, Any],
                 params: dict[str, Any]) -> dict[str, Any]:
    """The job spec a trial submits: `payload` with the trial's parameters put in."""
    trial = copy.deepcopy(payload)
    for name, value in params.items():
        if family == "classic":
            trial.setdefault("params", {})[name] = value
        elif name in LAYER_KEYS:
            network = trial["network"]
            if "layers" not in network or network.get("layers") is None:
                # A preset names no layers: trials carry the preset's layer list, sized for the data.
                network.pop("preset", None)
                network["layers"] = copy.deepcopy(normalized["network"]["layers"])
            _set_on_layers(network["layers"], LAYER_KEYS[name], value)
        else:
            trial.setdefault("training", {})[name] = value
    return trial


def _set_on_layers(layers: list[dict[str, Any]], kind: str, value: Any) -> None:
    dense = [i for i, layer in enumerate(layers) if layer.get("type") == "dense"]
    for index, layer in enumerate(layers):
        if kind == "dense" and index in dense[:-1]:  # the last dense layer is the output
            layer["units"] = value
        elif kind == "dropout" and layer.get("type") == "dropout":
            layer["rate"] = value


def _check_dimension(name: str, dim: SpaceDimension) -> dict[str, Any]:
    field = f"search.space.{name}"
    if dim.type == "categorical":
        if not dim.choices:
            raise SpecError("a categorical dimension needs a list of choices", field=f"{field}.choices")
        if dim.low is not None or dim.high is not None or dim.log or dim.step is not None:
            raise SpecError("a categorical dimension takes only choices", field=field)
        if len({repr(c) for c in dim.choices}) != len(dim.choices):
            raise SpecError("the choices repeat a value", field=f"{field}.choices")
        return {"type": "categorical", "choices": list(dim.choices)}
    if dim.choices is not None:
        raise SpecError(f"an {dim.type} dimension takes low and high, not choices", field=f"{field}.choices")
    for bound in ("low", "high"):
        value = getattr(dim, bound)
        if value is None:
            raise SpecError(f"an {dim.type} dimension needs {bound}", field=f"{field}.{bound}")
        if not math.isfinite(value):
            raise SpecError(f"{bound} must be a finite number", field=f"{field}.{bound}")
        if dim.type == "int" and value != int(value):
            raise SpecError(f"an int dimension needs a whole number for {bound}", field=f"{field}.{bound}")
    if dim.low >= dim.high:
        raise SpecError(f"low ({dim.low:g}) must be below high ({dim.high:g})", field=f"{field}.high")
    if dim.log and dim.low <= 0:
        raise SpecError("a log-scaled dimension needs low above 0", field=f"{field}.low")
    if dim.log and dim.step is not None:
        raise SpecError("a dimension is either log-scaled or stepped, not both", field=f"{field}.step")
    if dim.type == "int":
        if dim.step is not None and dim.step != int(dim.step):
            raise SpecError("an int dimension needs a whole step", field=f"{field}.step")
        return {"type": "int", "low": int(dim.low), "high": int(dim.high), "log": dim.log,
                "step": int(dim.step) if dim.step else None}
    return {"type": "float", "low": float(dim.low), "high": float(dim.high), "log": dim.log, "step": dim.step}


def _check_target(base: ValidatedJob, name: str) -> None:
    field = f"search.space.{name}"
    if base.family == "classic":
        from service.algorithms import ALGORITHMS

        accepted = ALGORITHMS[base.spec["algorithm"]].params.model_fields
        if name not in accepted:
            raise SpecError(f"{base.spec['algorithm']} has no parameter {name!r}; it has "
                            f"{', '.join(accepted)}", field=field)
        return
    from service.network_specs import Training

    searchable = [*(n for n in Training.model_fields if n != "early_stopping"), *LAYER_KEYS]
    if name not in searchable:
        raise SpecError(f"a network search can vary {', '.join(searchable)}; not {name!r}", field=field)
    if name in LAYER_KEYS:
        layers = base.spec["network"]["layers"]
        dense = [layer for layer in layers if layer["type"] == "dense"]
        present = len(dense) > 1 if name == "units" else any(layer["type"] == "dropout" for layer in layers)
        if not present:
            raise SpecError(f"this network has no {'hidden dense' if name == 'units' else 'dropout'} layer "
                            f"for {name!r} to change", field=field)


def _extremes(dim: dict[str, Any]) -> list[tuple[str, Any]]:
    if dim["type"] == "categorical":
        return [(f"choices.{i}", choice) for i, choice in enumerate(dim["choices"])]
    return [("low", dim["low"]), ("high", dim["high"])]


def grid_values(dim: dict[str, Any]) -> list[Any]:
    """The values a grid search tries along one dimension."""
    if dim["type"] == "categorical":
        return list(dim["choices"])
    step = dim["step"] or 1
    count = int(math.floor((dim["high"] - dim["low"]) / step + 1e-9)) + 1
    values = [dim["low"] + i * step for i in range(min(count, MAX_GRID + 1))]
    return [int(v) for v in values] if dim["type"] == "int" else [round(v, 12) for v in values]


def _grid_size(space: dict[str, dict[str, Any]]) -> int:
    size = 1
    for name, dim in space.items():
        if dim["type"] == "float" and dim["step"] is None:
            raise SpecError("grid search needs a step for float dimensions (or make it categorical)",
                            field=f"search.space.{name}.step")
        size *= len(grid_values(dim))
        if size > MAX_GRID:
            raise SpecError(f"the grid has more than {MAX_GRID} points; use larger steps, fewer "
                            "dimensions, or random, tpe or a metaheuristic", field="search.space")
    return size


def metrics_for(base: ValidatedJob) -> list[str]:
    """The metrics a trial of this job can be scored by (names in its `metrics`), default first."""
    task = base.spec["task"]
    if base.family == "network":
        return ["accuracy", "f1_macro", "test_loss"] if task == CLASSIFICATION else ["r2", "mae", "rmse", "test_loss"]
    if task == CLASSIFICATION:
        return ["accuracy", "f1_macro"]
    if task == REGRESSION:
        return ["r2", "mae", "rmse"]
    if task == CLUSTERING:
        return ["silhouette", "inertia", "adjusted_rand"]
    return []


def _metric(search: SearchDef, base: ValidatedJob) -> tuple[str, str]:
    available = metrics_for(base)
    if not available:
        raise SpecError(f"a {base.spec['task']} job has no score to search on", field="search")
    cv = base.spec.get("evaluation", {}).get("cv")
    if cv:
        # With cv each trial is scored by the k-fold mean, which the trainer computes for one scorer.
        cv_metric = "accuracy" if base.spec["task"] == CLASSIFICATION else "r2"
        if search.metric not in (None, cv_metric):
            raise SpecError(f"with evaluation.cv, trials are scored by the k-fold mean {cv_metric}; "
                            f"set metric to {cv_metric} or drop cv", field="search.metric")
        metric = cv_metric
    else:
        metric = search.metric or available[0]
        if metric not in available:
            raise SpecError(f"metric must be one of {', '.join(available)} for this job", field="search.metric")
    direction = search.direction or ("minimize" if metric in MINIMIZED else "maximize")
    return metric, direction


def trial_score(spec: dict[str, Any], metrics: dict[str, Any] | None) -> float | None:
    """A finished trial's score: the k-fold mean with cv, else the test metric (None if absent)."""
    if not metrics:
        return None
    search = spec["search"]
    if spec.get("evaluation", {}).get("cv"):
        value = (metrics.get("cv") or {}).get("mean")
    else:
        value = metrics.get(search["metric"])
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def search_catalog() -> dict[str, Any]:
    """The search strategies with their parameters, and what a search spec and space take."""
    from service.algorithms import describe_params
    from service.strategies import strategies_catalog

    optuna_titles = {"grid": "Grid search: every point of the grid (Optuna's GridSampler)",
                     "random": "Random search (Optuna's RandomSampler)",
                     "tpe": "Tree-structured Parzen Estimator (Optuna's TPESampler)"}
    strategies = [{"name": name, "title": title,
                   "parameters": describe_params(TpeParams if name == "tpe" else NoParams)}
                  for name, title in optuna_titles.items()]
    strategies += [s for s in strategies_catalog() if s["name"] in METAHEURISTICS]
    return {
        "strategies": strategies,
        "fields": describe_params(SearchDef),
        "dimension": describe_params(SpaceDimension),
        "network_space": {"training": "any training option except early_stopping",
                          "units": "every hidden dense layer's units", "dropout": "every dropout layer's rate"},
    }
