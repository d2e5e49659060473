"""scikit-learn's classic algorithms: build the pipeline, split, cross-validate, fit, measure.

The metrics are exactly what plain scikit-learn gives for the same split and seed:
`train_test_split(..., random_state=seed, stratify=y)` for the hold-out part and
`(Stratified)KFold(cv, shuffle=True, random_state=seed)` on the training part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import adjusted_rand_score, get_scorer, silhouette_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.classic.algorithms import ALGORITHMS
from service.classic.spec import ClassicRun, Evaluation
from service.data.tables import Table
from service.data.tasks import CLASSIFICATION, CLUSTERING, REGRESSION
from workers.trainers.base import Allotment, DataSource, Reporter, TrainedModel
from workers.trainers.datasets import load_table
from workers.trainers.scores import classification_metrics, regression_metrics, to_json

CV_SCORING = {CLASSIFICATION: "accuracy", REGRESSION: "r2"}


def build_estimator(algorithm: str, task: str, params: dict[str, Any], seed: int):
    """The estimator the algorithm names for the task, given only the parameters it accepts, seeded."""
    chosen = ALGORITHMS[algorithm]
    cls = chosen.estimator_class(task)
    accepted = cls().get_params()
    # A parameter left at null where the schema's default is null means "the estimator's own
    # default for this task" (criterion, loss); a null chosen over another default is passed on.
    defaults = {name: field.default for name, field in chosen.params.model_fields.items()}
    kwargs = {k: v for k, v in params.items() if k in accepted and not (v is None and defaults.get(k) is None)}
    if "random_state" in accepted:
        kwargs["random_state"] = seed
    return cls(**kwargs)


def build_pipeline(table: Table, impute: str | None, scale: bool, estimator) -> Pipeline:
    """Preprocessing and estimator as one pipeline, so the saved model takes raw rows."""
    numeric_steps = []
    if impute:
        numeric_steps.append(("impute", SimpleImputer(strategy=impute)))
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    if table.categorical:
        categorical_steps = [("impute", SimpleImputer(strategy="most_frequent"))] if impute else []
        categorical_steps.append(("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)))
        prepare = ColumnTransformer(
            [
                ("numeric", Pipeline(numeric_steps) if numeric_steps else "passthrough", table.numeric),
                ("categorical", Pipeline(categorical_steps), table.categorical),
            ]
        )
        return Pipeline([("prepare", prepare), ("model", estimator)])
    return Pipeline([*numeric_steps, ("model", estimator)])


def load_data(run: ClassicRun, source: DataSource) -> Table:
    return load_table(run.dataset, source.uploaded[1] if source.uploaded else None)


def write_skops(pipeline: Pipeline, path: Path) -> None:
    # skops rebuilds the pipeline without running pickled code (DESIGN.md decision 7).
    skops.io.dump(pipeline, path)


def train(run: ClassicRun, data: Table, report: Reporter, allotted: Allotment) -> TrainedModel:
    task, evaluation = run.task, run.evaluation
    estimator = build_estimator(run.algorithm, task, run.params, evaluation.seed)
    pipeline = build_pipeline(data, run.preprocessing.impute, run.preprocessing.scale, estimator)
    summary = repr(pipeline)
    report.event("log", {"message": f"{len(data.X)} rows, {data.X.shape[1]} features; {summary}"})

    classes = None
    if task in (CLASSIFICATION, REGRESSION):
        metrics = _fit_supervised(pipeline, data, task, evaluation, report)
        if task == CLASSIFICATION:
            classes = to_json(pipeline.classes_)
    else:
        pipeline.fit(data.X)
        metrics = _cluster_metrics(pipeline, data) if task == CLUSTERING else _pca_metrics(pipeline[-1])
    report.progress(fraction=1.0)
    return TrainedModel(
        artifact=pipeline,
        write=write_skops,
        suffix=".skops",
        framework="sklearn",
        algorithm=run.algorithm,
        task=task,
        input={"features": list(map(str, data.X.columns)), "categorical": list(data.categorical)},
        classes=classes,
        class_names=data.class_names,
        metrics=metrics,
        summary=summary,
    )


def _fit_supervised(
    pipeline: Pipeline, data: Table, task: str, evaluation: Evaluation, report: Reporter
) -> dict[str, Any]:
    seed, cv = evaluation.seed, evaluation.cv
    classification = task == CLASSIFICATION
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=evaluation.test_size, random_state=seed, stratify=data.y if classification else None
    )
    metrics: dict[str, Any] = {}
    steps = (cv or 0) + 1
    if cv:
        metrics["cv"] = _cross_validate(pipeline, X_train, y_train, task, cv, seed, report, steps)
    pipeline.fit(X_train, y_train)
    predicted = pipeline.predict(X_test)
    metrics.update(
        classification_metrics(y_test, predicted) if classification else regression_metrics(y_test, predicted)
    )
    metrics["rows"] = {"train": int(len(X_train)), "test": int(len(X_test))}
    return metrics


def _cross_validate(pipeline, X, y, task, cv, seed, report, steps) -> dict[str, Any]:
    splitter_cls = StratifiedKFold if task == CLASSIFICATION else KFold
    splitter = splitter_cls(n_splits=cv, shuffle=True, random_state=seed)
    scorer = get_scorer(CV_SCORING[task])
    # The folds' models are thrown away, so a table of numbers goes to them as arrays: the same
    # numbers, half scikit-learn's checking of data frames on small sets (a search's trials).
    # (Categorical columns are picked by name: those tables stay frames.)
    numeric = "prepare" not in pipeline.named_steps and all(pd.api.types.is_numeric_dtype(t) for t in X.dtypes)
    X, y = (X.to_numpy(), y.to_numpy()) if numeric else (X, y)
    rows = (lambda data, index: data[index]) if numeric else (lambda data, index: data.iloc[index])
    if numeric and task == CLASSIFICATION:
        # accuracy_score's own sum, without its checks of the labels (the fold's labels are the
        # training set's, and predict gives back the classes it was fitted on): the same number.
        scorer = lambda model, X, y: np.average(model.predict(X) == y)  # noqa: E731
    scores = []
    for fold, (fit_rows, score_rows) in enumerate(splitter.split(X, y), start=1):
        model = clone(pipeline).fit(rows(X, fit_rows), rows(y, fit_rows))
        scores.append(float(scorer(model, rows(X, score_rows), rows(y, score_rows))))
        report.event("log", {"message": f"fold {fold}/{cv}: {CV_SCORING[task]} {scores[-1]:.4f}"})
        report.progress(fraction=fold / steps)
    return {"metric": CV_SCORING[task], "folds": scores, "mean": float(np.mean(scores)), "std": float(np.std(scores))}


def _cluster_metrics(pipeline: Pipeline, data: Table) -> dict[str, Any]:
    kmeans = pipeline[-1]
    features = pipeline[:-1].transform(data.X) if len(pipeline) > 1 else data.X
    labels = kmeans.labels_
    distinct = len(np.unique(labels))
    metrics: dict[str, Any] = {
        "inertia": float(kmeans.inertia_),
        # The silhouette is defined only for 2 <= clusters <= rows - 1.
        "silhouette": float(silhouette_score(features, labels)) if 2 <= distinct < len(labels) else None,
        "cluster_sizes": np.bincount(labels).tolist(),
    }
    if data.y is not None:
        metrics["adjusted_rand"] = float(adjusted_rand_score(data.y, labels))
    return metrics


def _pca_metrics(pca: PCA) -> dict[str, Any]:
    ratio = pca.explained_variance_ratio_
    return {
        "n_components": int(pca.n_components_),
        "explained_variance_ratio": ratio.tolist(),
        "cumulative_explained_variance": np.cumsum(ratio).tolist(),
    }
