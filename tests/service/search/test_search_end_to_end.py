"""Searches through real processes: the dispatcher drives them, Celery workers run the trials."""

from __future__ import annotations

import numpy as np

from tests.support.digit_images import load_mnist_8k
from tests.test_end_to_end import embedded_service, pg_redis_service  # noqa: F401  (module fixtures)


def _trials(client, parent_id: str) -> list[dict]:
    return client.get("/api/v1/jobs", params={"parent": parent_id, "limit": 500}).json()["items"]


def test_a_ga_search_over_knn_on_wine_with_5_fold_cv(pg_redis_service):  # noqa: F811
    client, _env, _processes = pg_redis_service
    spec = {
        "name": "wine-knn-ga",
        "dataset": "wine",
        "algorithm": "knn",
        "evaluation": {"cv": 5, "seed": 0},
        "preprocessing": {"scale": True},
        "search": {
            "strategy": "ga",
            "trials": 16,
            "parallel": 4,
            "seed": 3,
            "params": {"population": 8},
            "space": {
                "n_neighbors": {"type": "int", "low": 1, "high": 30},
                "weights": {"type": "categorical", "choices": ["uniform", "distance"]},
            },
        },
    }
    submitted = client.post("/api/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    search = client.wait_for(submitted.json()["id"], timeout=240)
    assert search["status"] == "succeeded", search

    trials = _trials(client, search["id"])
    assert len(trials) == 16 and {t["status"] for t in trials} == {"succeeded"}
    assert sorted(t["trial_number"] for t in trials) == list(range(16))
    stored = {t["id"]: t["metrics"]["cv"]["mean"] for t in trials}
    result = search["result"]
    assert result["best_value"] == max(stored.values())
    assert stored[result["best_trial"]] == result["best_value"]
    best = next(t for t in trials if t["id"] == result["best_trial"])
    assert {k: best["spec"]["params"][k] for k in ("n_neighbors", "weights")} == result["best_params"]
    assert len(result["trials"]) == 16 and result["trials"][0]["value"] == result["best_value"]
    assert len(result["curve"]) == 16 and result["curve"][-1] == result["best_value"]
    assert search["progress"]["trials_done"] == 16
    predicted = client.post(
        f"/api/v1/models/{result['model_id']}/predict",
        json={"instances": [[13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050]]},
    )
    assert predicted.status_code == 200 and predicted.json()["predictions"] == [0]


def test_a_tpe_search_over_an_mlp_on_mnist(pg_redis_service):  # noqa: F811
    client, _env, _processes = pg_redis_service
    spec = {
        "name": "mnist-mlp-tpe",
        "dataset": "mnist",
        "framework": "tensorflow",
        "network": {"preset": "mlp"},
        "training": {"epochs": 1, "batch_size": 64},
        "search": {
            "strategy": "tpe",
            "trials": 4,
            "parallel": 2,
            "seed": 0,
            "space": {
                "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                "units": {"type": "int", "low": 32, "high": 128},
            },
        },
    }
    submitted = client.post("/api/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    search = client.wait_for(submitted.json()["id"], timeout=300)
    assert search["status"] == "succeeded", search

    trials = _trials(client, search["id"])
    assert len(trials) == 4
    for trial in trials:  # each trial trained the network its parameters describe
        hidden = trial["spec"]["network"]["layers"][1]
        params = next(t["params"] for t in search["result"]["trials"] if t["id"] == trial["id"])
        assert hidden["units"] == params["units"]
        assert trial["spec"]["training"]["learning_rate"] == params["learning_rate"]
    result = search["result"]
    assert result["best_value"] == max(t["metrics"]["accuracy"] for t in trials)

    _x_train, _y_train, x_test, y_test = load_mnist_8k()
    predicted = client.post(f"/api/v1/models/{result['model_id']}/predict", json={"instances": x_test[:50].tolist()})
    assert predicted.status_code == 200, predicted.text
    accuracy = float(np.mean(np.array(predicted.json()["predictions"]) == y_test[:50]))
    assert accuracy >= 0.6  # one epoch on 6,400 digits


def test_a_search_on_the_embedded_defaults(embedded_service):  # noqa: F811
    """SQLite holds the jobs and Optuna's trials; the serverless broker carries the trials."""
    client, _home, _process = embedded_service
    spec = {
        "dataset": "iris",
        "algorithm": "decision_tree",
        "search": {
            "strategy": "random",
            "trials": 4,
            "parallel": 2,
            "space": {"max_depth": {"type": "int", "low": 1, "high": 6}},
        },
    }
    submitted = client.post("/api/v1/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    search = client.wait_for(submitted.json()["id"], timeout=120)
    assert search["status"] == "succeeded", search
    assert len(_trials(client, search["id"])) == 4
