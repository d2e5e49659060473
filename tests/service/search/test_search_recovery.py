"""A search survives its dispatcher dying mid-step: no trial number lost, none doubled.

A step asks Optuna (the journal is written at once), commits the trials' jobs, then saves the
search's state file. A dispatcher killed between two of these leaves them disagreeing; here
the kill is an exception no `except Exception` catches, raised where the step would die, and
a new driver (a restarted dispatcher, nothing in memory) carries the search on.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.core.orm import Job, JobEvent, User
from service.jobs import submission
from service.jobs.context import SubmitContext
from service.search import driver as driver_module
from service.search.driver import SearchDriver
from tests.service.search.test_search import children_of

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

NAME = "test-dispatcher"


class Killed(BaseException):
    """The dispatcher's death: no `finally` after it is meant to matter."""


def _search(strategy: str = "random", trials: int = 8, space=None, **params) -> dict:
    return {
        "dataset": "wine",
        "algorithm": "knn",
        "evaluation": {"cv": 3},
        "search": {
            "strategy": strategy,
            "trials": trials,
            "parallel": 2,
            "seed": 3,
            "space": space or {"n_neighbors": {"type": "int", "low": 1, "high": 60}},
            **({"params": params} if params else {}),
        },
    }


def _die(*_args, **_kwargs):
    raise Killed


def _kill_a_step(parent_id, settings, db, run_queued, monkeypatch, where: str) -> None:
    """Runs the first step and its trials, then a second step that dies at `where`."""
    first = SearchDriver(settings, db, NAME)
    first.run_pending()
    for child in children_of(db, parent_id):
        run_queued(child.id)
    if where == "after_ask":  # Optuna asked, no job committed
        monkeypatch.setattr(SearchDriver, "_submit_all", _die)
    monkeypatch.setattr(driver_module.saved, "save", _die)  # the jobs committed, no state file
    with pytest.raises(Killed):
        first.step(parent_id)
    monkeypatch.undo()


def _carry_on(parent_id, settings, db, run_queued, client, alice) -> dict:
    """A restarted dispatcher steps the search to its end, running the trials it submits."""
    restarted = SearchDriver(settings, db, NAME)
    for _ in range(100):
        restarted.run_pending()
        job = client.get(f"/api/v1/jobs/{parent_id}", headers=alice).get_json()
        if job["status"] not in ("queued", "running"):
            return job
        for child in children_of(db, parent_id):
            if child.status == "queued":
                run_queued(child.id)
    raise AssertionError(f"search {parent_id} did not end")


def _announced(db, parent_id: str) -> list[int]:
    with db.session() as session:
        query = select(JobEvent.data).where(JobEvent.job_id == parent_id, JobEvent.type == "trial")
        return [event["number"] for event in session.scalars(query)]


@pytest.mark.parametrize("where", ["after_ask", "after_commit"])
def test_a_search_whose_dispatcher_died_mid_step_runs_each_trial_number_once(
    client, alice, db, settings, run_queued, monkeypatch, where
):
    parent = client.post("/api/v1/jobs", json=_search(), headers=alice).get_json()
    _kill_a_step(parent["id"], settings, db, run_queued, monkeypatch, where)
    job = _carry_on(parent["id"], settings, db, run_queued, client, alice)
    assert job["status"] == "succeeded", job
    assert [c.trial_number for c in children_of(db, parent["id"])] == list(range(8))
    assert job["result"]["evaluations"] == 8
    assert sorted(t["number"] for t in job["result"]["trials"]) == list(range(8))
    assert sorted(_announced(db, parent["id"])) == list(range(8))  # each score heard once


def test_a_grid_search_evaluates_every_point_though_its_dispatcher_died_after_asking(
    client, alice, db, settings, run_queued, monkeypatch
):
    space = {"n_neighbors": {"type": "int", "low": 1, "high": 6}}
    parent = client.post("/api/v1/jobs", json=_search("grid", trials=6, space=space), headers=alice).get_json()
    _kill_a_step(parent["id"], settings, db, run_queued, monkeypatch, "after_ask")
    job = _carry_on(parent["id"], settings, db, run_queued, client, alice)
    assert job["status"] == "succeeded", job
    assert sorted(t["params"]["n_neighbors"] for t in job["result"]["trials"]) == [1, 2, 3, 4, 5, 6]
    assert [c.trial_number for c in children_of(db, parent["id"])] == list(range(6))


def test_a_trial_that_ended_while_no_dispatcher_ran_does_not_make_the_search_ask_one_more(
    client, alice, db, settings, run_queued, monkeypatch
):
    parent = client.post("/api/v1/jobs", json=_search(trials=4), headers=alice).get_json()
    _kill_a_step(parent["id"], settings, db, run_queued, monkeypatch, "after_commit")  # 2, 3 submitted
    run_queued(children_of(db, parent["id"])[2].id)  # the state file never heard of trial 2
    job = _carry_on(parent["id"], settings, db, run_queued, client, alice)
    assert [c.trial_number for c in children_of(db, parent["id"])] == [0, 1, 2, 3]
    assert job["result"]["evaluations"] == 4


def test_the_trials_asked_after_a_restart_draw_anew(client, alice, db, settings, run_queued, monkeypatch):
    # A float dimension: two draws that agree can only come from one seed used twice.
    space = {"C": {"type": "float", "low": 0.01, "high": 100.0, "log": True}}
    spec = {**_search(trials=6, space=space), "algorithm": "svm"}
    parent = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()
    first = SearchDriver(settings, db, NAME)
    first.run_pending()
    run_queued(children_of(db, parent["id"])[0].id)
    monkeypatch.setattr(SearchDriver, "_submit_all", _die)
    with pytest.raises(Killed):
        first.step(parent["id"])  # asks trial 2 for the free slot, dies before its job
    monkeypatch.undo()
    run_queued(children_of(db, parent["id"])[1].id)  # two free slots now: trial 2 again, and a new one
    job = _carry_on(parent["id"], settings, db, run_queued, client, alice)
    drawn = [t["params"]["C"] for t in job["result"]["trials"]]
    assert len(drawn) == 6 and len(set(drawn)) == 6, drawn


@pytest.mark.parametrize("where", ["after_ask", "after_commit"])
def test_a_metaheuristic_whose_dispatcher_died_mid_step_runs_its_budget_and_no_number_twice(
    client, alice, db, settings, run_queued, monkeypatch, where
):
    # Its optimiser asks afresh after a restart: a number asked by the dead step may go unused.
    parent = client.post("/api/v1/jobs", json=_search("ga", trials=8, population=4), headers=alice).get_json()
    _kill_a_step(parent["id"], settings, db, run_queued, monkeypatch, where)
    job = _carry_on(parent["id"], settings, db, run_queued, client, alice)
    numbers = [c.trial_number for c in children_of(db, parent["id"])]
    assert job["status"] == "succeeded" and job["result"]["evaluations"] == 8, job
    assert len(numbers) == 8 and len(set(numbers)) == 8, numbers


def test_a_trial_number_is_taken_once(client, alice, db, settings):
    parent = client.post("/api/v1/jobs", json=_search(), headers=alice).get_json()
    trial = {"dataset": "wine", "algorithm": "knn"}
    with pytest.raises(IntegrityError), db.session() as session:
        search = session.get(Job, parent["id"])
        ctx = SubmitContext(session, settings, session.get(User, search.owner_id))
        for _ in range(2):
            submission.submit(ctx, dict(trial), trial_of=search, trial_number=0)
        session.flush()
    assert children_of(db, parent["id"]) == []
