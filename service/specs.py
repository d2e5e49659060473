"""Job specs: parsed, validated and completed with defaults before a job is stored.

A spec that passes here can run: the checks against the data set (rows, classes,
missing values) are made now so that bad input is a 422 at submit time, not a failed job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.algorithms import (ALGORITHMS, CLASSIFICATION, CLUSTERING, DECOMPOSITION, REGRESSION, SUPERVISED,
                                TASKS, param_conflicts)
from service.datasets import infer_task
from service.errors import SpecError, spec_error_from

FAMILY_KEYS = {"algorithm": "classic", "framework": "network", "optimize": "optimize"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Evaluation(Strict):
    test_size: float = Field(0.2, gt=0, lt=1, description="Fraction of rows held out for the test metrics")
    cv: int | None = Field(None, ge=2, le=50, description="Folds of k-fold cross-validation on the training part")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the split, the folds and the estimator")


class Preprocessing(Strict):
    scale: bool = Field(False, description="Standard-scale numeric features inside the saved pipeline")
    impute: Literal["mean", "median", "most_frequent"] | None = Field(
        None, description="Fill missing feature values; without it, data with gaps is rejected")


class DatasetRef(Strict):
    id: str = Field(min_length=1, max_length=64)
    target: str | None = Field(None, min_length=1, max_length=255)


class JobSpec(Strict):
    """What every job family's spec has."""

    name: str | None = Field(None, min_length=1, max_length=255)
    dataset: Any = Field(description="A built-in name or {\"id\": ..., \"target\": ...}")
    device: Literal["auto", "cpu", "gpu"] = "auto"
    search: Any = Field(None, description="A hyperparameter search over this spec (service/search_specs.py)")


class ClassicSpec(JobSpec):
    algorithm: str
    task: Literal[TASKS] | None = None  # type: ignore[valid-type]
    params: dict[str, Any] = Field(default_factory=dict)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)


@dataclass
class DatasetView:
    """What the spec checks need to know of a data set (built-in or uploaded)."""

    spec_value: Any            # what the stored spec names: "iris" or {"id", "target"}
    rows: int
    columns: list[dict[str, Any]]
    target: str | None
    task: str | None           # the built-in's task, or None to infer from the target


DatasetResolver = Callable[[Any], DatasetView]


@dataclass
class ValidatedJob:
    family: str
    spec: dict[str, Any]
    queue: str
    name: str | None


def family_of(payload: Any) -> str:
    if not isinstance(payload, dict):
        raise SpecError("the job spec must be a JSON object", field="body")
    present = [key for key in FAMILY_KEYS if key in payload]
    if len(present) != 1:
        raise SpecError(
            "a job spec names exactly one of: algorithm (classic ML), framework (a network), optimize"
            + (f"; this one names {' and '.join(present)}" if present else ""),
            field="algorithm" if not present else present[1],
        )
    return FAMILY_KEYS[present[0]]


def validate_job(payload: Any, resolve_dataset: DatasetResolver, resolve_arrays: Callable,
                 gpu_online: Callable[[], bool]) -> ValidatedJob:
    family = family_of(payload)
    if payload.get("search") is not None:
        from service.search_specs import validate_search

        return validate_search(payload, lambda base: validate_job(base, resolve_dataset, resolve_arrays, gpu_online))
    if family == "classic":
        return validate_classic(payload, resolve_dataset)
    if family == "network":
        from service.network_specs import validate_network

        return validate_network(payload, resolve_arrays, gpu_online)
    from service.optimize_specs import validate_optimize

    return validate_optimize(payload)


def parse_spec(model: type[JobSpec], payload: dict[str, Any]) -> Any:
    """The payload as `model`, or a 422 naming the first bad field."""
    try:
        spec = model.model_validate(payload)
    except ValidationError as exc:
        raise spec_error_from(exc, model) from None
    return spec


def validate_classic(payload: dict[str, Any], resolve_dataset: DatasetResolver) -> ValidatedJob:
    spec = parse_spec(ClassicSpec, payload)
    algorithm = ALGORITHMS.get(spec.algorithm)
    if algorithm is None:
        raise SpecError(f"unknown algorithm {spec.algorithm!r}; choose one of {', '.join(ALGORITHMS)}",
                        field="algorithm", code="unknown_algorithm")
    if spec.device == "gpu":
        raise SpecError("classic algorithms run on the CPU; use device 'cpu' or 'auto'", field="device")
    try:
        params = algorithm.params.model_validate(spec.params).model_dump()
    except ValidationError as exc:
        raise spec_error_from(exc, algorithm.params, prefix="params") from None

    data = resolve_dataset(spec.dataset)
    task = _resolve_task(spec.task, algorithm.tasks, data)
    conflict = param_conflicts(algorithm.name, task, params)
    if conflict:
        raise SpecError(conflict[1], field=conflict[0])
    _check_against_data(algorithm.name, task, params, spec, data)

    normalized = {
        "name": spec.name,
        "dataset": data.spec_value,
        "algorithm": algorithm.name,
        "task": task,
        "params": params,
        "evaluation": spec.evaluation.model_dump(),
        "preprocessing": spec.preprocessing.model_dump(),
        "device": "cpu",
    }
    return ValidatedJob(family="classic", spec=normalized, queue="cpu", name=spec.name)


def _resolve_task(asked: str | None, supported: tuple[str, ...], data: DatasetView) -> str:
    if asked is not None and asked not in supported:
        raise SpecError(f"this algorithm does {' or '.join(supported)}, not {asked}", field="task")
    task = asked or (supported[0] if len(supported) == 1 else None)
    if task in (CLUSTERING, DECOMPOSITION):
        return task
    target = _target_column(data)
    if target is None:
        raise SpecError("supervised learning needs a target column; name it in dataset.target",
                        field="dataset.target")
    natural = data.task or infer_task(target)
    task = task or natural
    if data.task and task != data.task:
        raise SpecError(f"{data.spec_value} is a {data.task} data set, but this algorithm does {task}; "
                        f"choose an algorithm that does {data.task}", field="task")
    if task == REGRESSION and target["kind"] != "numeric":
        raise SpecError(f"regression needs a numeric target; column {target['name']!r} holds text",
                        field="task")
    return task


def resolve_table_task(data: DatasetView) -> str:
    """Classification or regression for a network on a table, from its target column."""
    return _resolve_task(None, SUPERVISED, data)


def _target_column(data: DatasetView) -> dict[str, Any] | None:
    return next((c for c in data.columns if c["name"] == data.target), None)


def _check_against_data(algorithm: str, task: str, params: dict[str, Any], spec: ClassicSpec,
                        data: DatasetView) -> None:
    features = [c for c in data.columns if c["name"] != data.target]
    if not features:
        raise SpecError("the data set has no feature columns besides the target", field="dataset")
    gaps = [c["name"] for c in features if c["missing"]]
    if gaps and spec.preprocessing.impute is None:
        raise SpecError(
            f"feature columns have missing values ({', '.join(gaps[:5])}); set preprocessing.impute "
            "to mean, median or most_frequent, or upload data without gaps", field="preprocessing.impute")
    rows = data.rows
    if task in SUPERVISED:
        target = _target_column(data)
        if target and target["missing"]:
            raise SpecError(f"target column {target['name']!r} has {target['missing']} missing values; "
                            "remove those rows or choose another target", field="dataset.target")
        n_test = math.ceil(spec.evaluation.test_size * rows)
        n_train = rows - n_test
        if task == CLASSIFICATION and target:
            classes = target["distinct"]
            if classes < 2:
                raise SpecError("classification needs at least two classes in the target", field="dataset.target")
            if target["min_count"] < 2:
                raise SpecError("a class has a single row, so a stratified split is impossible; "
                                "give every class at least two rows", field="dataset.target")
            if n_test < classes or n_train < classes:
                raise SpecError(f"test_size {spec.evaluation.test_size} leaves {n_test} test and {n_train} "
                                f"training rows for {classes} classes; both need one row per class",
                                field="evaluation.test_size")
            if algorithm == "logistic_regression" and params["solver"] == "liblinear" and classes > 2:
                raise SpecError(f"solver 'liblinear' handles two classes; this target has {classes}. "
                                "Use lbfgs or saga", field="params.solver")
        if params.get("criterion") == "poisson" and target and (target.get("min") or 0) < 0:
            raise SpecError("criterion 'poisson' needs a target with no negative values", field="params.criterion")
        cv = spec.evaluation.cv
        if cv and cv > n_train:
            raise SpecError(f"cv={cv} folds need at least {cv} training rows; there are {n_train}",
                            field="evaluation.cv")
        fit_rows = n_train - math.ceil(n_train / cv) if cv else n_train
        if algorithm == "knn" and params["n_neighbors"] > fit_rows:
            raise SpecError(f"n_neighbors={params['n_neighbors']} is more than the {fit_rows} rows "
                            "each fit sees; choose a smaller value", field="params.n_neighbors")
    if algorithm == "kmeans" and params["n_clusters"] > rows:
        raise SpecError(f"n_clusters={params['n_clusters']} is more than the {rows} rows",
                        field="params.n_clusters")
    if algorithm == "pca" and isinstance(params["n_components"], int):
        width = sum(1 if c["kind"] == "numeric" else c["distinct"] for c in features)
        limit = min(rows, width)
        if params["svd_solver"] == "arpack":
            limit -= 1  # arpack needs strictly fewer components than rows and features
        if params["n_components"] > limit:
            raise SpecError(f"n_components={params['n_components']} is more than the {limit} this data "
                            "allows (the smaller of rows and features)", field="params.n_components")
