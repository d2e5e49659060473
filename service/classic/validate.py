"""Checking a classic job spec against its algorithm and its data, at submit time.

The checks against the data set (rows, classes, missing values) are made now, so that bad
input is a 422 naming the field, not a failed job.
"""

from __future__ import annotations

import math
from typing import Any

from service.classic.algorithms import ALGORITHMS, param_conflicts
from service.classic.spec import ClassicRun, ClassicSpec
from service.core.errors import SpecError
from service.data.refs import DatasetView, supervised_task, target_column
from service.data.tasks import CLASSIFICATION, CLUSTERING, DECOMPOSITION, SUPERVISED
from service.jobs.context import SubmitContext
from service.jobs.spec import ValidatedJob, parse_spec
from service.lab.devices import place


def validate_classic(payload: dict[str, Any], ctx: SubmitContext) -> ValidatedJob:
    spec = parse_spec(ClassicSpec, payload)
    algorithm = ALGORITHMS.get(spec.algorithm)
    if algorithm is None:
        raise SpecError(
            f"unknown algorithm {spec.algorithm!r}; choose one of {', '.join(ALGORITHMS)}",
            field="algorithm",
            code="unknown_algorithm",
        )
    if spec.device == "gpu":
        raise SpecError("classic algorithms run on the CPU; use device 'cpu' or 'auto'", field="device")
    queue = place(ctx, spec.device, spec.queue, cpu_only="classic algorithms run on the CPU").queue
    params = parse_spec(algorithm.params, spec.params, prefix="params").model_dump()

    data = ctx.data.table(spec.dataset)
    task = _resolve_task(spec.task, algorithm.tasks, data)
    conflict = param_conflicts(algorithm.name, task, params)
    if conflict:
        raise SpecError(conflict[1], field=conflict[0])
    _check_against_data(algorithm.name, task, params, spec, data)

    run = ClassicRun(
        name=spec.name,
        dataset=data.spec_value,
        algorithm=algorithm.name,
        task=task,
        params=params,
        evaluation=spec.evaluation,
        preprocessing=spec.preprocessing,
    )
    return ValidatedJob(family="classic", run=run, queue=queue, name=spec.name, tier=spec.tier)


def _resolve_task(asked: str | None, supported: tuple[str, ...], data: DatasetView) -> str:
    if asked is not None and asked not in supported:
        raise SpecError(f"this algorithm does {' or '.join(supported)}, not {asked}", field="task")
    task = asked or (supported[0] if len(supported) == 1 else None)
    if task in (CLUSTERING, DECOMPOSITION):
        return task
    return supervised_task(data, task)


def _check_against_data(
    algorithm: str, task: str, params: dict[str, Any], spec: ClassicSpec, data: DatasetView
) -> None:
    features = [c for c in data.columns if c["name"] != data.target]
    if not features:
        raise SpecError("the data set has no feature columns besides the target", field="dataset")
    gaps = [c["name"] for c in features if c["missing"]]
    if gaps and spec.preprocessing.impute is None and not ALGORITHMS[algorithm].handles_missing:
        raise SpecError(
            f"feature columns have missing values ({', '.join(gaps[:5])}); set preprocessing.impute "
            "to mean, median or most_frequent, or upload data without gaps",
            field="preprocessing.impute",
        )
    rows = data.rows
    if task in SUPERVISED:
        target = target_column(data)
        if target and target["missing"]:
            raise SpecError(
                f"target column {target['name']!r} has {target['missing']} missing values; "
                "remove those rows or choose another target",
                field="dataset.target",
            )
        n_test = math.ceil(spec.evaluation.test_size * rows)
        n_train = rows - n_test
        if task == CLASSIFICATION and target:
            classes = target["distinct"]
            if classes < 2:
                raise SpecError("classification needs at least two classes in the target", field="dataset.target")
            if target["min_count"] < 2:
                raise SpecError(
                    "a class has a single row, so a stratified split is impossible; give every class at least two rows",
                    field="dataset.target",
                )
            if n_test < classes or n_train < classes:
                raise SpecError(
                    f"test_size {spec.evaluation.test_size} leaves {n_test} test and {n_train} "
                    f"training rows for {classes} classes; both need one row per class",
                    field="evaluation.test_size",
                )
            if algorithm == "logistic_regression" and params["solver"] == "liblinear" and classes > 2:
                raise SpecError(
                    f"solver 'liblinear' handles two classes; this target has {classes}. Use lbfgs or saga",
                    field="params.solver",
                )
        if params.get("criterion") == "poisson" and target and (target.get("min") or 0) < 0:
            raise SpecError("criterion 'poisson' needs a target with no negative values", field="params.criterion")
        lowest = target.get("min") if target else None
        if lowest is not None and (
            (params.get("loss") == "poisson" and lowest < 0) or (params.get("loss") == "gamma" and lowest <= 0)
        ):
            need = "no negative values" if params["loss"] == "poisson" else "only values above 0"
            raise SpecError(f"loss {params['loss']!r} needs a target with {need}", field="params.loss")
        cv = spec.evaluation.cv
        if cv and cv > n_train:
            raise SpecError(
                f"cv={cv} folds need at least {cv} training rows; there are {n_train}", field="evaluation.cv"
            )
        fit_rows = n_train - math.ceil(n_train / cv) if cv else n_train
        if algorithm == "knn" and params["n_neighbors"] > fit_rows:
            raise SpecError(
                f"n_neighbors={params['n_neighbors']} is more than the {fit_rows} rows "
                "each fit sees; choose a smaller value",
                field="params.n_neighbors",
            )
    if algorithm == "kmeans" and params["n_clusters"] > rows:
        raise SpecError(f"n_clusters={params['n_clusters']} is more than the {rows} rows", field="params.n_clusters")
    if algorithm == "pca" and isinstance(params["n_components"], int):
        width = sum(1 if c["kind"] == "numeric" else c["distinct"] for c in features)
        limit = min(rows, width)
        if params["svd_solver"] == "arpack":
            limit -= 1  # arpack needs strictly fewer components than rows and features
        if params["n_components"] > limit:
            raise SpecError(
                f"n_components={params['n_components']} is more than the {limit} this data "
                "allows (the smaller of rows and features)",
                field="params.n_components",
            )
