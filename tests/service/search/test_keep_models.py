"""A search's `keep_models`: with "best" (the default) a trial saves its model only when it
scores at least the search's best when it was submitted, so the best trial always has one and
a worse trial says why it has none; "all" keeps every trial's. Searches driven in this process
(tests/service/search/test_search.py's `drive`)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service.core.orm import Model
from service.jobs import keep_model
from tests.service.search import test_search
from tests.support.api import assert_error

pytestmark = pytest.mark.fast
drive, children_of = test_search.drive, test_search.children_of  # the fixture that steps a search

# One trial at a time, so each trial is submitted knowing every score before it.
SEARCH = {
    "dataset": "wine",
    "algorithm": "knn",
    "evaluation": {"cv": 3},
    "preprocessing": {"scale": True},
    "search": {
        "strategy": "random",
        "trials": 8,
        "parallel": 1,
        "seed": 3,
        "space": {"n_neighbors": {"type": "int", "low": 1, "high": 60}},
    },
}
WINE_ROW = [13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050]


def with_keep(value):
    return {**SEARCH, "search": {**SEARCH["search"], "keep_models": value}}


def model_files(settings):
    folder = settings.artifact_dir / "models"
    return sorted(path.stem for path in folder.iterdir()) if folder.exists() else []


def test_the_best_trial_keeps_its_model_and_a_worse_one_says_why_it_has_none(client, alice, db, settings, drive):
    parent = client.post("/api/v1/jobs", json=SEARCH, headers=alice).get_json()
    assert parent["spec"]["search"]["keep_models"] == "best"  # the default
    drive(parent["id"])
    result = client.get(f"/api/v1/jobs/{parent['id']}", headers=alice).get_json()["result"]

    trials = children_of(db, parent["id"])
    assert [t.status for t in trials] == ["succeeded"] * 8
    best_before = None  # the best score when each trial was submitted (parallel 1: all before it)
    unkept = []
    for trial in trials:
        score = trial.metrics["cv"]["mean"]
        worse = best_before is not None and score < best_before
        assert (trial.result["model_id"] is None) == worse, (trial.trial_number, score, best_before)
        if worse:
            unkept.append(trial)
            assert "worse than the search's best" in trial.result["model_not_kept"]
            assert trial.spec["keep_model"] == {
                "metric": "accuracy",
                "direction": "maximize",
                "better_than": best_before,
            }
            assert trial.metrics["accuracy"] is not None  # its metrics as any trial's
        best_before = score if best_before is None else max(best_before, score)
    assert unkept, "no trial scored worse than the best before it: choose another seed"

    # The files and rows are those of the kept models only.
    with db.session() as session:
        rows = sorted(session.scalars(select(Model.id)))
    kept = sorted(t.result["model_id"] for t in trials if t.result["model_id"])
    assert rows == kept == model_files(settings)

    # The search's model is its best trial's, and it predicts.
    assert result["model_id"] in kept
    answer = client.post(f"/api/v1/models/{parent['id']}/predict", headers=alice, json={"instances": [WINE_ROW]})
    assert answer.status_code == 200 and answer.get_json()["model_id"] == result["model_id"]
    # A trial without a model is a 409 that says why.
    error = assert_error(client.get(f"/api/v1/models/{unkept[0].id}", headers=alice), 409, field="id")
    assert "kept no model" in error["message"] and "keep_models: best" in error["message"]


def test_all_keeps_every_trials_model(client, alice, db, settings, drive):
    parent = client.post("/api/v1/jobs", json=with_keep("all"), headers=alice).get_json()
    drive(parent["id"])
    trials = children_of(db, parent["id"])
    assert len(trials) == 8 and all(t.result["model_id"] for t in trials)
    assert all("keep_model" not in t.spec and "model_not_kept" not in t.result for t in trials)
    assert model_files(settings) == sorted(t.result["model_id"] for t in trials)


@pytest.mark.parametrize("value", ["none", "", 1, None])
def test_a_bad_keep_models_is_a_422_naming_it(client, alice, value):
    error = assert_error(client.post("/api/v1/jobs", json=with_keep(value), headers=alice), 422)
    assert error["details"]["field"] == "search.keep_models", error


def test_a_tie_keeps_its_model_and_minimised_scores_count_down():
    assert keep_model.rule("accuracy", "maximize", None) is None  # no score yet: every trial keeps its model
    assert keep_model.rule("accuracy", "maximize", float("nan")) is None
    best = keep_model.rule("accuracy", "maximize", 0.9)
    assert keep_model.not_kept(best, 0.9) is None and keep_model.not_kept(best, 0.95) is None
    assert "0.89" in keep_model.not_kept(best, 0.89)
    assert keep_model.not_kept(best, None) is None and keep_model.not_kept(best, float("nan")) is None
    lowest = keep_model.rule("rmse", "minimize", 2.0)
    assert keep_model.not_kept(lowest, 1.5) is None and keep_model.not_kept(lowest, 2.0) is None
    assert keep_model.not_kept(lowest, 2.5) is not None
    assert keep_model.split({"a": 1, "keep_model": best}) == ({"a": 1}, best)
