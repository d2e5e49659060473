"""The pieces of a comparison with no server: a spec's parameters and a job's metrics flattened,
curves from events (bounded, one point per x), what differs, and the CSV."""

from __future__ import annotations

import csv
import io
import math

import pytest

from service.compare import series as series_module
from service.compare.comparison import Comparison
from service.compare.csv_export import comparison_csv
from service.compare.flatten import flatten_metrics, flatten_params
from service.compare.items import JOB, CompareItem, Series
from service.compare.series import job_series
from service.jobs import keep_model
from service.tracking.runs import flatten_spec

pytestmark = pytest.mark.fast


def item(job_id: str, params=None, metrics=None, series=None, **fields) -> CompareItem:
    return CompareItem(job_id, JOB, fields.pop("name", job_id), "succeeded", params or {}, metrics or {},
                       series or {}, **fields)  # fmt: skip


def test_a_spec_flattens_to_dotted_names_with_layers_indexed_and_plain_lists_as_one_value():
    spec = {
        "name": "mlp",
        "dataset": {"id": "d1", "target": "label"},
        "framework": "pytorch",
        "network": {"api": "sequential", "layers": [{"type": "dense", "units": 8}, {"type": "dropout", "rate": 0.2}]},
        "training": {"learning_rate": 0.01, "metrics": ["accuracy"], "early_stopping": None, "extra": {}},
        "code": {"args": ["--epochs", "5"]},
    }
    assert flatten_params(spec) == {
        "dataset.id": "d1",
        "dataset.target": "label",
        "framework": "pytorch",
        "network.api": "sequential",
        "network.layers.0.type": "dense",
        "network.layers.0.units": 8,
        "network.layers.1.type": "dropout",
        "network.layers.1.rate": 0.2,
        "training.learning_rate": 0.01,
        "training.metrics": '["accuracy"]',
        "training.early_stopping": None,
        "training.extra": "{}",
        "code.args": '["--epochs", "5"]',
    }
    assert flatten_params(None) == {}
    assert flatten_params({"x": math.nan}) == {"x": "nan"}  # JSON has no NaN


def test_a_trials_model_rule_is_no_parameter_in_compare_or_in_its_mlflow_run():
    # The search's best score when the trial was submitted differs in every trial: shown as a
    # parameter it would be the one "difference" between trials that differ in nothing else.
    spec = {"dataset": "wine", "algorithm": "knn", "keep_model": {"metric": "accuracy", "better_than": 0.9}}
    assert flatten_params(spec) == {"dataset": "wine", "algorithm": "knn"}
    assert flatten_spec(spec) == {
        "dataset": "wine",
        "algorithm": "knn",
        "keep_model.metric": "accuracy",
        "keep_model.better_than": "0.9",
    }  # the generic flattening keeps it ...
    assert "keep_model.metric" not in flatten_spec(keep_model.split(spec)[0])  # ... the run view splits it off


def test_a_deep_spec_flattens_without_recursion():
    deep: dict = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    inner["b"] = 1
    flat = flatten_params(deep)
    assert list(flat.values()) == [1] and list(flat)[0].count(".") == 5000


def test_final_metrics_keep_the_numbers_under_dotted_names():
    metrics = {
        "accuracy": 0.9,
        "cv": {"mean": 0.8, "std": 0.1, "folds": [0.7, 0.9]},
        "confusion_matrix": {"labels": [0, 1], "matrix": [[1, 0], [0, 1]]},
        "best_trial": "abc",
        "converged": True,
        "loss": math.inf,
        "epochs": 3,
    }
    assert flatten_metrics(metrics) == {"accuracy": 0.9, "cv.mean": 0.8, "cv.std": 0.1, "epochs": 3.0}


def test_curves_come_from_epoch_and_metrics_events_one_point_per_x():
    events = [
        ("status", {"status": "running"}),
        ("epoch", {"epoch": 1, "epochs": 2, "loss": 0.9, "accuracy": 0.5, "epoch_time": 1.2}),
        ("log", {"message": "hello"}),
        ("epoch", {"epoch": 2, "epochs": 2, "loss": 0.5, "accuracy": 0.7}),
        ("epoch", {"epoch": 2, "epochs": 2, "loss": 0.1}),  # a resumed attempt's repeat: dropped
        ("metrics", {"step": 10, "source": "mlflow", "train/loss": 0.8}),
        ("metrics", {"step": 0, "source": "tensorboard", "train/loss": 1.0, "lr": 0.1}),
        ("metrics", {"step": 10, "source": "mlflow", "train/loss": 0.2}),  # repeat of step 10: dropped
        ("metrics", {"step": 20, "loss": 0.01}),  # a key on the other axis: the first axis wins
        ("metrics", {"source": "mlflow", "no_step": 1.0}),  # no step: no point
        ("metrics", {"step": "3", "text_step": 1.0}),
        ("metrics", {"step": 5, "flag": True, "nan": math.nan, "text": "x", "x" * 251: 1.0}),
        ("epoch", ["not", "an", "object"]),
    ]
    curves = job_series(events)
    assert curves == {
        "loss": Series("epoch", [[1, 0.9], [2, 0.5]]),
        "accuracy": Series("epoch", [[1, 0.5], [2, 0.7]]),
        "train/loss": Series("step", [[0, 1.0], [10, 0.8]]),
        "lr": Series("step", [[0, 0.1]]),
    }


def test_curves_are_bounded_in_keys_and_points(monkeypatch):
    many_keys = [("metrics", {"step": 0, **{f"k{i}": float(i) for i in range(150)}})]
    assert len(job_series(many_keys)) == series_module.MAX_SERIES
    long_run = [("metrics", {"step": step, "loss": float(step)}) for step in range(2000)]
    points = job_series(long_run)["loss"].points
    assert len(points) == series_module.MAX_POINTS
    assert points[0] == [0, 0.0] and points[-1] == [1999, 1999.0]
    assert [x for x, _ in points] == sorted(x for x, _ in points)


def test_what_differs_between_items():
    a = item("a", {"lr": 0.1, "algo": "knn", "flag": True, "only_a": 1}, {"accuracy": 0.9, "loss": 0.2})
    b = item("b", {"lr": 0.01, "algo": "knn", "flag": 1}, {"accuracy": 0.9}, {"loss": Series("epoch", [[1, 0.2]])})
    c = item("c", {"lr": 0.1, "algo": "knn", "flag": True}, {"accuracy": 0.9, "loss": 0.2})
    comparison = Comparison([a, b, c])
    assert comparison.params == ["lr", "algo", "flag", "only_a"]
    # True is not the number 1; a parameter one item lacks differs.
    assert comparison.differing_params() == ["lr", "flag", "only_a"]
    # b's loss is the last point of its curve: the same as the others' final value.
    assert comparison.metrics == ["accuracy", "loss"] and comparison.differing_metrics() == []
    view = comparison.view()
    assert view["differ"] == {"params": ["lr", "flag", "only_a"], "metrics": []}
    assert [i["id"] for i in view["items"]] == ["a", "b", "c"] and view["omitted"] == 0
    assert view["items"][1]["series"] == {"loss": {"x": "epoch", "points": [[1, 0.2]]}}


def test_labels_name_trials_by_number():
    assert item("a", name="mlp · trial 3", trial_number=3).label == "mlp · trial 3"
    assert item("a", name=None, trial_number=3).label == "trial 3"
    assert item("abc", name=None).label == "abc"


def test_the_csv_has_a_row_per_item_and_writes_formulas_as_text():
    a = item("a", {"lr": 0.1, "status": "x", "shuffle": True}, {"accuracy": 0.9, "lr": 1.0}, name="=HYPERLINK(1)")
    b = item("b", {"lr": -0.5}, {}, {"accuracy": Series("step", [[0, 0.1], [5, 0.4]])}, name="@b")
    rows = list(csv.reader(io.StringIO(comparison_csv(Comparison([a, b])))))
    # A metric named like a column already taken gets a column of its own.
    assert rows[0] == ["id", "name", "status", "lr", "params.status", "shuffle", "accuracy", "metrics.lr"]
    assert rows[1] == ["a", "'=HYPERLINK(1)", "succeeded", "0.1", "x", "true", "0.9", "1.0"]
    assert rows[2] == ["b", "'@b", "succeeded", "-0.5", "", "", "0.4", ""]  # a negative number stays a number
