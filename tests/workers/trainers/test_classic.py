"""The classic trainer gives exactly what plain scikit-learn gives for the same split and seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, mean_absolute_error, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from service.classic.algorithms import ALGORITHMS
from service.classic.spec import ClassicRun
from service.data.tables import load_builtin, table_from_frame
from tests.support.trainers import ListReporter
from workers.trainers import Allotment, Cancelled
from workers.trainers.classic import train

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)


def make_spec(algorithm, task, params=None, *, test_size=0.2, cv=None, seed=0, scale=False, impute=None):
    full = ALGORITHMS[algorithm].params.model_validate(params or {}).model_dump()
    return ClassicRun.model_validate(
        {
            "dataset": "x",
            "algorithm": algorithm,
            "task": task,
            "params": full,
            "evaluation": {"test_size": test_size, "cv": cv, "seed": seed},
            "preprocessing": {"scale": scale, "impute": impute},
        }
    )


CLASSIFIERS = [
    (
        "knn",
        {"n_neighbors": 7, "weights": "distance"},
        lambda s: KNeighborsClassifier(n_neighbors=7, weights="distance"),
    ),
    ("decision_tree", {"max_depth": 3}, lambda s: DecisionTreeClassifier(max_depth=3, random_state=s)),
    ("random_forest", {"n_estimators": 20}, lambda s: RandomForestClassifier(n_estimators=20, random_state=s)),
    ("svm", {"kernel": "poly", "degree": 2}, lambda s: SVC(kernel="poly", degree=2, random_state=s)),
    ("svm", {"kernel": "linear", "C": 0.5}, lambda s: SVC(kernel="linear", C=0.5, random_state=s)),
    ("logistic_regression", {"max_iter": 500}, lambda s: LogisticRegression(max_iter=500, random_state=s)),
    (
        "gradient_boosting",
        {"max_iter": 30, "max_leaf_nodes": 8},
        lambda s: HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=s),
    ),
]


@pytest.mark.parametrize("algorithm,params,plain", CLASSIFIERS, ids=[c[0] + str(i) for i, c in enumerate(CLASSIFIERS)])
@pytest.mark.parametrize("dataset", ["iris", "wine"])
def test_classification_matches_plain_sklearn(algorithm, params, plain, dataset):
    seed = 3
    result = train(
        make_spec(algorithm, "classification", params, cv=4, seed=seed, scale=True),
        load_builtin(dataset),
        ListReporter(),
        Allotment(),
    )

    X, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    model = make_pipeline(StandardScaler(), plain(seed))
    cv_scores = cross_val_score(model, X_train, y_train, cv=StratifiedKFold(4, shuffle=True, random_state=seed))
    predicted = model.fit(X_train, y_train).predict(X_test)

    metrics = result.metrics
    assert metrics["accuracy"] == accuracy_score(y_test, predicted)
    assert metrics["f1_macro"] == f1_score(y_test, predicted, average="macro")
    assert metrics["confusion_matrix"]["matrix"] == confusion_matrix(y_test, predicted).tolist()
    assert metrics["cv"]["folds"] == cv_scores.tolist()
    assert set(metrics["per_class"]) == {str(c) for c in np.unique(y)}
    assert result.classes == np.unique(y).tolist()


REGRESSORS = [
    ("knn", {"n_neighbors": 4}, lambda s: KNeighborsRegressor(n_neighbors=4)),
    (
        "decision_tree",
        {"max_depth": 4, "criterion": "absolute_error"},
        lambda s: DecisionTreeRegressor(max_depth=4, criterion="absolute_error", random_state=s),
    ),
    ("random_forest", {"n_estimators": 15}, lambda s: RandomForestRegressor(n_estimators=15, random_state=s)),
    ("svm", {"kernel": "rbf", "C": 50.0, "epsilon": 0.2}, lambda s: SVR(kernel="rbf", C=50.0, epsilon=0.2)),
    ("linear_regression", {}, lambda s: LinearRegression()),
    (
        "gradient_boosting",
        {"loss": "absolute_error", "max_iter": 40, "max_leaf_nodes": None, "max_depth": 3},
        lambda s: HistGradientBoostingRegressor(
            loss="absolute_error", max_iter=40, max_leaf_nodes=None, max_depth=3, random_state=s
        ),
    ),
]


@pytest.mark.parametrize("algorithm,params,plain", REGRESSORS, ids=[r[0] for r in REGRESSORS])
def test_regression_matches_plain_sklearn(algorithm, params, plain):
    seed = 1
    result = train(
        make_spec(algorithm, "regression", params, test_size=0.25, cv=3, seed=seed),
        load_builtin("diabetes"),
        ListReporter(),
        Allotment(),
    )

    X, y = datasets.load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed)
    model = plain(seed)
    cv_scores = cross_val_score(model, X_train, y_train, cv=KFold(3, shuffle=True, random_state=seed))
    predicted = model.fit(X_train, y_train).predict(X_test)

    assert result.metrics["r2"] == pytest.approx(r2_score(y_test, predicted), rel=1e-12)
    assert result.metrics["mae"] == pytest.approx(mean_absolute_error(y_test, predicted), rel=1e-12)
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y_test - predicted) ** 2)), rel=1e-9)
    assert result.metrics["cv"]["folds"] == pytest.approx(cv_scores.tolist(), rel=1e-12)
    assert result.classes is None


def test_kmeans_metrics_match_plain_sklearn():
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    result = train(
        make_spec("kmeans", "clustering", {"n_clusters": 3}, seed=5), load_builtin("iris"), ListReporter(), Allotment()
    )
    X, y = datasets.load_iris(return_X_y=True)
    plain = KMeans(n_clusters=3, random_state=5).fit(X)
    assert result.metrics["inertia"] == pytest.approx(plain.inertia_, rel=1e-12)
    assert result.metrics["silhouette"] == pytest.approx(silhouette_score(X, plain.labels_), rel=1e-12)
    assert result.metrics["adjusted_rand"] == pytest.approx(adjusted_rand_score(y, plain.labels_), rel=1e-12)
    assert sum(result.metrics["cluster_sizes"]) == 150


def test_pca_reports_explained_variance_per_component():
    result = train(
        make_spec("pca", "decomposition", {"n_components": 3}, scale=True),
        load_builtin("wine"),
        ListReporter(),
        Allotment(),
    )
    X, _ = datasets.load_wine(return_X_y=True)
    plain = make_pipeline(StandardScaler(), PCA(n_components=3)).fit(X)
    assert result.metrics["explained_variance_ratio"] == pytest.approx(plain[-1].explained_variance_ratio_.tolist())
    assert result.metrics["n_components"] == 3
    assert result.metrics["cumulative_explained_variance"][-1] == pytest.approx(
        plain[-1].explained_variance_ratio_.sum()
    )
    assert result.artifact.transform(X[:2]).shape == (2, 3)


def test_categorical_and_missing_values_are_encoded_inside_the_pipeline():
    rng = np.random.default_rng(0)
    n = 120
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(10, 2, n)
    label = np.where((colour == "red") | (size > 11), "yes", "no")
    size[::10] = np.nan
    frame = pd.DataFrame({"colour": colour, "size": size, "label": label})
    table = table_from_frame(frame, "label")
    assert table.categorical == ["colour"] and table.numeric == ["size"]

    result = train(
        make_spec("decision_tree", "classification", {"max_depth": 4}, impute="median", scale=True),
        table,
        ListReporter(),
        Allotment(),
    )
    assert result.classes == ["no", "yes"]
    assert result.metrics["accuracy"] > 0.8
    predicted = result.artifact.predict(pd.DataFrame({"colour": ["red", "purple"], "size": [np.nan, 20.0]}))
    assert list(predicted) == ["yes", "yes"]  # unknown categories are ignored, gaps imputed


def test_cross_validation_reports_each_fold_and_can_be_cancelled():
    reporter = ListReporter()
    train(make_spec("knn", "classification", cv=5), load_builtin("iris"), reporter, Allotment())
    fold_logs = [d["message"] for t, d in reporter.events if t == "log" and d["message"].startswith("fold")]
    assert len(fold_logs) == 5
    assert reporter.progress_calls[-1] == {"fraction": 1.0}

    with pytest.raises(Cancelled):
        train(make_spec("knn", "classification", cv=5), load_builtin("iris"), ListReporter(cancel_after=3), Allotment())
