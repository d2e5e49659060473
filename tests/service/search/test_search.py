"""Hyperparameter search: the spec's checks, and searches driven in this process.

Each trial is a child job; here `run_queued` runs them as a worker's pool process would,
and the driver is stepped directly. tests/service/search/test_search_end_to_end.py runs searches on real
worker processes through the dispatcher.
"""

from __future__ import annotations

import time

import optuna
import pytest
from sqlalchemy import select

from service.core import storage
from service.core.orm import Job
from service.jobs import lifecycle
from service.search import studies
from service.search.driver import SearchDriver
from tests.support.api import assert_error

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

KNN_SEARCH = {
    "name": "knn-search",
    "dataset": "iris",
    "algorithm": "knn",
    "search": {
        "strategy": "random",
        "trials": 6,
        "parallel": 2,
        "seed": 1,
        "space": {
            "n_neighbors": {"type": "int", "low": 1, "high": 30},
            "weights": {"type": "categorical", "choices": ["uniform", "distance"]},
        },
    },
}


@pytest.fixture
def drive(settings, db, run_queued):
    """Steps the search driver and runs the trials it submits until the search ends."""
    driver = SearchDriver(settings, db, "test-dispatcher")

    def run(parent_id: str, timeout: float = 120, run_trials: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            driver.run_pending()
            with db.session() as session:
                parent = session.get(Job, parent_id)
                if parent.status in ("succeeded", "failed", "cancelled"):
                    return
                queued = session.scalars(
                    select(Job.id).where(Job.parent_id == parent_id, Job.status == "queued").order_by(Job.id)
                ).all()
            if not run_trials:
                return
            for child_id in queued:
                run_queued(child_id)
        raise AssertionError(f"search {parent_id} did not end within {timeout} s")

    run.driver = driver
    return run


def children_of(db, parent_id: str) -> list[Job]:
    with db.session() as session:
        return list(session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.trial_number)))


def test_a_random_search_runs_its_trials_as_child_jobs(client, alice, db, drive):
    submitted = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice)
    assert submitted.status_code == 201, submitted.get_json()
    parent = submitted.get_json()
    assert parent["family"] == "search" and parent["queue"] == "cpu"
    assert parent["spec"]["search"]["metric"] == "accuracy" and parent["spec"]["search"]["direction"] == "maximize"

    drive(parent["id"])

    job = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    children = children_of(db, parent["id"])
    assert len(children) == 6 and {c.status for c in children} == {"succeeded"}
    assert sorted(c.trial_number for c in children) == list(range(6))
    scores = {c.id: c.metrics["accuracy"] for c in children}
    assert result["best_value"] == max(scores.values())
    best_child = next(c for c in children if c.id == result["best_trial"])
    assert scores[best_child.id] == result["best_value"]
    assert best_child.spec["params"]["n_neighbors"] == result["best_params"]["n_neighbors"]
    assert result["model_id"] == best_child.result["model_id"]
    assert result["evaluations"] == 6 and len(result["curve"]) == 6
    assert result["curve"] == sorted(result["curve"]) and result["curve"][-1] == result["best_value"]
    board = result["trials"]
    assert [t["value"] for t in board] == sorted(scores.values(), reverse=True)
    assert {t["id"] for t in board} == set(scores)
    assert job["progress"]["trials_done"] == 6 and job["progress"]["fraction"] == 1.0
    assert job["metrics"]["accuracy"] == result["best_value"]

    events = client.get(f"/api/v1/jobs/{parent['id']}/events", headers=alice).get_json()["items"]
    assert [e["data"]["number"] for e in events if e["type"] == "trial"] == list(range(6))
    # The best trial's model answers predictions like any model.
    predicted = client.post(
        f"/api/v1/models/{result['model_id']}/predict", headers=alice, json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert predicted.status_code == 200 and predicted.get_json()["predictions"] == [0]
    # The search's own id names its best model too.
    by_search = client.get(f"/api/v1/models/{parent['id']}", headers=alice).get_json()
    assert by_search["id"] == result["model_id"] and by_search["job_id"] == best_child.id


def test_parallel_bounds_the_trials_queued_or_running_at_once(client, alice, db, drive):
    parent = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice).get_json()
    drive.driver.run_pending()
    assert len(children_of(db, parent["id"])) == 2
    drive.driver.run_pending()  # nothing finished: nothing new
    assert len(children_of(db, parent["id"])) == 2
    job = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()
    assert job["status"] == "running" and job["progress"]["trials_started"] == 2
    assert job["progress"]["trials_done"] == 0 and job["position"] is None


def test_grid_search_tries_each_point_once_and_caps_trials_at_the_grid(client, alice, db, drive):
    spec = {
        **KNN_SEARCH,
        "search": {
            "strategy": "grid",
            "trials": 50,
            "parallel": 3,
            "space": {
                "n_neighbors": {"type": "int", "low": 1, "high": 9, "step": 4},
                "weights": {"type": "categorical", "choices": ["uniform", "distance"]},
            },
        },
    }
    parent = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()
    assert parent["spec"]["search"]["trials"] == 6
    drive(parent["id"])
    tried = {(c.spec["params"]["n_neighbors"], c.spec["params"]["weights"]) for c in children_of(db, parent["id"])}
    assert tried == {(k, w) for k in (1, 5, 9) for w in ("uniform", "distance")}


def test_a_metaheuristic_search_with_cv_scores_trials_by_the_fold_mean(client, alice, db, drive):
    spec = {
        "dataset": "wine",
        "algorithm": "knn",
        "evaluation": {"cv": 5, "seed": 0},
        "preprocessing": {"scale": True},
        "search": {
            "strategy": "pso",
            "trials": 8,
            "parallel": 4,
            "params": {"swarm_size": 4},
            "space": {"n_neighbors": {"type": "int", "low": 1, "high": 25}},
        },
    }
    parent = client.post("/api/v1/jobs", json=spec, headers=alice)
    assert parent.status_code == 201, parent.get_json()
    parent = parent.get_json()
    drive(parent["id"])
    job = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()
    assert job["status"] == "succeeded", job
    means = [c.metrics["cv"]["mean"] for c in children_of(db, parent["id"])]
    assert len(means) == 8 and job["result"]["best_value"] == max(means)


def test_cancelling_a_search_cancels_its_trials(client, alice, db, drive):
    parent = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice).get_json()
    drive.driver.run_pending()
    assert [c.status for c in children_of(db, parent["id"])] == ["queued", "queued"]
    response = client.post(f"/api/v1/jobs/{parent['id']}/cancel", headers=alice)
    assert response.status_code == 202
    assert [c.status for c in children_of(db, parent["id"])] == ["cancelled", "cancelled"]
    drive(parent["id"])
    job = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()
    assert job["status"] == "cancelled"
    assert len(children_of(db, parent["id"])) == 2  # no trial was started after the cancel


def test_cancelling_a_search_stops_its_running_trials(client, alice, db, drive):
    parent = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice).get_json()
    drive.driver.run_pending()
    running, waiting = children_of(db, parent["id"])
    with db.session() as session:  # a worker has taken the first trial
        assert lifecycle.claim(session, running.id, "w1") == 1
    assert client.post(f"/api/v1/jobs/{parent['id']}/cancel", headers=alice).status_code == 202
    with db.session() as session:
        assert session.get(Job, waiting.id).status == "cancelled"
        assert session.get(Job, running.id).cancel_requested  # its job watch stops it within a batch
    drive(parent["id"], run_trials=False)
    assert client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()["status"] == "running"
    with db.session() as session:  # the trial stops as its watch would make it
        lifecycle.finish(session, running.id, lifecycle.CANCELLED, attempt=1)
    drive(parent["id"], run_trials=False)
    job = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()
    assert job["status"] == "cancelled"
    assert {t["status"] for t in job["result"]["trials"]} == {"cancelled"}


def test_a_search_of_another_user_is_hidden(client, alice, bob, drive):
    parent = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice).get_json()
    assert client.get(f"/api/v1/jobs/{parent['id']}", headers=bob).status_code == 404
    assert client.post(f"/api/v1/jobs/{parent['id']}/cancel", headers=bob).status_code == 404


def _with_search(**changes):
    search = {**KNN_SEARCH["search"], **changes}
    return {**KNN_SEARCH, "search": search}


def _space(**dims):
    return _with_search(space=dims)


@pytest.mark.parametrize(
    "spec,field",
    [
        (_space(n_neighbors={"type": "int", "low": 0, "high": 10}), "search.space.n_neighbors.low"),
        (_space(n_neighbors={"type": "int", "low": 1, "high": 500}), "search.space.n_neighbors.high"),
        (_space(weights={"type": "categorical", "choices": ["uniform", "far"]}), "search.space.weights.choices.1"),
        (_space(k={"type": "int", "low": 1, "high": 5}), "search.space.k"),
        (_space(n_neighbors={"type": "int", "low": 5, "high": 5}), "search.space.n_neighbors.high"),
        (_space(n_neighbors={"type": "int", "low": 1.5, "high": 5}), "search.space.n_neighbors.low"),
        (_space(n_neighbors={"type": "int", "high": 5}), "search.space.n_neighbors.low"),
        (_space(n_neighbors={"type": "int", "low": 1, "high": 5, "choices": [1]}), "search.space.n_neighbors.choices"),
        (_space(weights={"type": "categorical"}), "search.space.weights.choices"),
        (_space(weights={"type": "categorical", "choices": ["uniform", "uniform"]}), "search.space.weights.choices"),
        (_space(n_neighbors={"type": "int", "low": 0, "high": 5, "log": True}), "search.space.n_neighbors.low"),
        (_space(n_neighbors={"type": "integer", "low": 1, "high": 5}), "search.space.n_neighbors.type"),
        (_space(), "search.space"),
        (_with_search(strategy="hillclimb"), "search.strategy"),
        (_with_search(trials=0), "search.trials"),
        (_with_search(parallel=0), "search.parallel"),
        (_with_search(metric="r2"), "search.metric"),
        (_with_search(params={"population": 10}), "search.params.population"),
        (_with_search(strategy="ga", params={"colonies": 3}), "search.params.colonies"),
        (_with_search(strategy="grid", space={"p": {"type": "float", "low": 1, "high": 2}}), "search.space.p.low"),
        (
            {
                "dataset": "iris",
                "algorithm": "svm",
                "search": {"strategy": "grid", "space": {"C": {"type": "float", "low": 0.1, "high": 2}}},
            },
            "search.space.C.step",
        ),
        (
            _with_search(
                strategy="grid",
                space={
                    "n_neighbors": {"type": "int", "low": 1, "high": 100},
                    "leaf_size": {"type": "int", "low": 1, "high": 200},
                },
            ),
            "search.space",
        ),
        (_with_search(bogus=1), "search.bogus"),
        ({**KNN_SEARCH, "search": "ga"}, "search"),
        (
            {**KNN_SEARCH, "evaluation": {"cv": 3}, "search": {**KNN_SEARCH["search"], "metric": "f1_macro"}},
            "search.metric",
        ),
    ],
)
def test_bad_searches_are_422s_naming_the_field(client, alice, spec, field):
    assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, field=field)


def test_bad_network_searches_are_422s(client, alice):
    base = {
        "dataset": "digits",
        "framework": "pytorch",
        "network": {"preset": "feedforward"},
        "training": {"epochs": 1},
    }
    cases = [
        ({"learning_rate": {"type": "float", "low": 1e-4, "high": 20, "log": True}}, "search.space.learning_rate.high"),
        ({"filters": {"type": "int", "low": 2, "high": 8}}, "search.space.filters"),
        ({"dropout": {"type": "float", "low": 0.1, "high": 0.5}}, "search.space.dropout"),
        ({"units": {"type": "int", "low": 0, "high": 64}}, "search.space.units.low"),
    ]
    for space, field in cases:
        spec = {**base, "search": {"strategy": "tpe", "trials": 3, "space": space}}
        assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, field=field)
    ok = {
        **base,
        "search": {
            "strategy": "tpe",
            "trials": 3,
            "metric": "test_loss",
            "space": {"units": {"type": "int", "low": 8, "high": 64}},
        },
    }
    response = client.post("/api/v1/jobs", json=ok, headers=alice)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["spec"]["search"]["direction"] == "minimize"


def test_the_catalog_lists_every_search_strategy_with_its_parameters(client, alice):
    search = client.get("/api/v1/algorithms", headers=alice).get_json()["search"]
    strategies = {s["name"]: s for s in search["strategies"]}
    assert set(strategies) == {"grid", "random", "tpe", "ga", "sa", "tabu", "aco", "pso", "bfo", "abc"}
    ga = {p["name"]: p for p in strategies["ga"]["parameters"]}
    assert ga["population"]["default"] == 50 and ga["crossover_rate"]["accepts"][0]["maximum"] == 1
    assert {p["name"] for p in strategies["tpe"]["parameters"]} == {"n_startup_trials", "multivariate"}
    assert {f["name"] for f in search["dimension"]} >= {"type", "low", "high", "log", "choices"}


def test_a_restarted_driver_carries_on_and_another_waits_for_the_lease(client, alice, settings, db, run_queued):
    spec = {
        **KNN_SEARCH,
        "search": {**KNN_SEARCH["search"], "strategy": "ga", "trials": 8, "parallel": 2, "params": {"population": 4}},
    }
    parent = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()
    SearchDriver(settings, db, "dispatcher@a").run_pending()
    first = children_of(db, parent["id"])
    assert len(first) == 2
    # Another dispatcher may not step the search while the first one's lease is fresh.
    SearchDriver(settings, db, "dispatcher@b").run_pending()
    assert len(children_of(db, parent["id"])) == 2
    for child in first:
        run_queued(child.id)
    # The first dispatcher restarts: a new driver, nothing in memory, the same name.
    restarted = SearchDriver(settings, db, "dispatcher@a")
    for _ in range(50):
        restarted.run_pending()
        queued = [c.id for c in children_of(db, parent["id"]) if c.status == "queued"]
        for child_id in queued:
            run_queued(child_id)
        if client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()["status"] == "succeeded":
            break
    job = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()
    assert job["status"] == "succeeded", job
    children = children_of(db, parent["id"])
    assert sorted(c.trial_number for c in children) == list(range(8))
    assert [t["number"] for t in sorted(job["result"]["trials"], key=lambda t: t["number"])] == list(range(8))


def test_a_trial_asked_but_never_submitted_is_failed_in_optuna_when_the_search_ends(client, alice, settings, db, drive):

    parent = client.post(
        "/api/v1/jobs", json={**KNN_SEARCH, "search": {**KNN_SEARCH["search"], "trials": 2}}, headers=alice
    ).get_json()
    drive.driver.run_pending()
    journal = studies.open_journal(
        storage.job_dir(settings, parent["id"]), f"labtrain-{parent['id']}", settings.database_url, begun=True
    )
    study = optuna.load_study(study_name=f"labtrain-{parent['id']}", storage=journal)
    orphan = study.ask()  # as a dispatcher that died between asking and submitting would leave it
    drive(parent["id"])
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert [states[n] for n in (0, 1)] == [optuna.trial.TrialState.COMPLETE] * 2
