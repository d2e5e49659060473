"""GET /api/v1/compare against PostgreSQL: a network search's three trials, run in this process,
compared by ids and by the search (parameters that differ where the space varies, curves from
epoch events and from `metrics` events, the CSV), who may compare what, and bad queries (those
in the fast tier too: they need no trainer)."""

from __future__ import annotations

import csv
import io
import math

import pytest
from sqlalchemy import select

from service.compare import gather
from service.core.orm import Job, new_id
from service.jobs import lifecycle
from service.tracking import protocol
from service.tracking.principal import JobPrincipal
from service.tracking.runs import job_run_id
from tests.service.search.test_search import drive  # noqa: F401 (the fixture that runs a search here)
from tests.support.api import IRIS_KNN, assert_error

RATES = [0.001, 0.01, 0.1]
NETWORK_SEARCH = {
    "name": "iris-mlp",
    "dataset": "iris",
    "framework": "pytorch",
    "network": {
        "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 3, "activation": "softmax"},
        ]
    },
    "training": {"epochs": 3, "batch_size": 16},
    "search": {
        "strategy": "grid",
        "trials": 3,
        "parallel": 3,
        "space": {"learning_rate": {"type": "categorical", "choices": RATES}},
    },
}


@pytest.fixture
def search(client, alice, drive):  # noqa: F811
    submitted = client.post("/api/v1/jobs", json=NETWORK_SEARCH, headers=alice)
    assert submitted.status_code == 201, submitted.get_json()
    drive(submitted.get_json()["id"])
    job = client.get(f"/api/v1/jobs/{submitted.get_json()['id']}", headers=alice).get_json()
    assert job["status"] == "succeeded", job
    return job


def trial_ids(db, search_id: str) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Job.id).where(Job.parent_id == search_id).order_by(Job.trial_number)))


def test_a_searchs_three_trials_side_by_side(client, alice, db, search):
    answer = client.get(f"/api/v1/compare?search={search['id']}", headers=alice)
    assert answer.status_code == 200, answer.get_json()
    comparison = answer.get_json()
    items = comparison["items"]
    assert [i["id"] for i in items] == trial_ids(db, search["id"]) and comparison["omitted"] == 0
    assert [i["trial_number"] for i in items] == [0, 1, 2]
    assert {i["parent_id"] for i in items} == {search["id"]} and {i["kind"] for i in items} == {"job"}
    assert [i["label"] for i in items] == [f"iris-mlp · trial {n}" for n in range(3)]
    # Each trial's own parameters: the learning rate its trial was given, the rest the search's spec.
    assert sorted(i["params"]["training.learning_rate"] for i in items) == RATES
    assert {i["params"]["framework"] for i in items} == {"pytorch"}
    assert {i["params"]["network.layers.0.units"] for i in items} == {8}
    assert "training.learning_rate" in comparison["differ"]["params"]
    assert not {"framework", "dataset", "training.epochs", "network.layers.0.units"} & set(
        comparison["differ"]["params"]
    )
    assert {"dataset", "task"} <= set(comparison["params"]) and "name" not in comparison["params"]
    for trial in items:
        assert trial["metrics"]["accuracy"] == pytest.approx(
            client.get(f"/api/v1/jobs/{trial['id']}", headers=alice).get_json()["metrics"]["accuracy"]
        )
        loss = trial["series"]["loss"]
        assert loss["x"] == "epoch" and [x for x, _ in loss["points"]] == [1, 2, 3]
        assert all(math.isfinite(y) for _, y in loss["points"])
        assert "epochs" not in trial["series"] and "epoch_time" not in trial["series"]
    assert {"accuracy", "loss"} <= set(comparison["metrics"])

    # The same trials by ids: in the order given.
    ids = trial_ids(db, search["id"])[::-1]
    by_ids = client.get(f"/api/v1/compare?ids={','.join(ids)}", headers=alice).get_json()
    assert [i["id"] for i in by_ids["items"]] == ids
    assert by_ids["differ"] == comparison["differ"]


def test_the_csv_has_a_row_per_trial_with_its_parameters_and_metrics(client, alice, db, search):
    answer = client.get(f"/api/v1/compare?search={search['id']}&format=csv", headers=alice)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == f'attachment; filename="search-{search["id"]}-trials.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    header = list(rows[0])
    assert header[:3] == ["id", "name", "status"]
    assert header.index("training.learning_rate") < header.index("accuracy") < header.index("loss")
    assert [row["id"] for row in rows] == trial_ids(db, search["id"])
    assert sorted(float(row["training.learning_rate"]) for row in rows) == RATES
    assert {row["status"] for row in rows} == {"succeeded"} and [row["name"] for row in rows] == [
        f"iris-mlp · trial {n}" for n in range(3)
    ]
    assert all(0 <= float(row["accuracy"]) <= 1 for row in rows)

    # Accept: text/csv asks for the same.
    ids = ",".join(trial_ids(db, search["id"]))
    accepted = client.get(f"/api/v1/compare?ids={ids}", headers={**alice, "Accept": "text/csv"})
    assert accepted.mimetype == "text/csv" and accepted.headers["Content-Disposition"].endswith('"compare.csv"')
    assert len(accepted.get_data(as_text=True).splitlines()) == 4


def test_what_a_job_logged_by_step_is_a_curve_of_its_own(client, alice, db, search):
    trial = trial_ids(db, search["id"])[0]
    with db.session() as session:  # what the code trainer writes for a job's MLflow or TensorBoard logging
        for step, value in ((0, 1.5), (1, 1.0), (1, 9.0), (2, 0.5)):
            lifecycle.add_event(session, trial, "metrics", {"step": step, "source": "mlflow", "train_loss": value})
        lifecycle.add_event(session, trial, "metrics", {"step": 3, "source": "tensorboard", "bad": "text"})
    items = client.get(f"/api/v1/compare?search={search['id']}", headers=alice).get_json()["items"]
    logged = items[0]["series"]["train_loss"]
    assert logged == {"x": "step", "points": [[0, 1.5], [1, 1.0], [2, 0.5]]}  # the repeat of step 1 dropped
    assert "bad" not in items[0]["series"] and "train_loss" not in items[1]["series"]


@pytest.mark.fast
def test_params_a_job_logged_to_its_mlflow_run_are_compared_too(client, alice, db, settings, run_queued):
    first, second = (client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"] for _ in range(2))
    with db.session() as session:  # what each job's script sent through its own endpoint: mlflow.log_param
        for job_id, rate in ((first, "0.01"), (second, "0.1")):
            owner = session.get(Job, job_id).owner_id
            body = {"run_id": job_run_id(job_id), "key": "lr", "value": rate}
            assert (
                protocol.handle(session, settings, JobPrincipal(job_id, owner), "POST", "runs/log-parameter", {}, body)[
                    0
                ]
                == 200
            )
    answer = client.get(f"/api/v1/compare?ids={first},{second}", headers=alice).get_json()
    assert [item["params"]["lr"] for item in answer["items"]] == [0.01, 0.1]
    assert answer["differ"]["params"] == ["lr"]


@pytest.mark.fast
def test_another_users_job_is_the_404_an_unknown_id_gets(client, alice, bob, make_user, run_queued):
    own = client.post("/api/v1/jobs", json=IRIS_KNN, headers=bob).get_json()["id"]
    alices = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    unknown = new_id()
    foreign = client.get(f"/api/v1/compare?ids={own},{alices}", headers=bob)
    error = assert_error(foreign, 404, field="id", code="not_found")
    assert alices in error["message"]
    missing = assert_error(client.get(f"/api/v1/compare?ids={own},{unknown}", headers=bob), 404, field="id")
    assert missing["message"] == error["message"].replace(alices, unknown)
    assert_error(client.get(f"/api/v1/compare?search={alices}", headers=bob), 404, field="id")
    # An admin compares anyone's; a queued job has no curves yet.
    admin = make_user("root", admin=True)
    both = client.get(f"/api/v1/compare?ids={own},{alices}", headers=admin).get_json()
    assert [(i["owner"], i["status"], i["series"]) for i in both["items"]] == [
        ("bob", "queued", {}),
        ("alice", "queued", {}),
    ]
    assert both["differ"]["params"] == [] and both["differ"]["metrics"] == []


@pytest.mark.fast
@pytest.mark.parametrize(
    "query,field",
    [
        ("", "ids"),
        ("ids=", "ids"),
        ("ids={a}", "ids"),
        ("ids=" + ",".join(["{a}"] * 51), "ids"),
        ("ids={a},{a}&search={a}", "ids"),
        ("ids={a},{a}&format=xml", "format"),
        ("search={a}", "search"),  # a job that is no search has no trials
    ],
)
def test_bad_queries_are_4xx_naming_the_field(client, alice, query, field):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    answer = client.get(f"/api/v1/compare?{query.replace('{a}', job)}", headers=alice)
    assert_error(answer, 422, field=field)


@pytest.mark.fast
def test_odd_ids_are_plain_404s(client, alice):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    for odd in ("a\x00b", "x" * 65, "été .."):
        assert_error(client.get("/api/v1/compare", query_string={"ids": f"{job},{odd}"}, headers=alice), 404, "id")
        assert_error(client.get("/api/v1/compare", query_string={"search": odd}, headers=alice), 404, "id")


@pytest.mark.fast
def test_a_repeated_id_is_one_column(client, alice):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    answer = client.get(f"/api/v1/compare?ids={job},{job}", headers=alice).get_json()
    assert [i["id"] for i in answer["items"]] == [job]


@pytest.mark.fast
def test_a_job_with_very_many_events_is_read_from_a_sample(client, alice, db, monkeypatch):
    monkeypatch.setattr(gather, "MAX_EVENTS", 5)
    busy, quiet = (client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"] for _ in range(2))
    with db.session() as session:
        for step in range(20):
            lifecycle.add_event(session, busy, "metrics", {"step": step, "source": "mlflow", "loss": 1 / (step + 1)})
        for step in range(3):
            lifecycle.add_event(session, quiet, "metrics", {"step": step, "source": "mlflow", "loss": 1.0})
    items = client.get(f"/api/v1/compare?ids={busy},{quiet}", headers=alice).get_json()["items"]
    sampled = items[0]["series"]["loss"]["points"]
    assert items[0]["downsampled"] is True and 1 < len(sampled) <= 5
    assert [x for x, _ in sampled] == sorted(x for x, _ in sampled) and sampled[-1][0] >= 15
    assert items[1]["downsampled"] is False and len(items[1]["series"]["loss"]["points"]) == 3
