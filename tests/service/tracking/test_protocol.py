"""MLflow's tracking REST API through the Flask app: experiments, runs, params, tags, metrics,
log-batch's limits, searches, jobs seen as runs, who sees what, MLflow's error shape."""

from __future__ import annotations

import dataclasses

import pytest

from service.core.orm import Job, JobEvent, User
from service.jobs import lifecycle
from service.tracking.runs import job_run_id

API = "/api/2.0/mlflow"


def call(client, headers, method, endpoint, body=None, query=None):
    response = client.open(f"{API}/{endpoint}", method=method, headers=headers, json=body, query_string=query)
    return response.status_code, response.get_json()


def ok(client, headers, method, endpoint, body=None, query=None):
    status, answer = call(client, headers, method, endpoint, body, query)
    assert status == 200, answer
    return answer


def mlflow_error(client, headers, method, endpoint, body=None, query=None, status=400, code="INVALID_PARAMETER_VALUE"):
    got, answer = call(client, headers, method, endpoint, body, query)
    assert (got, answer.get("error_code")) == (status, code), answer
    assert set(answer) == {"error_code", "message"} and answer["message"]
    return answer["message"]


def new_run(client, headers, experiment_id="0", **fields):
    body = {"experiment_id": experiment_id, "start_time": 1000, **fields}
    return ok(client, headers, "POST", "runs/create", body)["run"]


def make_job(db, owner_name, name="lr-0.1", spec=None, status="running", parent_id=None):
    with db.session() as session:
        owner = session.query(User).filter_by(name=owner_name).one()
        job = lifecycle.create_job(
            session,
            owner,
            family="code",
            spec=spec or {"params": {"lr": 0.1}, "entry": "train.py"},
            queue="cpu",
            name=name,
        )
        job.status = status
        job.parent_id = parent_id
        return job.id


def test_experiments_runs_params_tags_metrics(client, alice):
    experiment_id = ok(client, alice, "POST", "experiments/create", {"name": "mnist"})["experiment_id"]
    got = ok(client, alice, "GET", "experiments/get-by-name", query={"experiment_name": "mnist"})["experiment"]
    assert got["experiment_id"] == experiment_id and got["lifecycle_stage"] == "active"
    mlflow_error(client, alice, "POST", "experiments/create", {"name": "mnist"}, code="RESOURCE_ALREADY_EXISTS")
    run = new_run(client, alice, experiment_id, run_name="first", tags=[{"key": "team", "value": "a"}])
    run_id = run["info"]["run_id"]
    assert len(run_id) == 32 and run["info"]["run_name"] == "first"
    ok(client, alice, "POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})
    ok(client, alice, "POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})  # the same: fine
    message = mlflow_error(client, alice, "POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.2"})
    assert "Changing param values is not allowed" in message
    for step, loss in enumerate([0.9, 0.5, 0.3]):
        ok(
            client,
            alice,
            "POST",
            "runs/log-metric",
            {"run_id": run_id, "key": "loss", "value": loss, "timestamp": 5, "step": step},
        )
    ok(client, alice, "POST", "runs/set-tag", {"run_id": run_id, "key": "note", "value": "hi"})
    data = ok(client, alice, "GET", "runs/get", query={"run_id": run_id})["run"]["data"]
    assert {"key": "lr", "value": "0.1"} in data["params"]
    assert [m["value"] for m in data["metrics"] if m["key"] == "loss"] == [0.3]
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert (
        tags["note"] == "hi"
        and tags["team"] == "a"
        and tags["labtrain.kind"] == "run"
        and tags["mlflow.runName"] == "first"
    )
    history = ok(client, alice, "GET", "metrics/get-history", query={"run_id": run_id, "metric_key": "loss"})["metrics"]
    assert [(m["step"], m["value"]) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    info = ok(client, alice, "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 9000})[
        "run_info"
    ]
    assert info["status"] == "FINISHED" and info["end_time"] == 9000
    found = ok(client, alice, "POST", "runs/search", {"experiment_ids": [experiment_id], "filter": "params.lr = '0.1'"})
    assert [r["info"]["run_id"] for r in found["runs"]] == [run_id]
    assert (
        ok(client, alice, "POST", "runs/search", {"experiment_ids": [experiment_id], "filter": "metrics.loss > 0.5"})
        == {}
    )
    mlflow_error(client, alice, "POST", "runs/search", {"experiment_ids": [experiment_id], "filter": "nonsense ~~ 1"})
    ok(client, alice, "POST", "runs/delete", {"run_id": run_id})
    assert ok(client, alice, "POST", "runs/search", {"experiment_ids": [experiment_id]}) == {}
    deleted = ok(
        client, alice, "POST", "runs/search", {"experiment_ids": [experiment_id], "run_view_type": "DELETED_ONLY"}
    )
    assert [r["info"]["run_id"] for r in deleted["runs"]] == [run_id]


def test_log_batch_limits_are_mlflows(client, alice):
    run_id = new_run(client, alice)["info"]["run_id"]
    metrics = [{"key": f"m{i}", "value": i, "timestamp": 1, "step": 0} for i in range(1000)]
    ok(client, alice, "POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    message = mlflow_error(
        client, alice, "POST", "runs/log-batch", {"run_id": run_id, "metrics": [*metrics, metrics[0]]}
    )
    assert "at most 1000 metrics" in message
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    assert "at most 100 params" in mlflow_error(
        client, alice, "POST", "runs/log-batch", {"run_id": run_id, "params": params}
    )
    ok(client, alice, "POST", "runs/log-batch", {"run_id": run_id, "params": params[:100]})
    tags = [{"key": f"t{i}", "value": "v"} for i in range(100)]
    mixed = {"run_id": run_id, "metrics": metrics[:801], "tags": tags, "params": params[:100]}
    assert "at most 1000 metrics, params, and tags" in mlflow_error(client, alice, "POST", "runs/log-batch", mixed)
    long_key = {"run_id": run_id, "tags": [{"key": "k" * 251, "value": "v"}]}
    mlflow_error(client, alice, "POST", "runs/log-batch", long_key)
    # nothing of a refused batch was written
    data = ok(client, alice, "GET", "runs/get", query={"run_id": run_id})["run"]["data"]
    assert (
        len(data["metrics"]) == 1000
        and len(data["params"]) == 100
        and "tags" not in data
        or all(not t["key"].startswith("t") for t in data.get("tags", []))
    )


def test_points_past_the_cap_are_resource_limit_exceeded(app, client, alice, settings):
    app.extensions["labtrain"].settings = dataclasses.replace(settings, tracking_max_points=5)
    run_id = new_run(client, alice)["info"]["run_id"]
    metrics = [{"key": "loss", "value": 1.0, "timestamp": 1, "step": step} for step in range(5)]
    ok(client, alice, "POST", "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    body = {"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": 1, "step": 9}
    mlflow_error(client, alice, "POST", "runs/log-metric", body, code="RESOURCE_LIMIT_EXCEEDED")


def test_another_users_run_and_experiment_look_missing(client, alice, bob):
    experiment_id = ok(client, alice, "POST", "experiments/create", {"name": "private"})["experiment_id"]
    run_id = new_run(client, alice, experiment_id)["info"]["run_id"]
    mlflow_error(client, bob, "GET", "runs/get", query={"run_id": run_id}, status=404, code="RESOURCE_DOES_NOT_EXIST")
    mlflow_error(
        client,
        bob,
        "POST",
        "runs/set-tag",
        {"run_id": run_id, "key": "a", "value": "b"},
        status=404,
        code="RESOURCE_DOES_NOT_EXIST",
    )
    mlflow_error(
        client,
        bob,
        "GET",
        "experiments/get",
        query={"experiment_id": experiment_id},
        status=404,
        code="RESOURCE_DOES_NOT_EXIST",
    )
    assert ok(client, bob, "POST", "runs/search", {"experiment_ids": [experiment_id]}) == {}
    names = {e["name"] for e in ok(client, bob, "POST", "experiments/search", {})["experiments"]}
    assert names == {"Default", "labtrain-jobs"}
    # bob's experiment of the same name is his own
    assert ok(client, bob, "POST", "experiments/create", {"name": "private"})["experiment_id"] != experiment_id


def test_jobs_are_runs(client, db, alice, bob):
    search_id = make_job(db, "alice", name="sweep", spec={"search": {"trials": 2}})
    trial_id = make_job(db, "alice", name="trial-1", parent_id=search_id, status="succeeded")
    with db.session() as session:
        session.get(Job, trial_id).metrics = {"accuracy": 0.9, "notes": "x"}
    found = ok(
        client, alice, "POST", "runs/search", {"experiment_ids": ["1"], "filter": "tags.`labtrain.kind` = 'job'"}
    )
    runs = {r["info"]["run_id"]: r for r in found["runs"]}
    assert set(runs) == {job_run_id(search_id), job_run_id(trial_id)}
    trial = runs[job_run_id(trial_id)]
    assert trial["info"]["status"] == "FINISHED" and trial["info"]["run_name"] == "trial-1"
    tags = {t["key"]: t["value"] for t in trial["data"]["tags"]}
    assert tags["mlflow.parentRunId"] == job_run_id(search_id) and tags["labtrain.job"] == trial_id
    assert {"key": "params.lr", "value": "0.1"} in trial["data"]["params"]
    assert [(m["key"], m["value"]) for m in trial["data"]["metrics"]] == [("accuracy", 0.9)]
    assert runs[job_run_id(search_id)]["info"]["status"] == "RUNNING"
    assert ok(client, bob, "POST", "runs/search", {"experiment_ids": ["1"]}) == {}
    mlflow_error(
        client,
        bob,
        "GET",
        "runs/get",
        query={"run_id": job_run_id(trial_id)},
        status=404,
        code="RESOURCE_DOES_NOT_EXIST",
    )


def test_metrics_logged_to_a_job_are_its_metrics_events(client, db, alice):
    job_id = make_job(db, "alice")
    run_id = job_run_id(job_id)
    batch = [
        {"key": "loss", "value": 0.9, "timestamp": 1, "step": 0},
        {"key": "acc", "value": 0.5, "timestamp": 1, "step": 0},
        {"key": "loss", "value": 0.4, "timestamp": 2, "step": 1},
        {"key": "loss", "value": "NaN", "timestamp": 2, "step": 2},
    ]
    ok(client, alice, "POST", "runs/log-batch", {"run_id": run_id, "metrics": batch})
    # a resumed attempt repeating a step: its point is dropped
    ok(
        client,
        alice,
        "POST",
        "runs/log-metric",
        {"run_id": run_id, "key": "loss", "value": 7.0, "timestamp": 3, "step": 1},
    )
    with db.session() as session:
        events = [
            e.data for e in session.query(JobEvent).filter_by(job_id=job_id, type="metrics").order_by(JobEvent.seq)
        ]
        metrics = session.get(Job, job_id).metrics
    assert events == [
        {"step": 0, "source": "mlflow", "loss": 0.9, "acc": 0.5},
        {"step": 1, "source": "mlflow", "loss": 0.4},
    ]
    assert metrics == {"loss": 0.4, "acc": 0.5}
    history = ok(client, alice, "GET", "metrics/get-history", query={"run_id": run_id, "metric_key": "loss"})["metrics"]
    assert [(m["step"], m["value"]) for m in history] == [(0, 0.9), (1, 0.4)]
    mlflow_error(client, alice, "POST", "runs/log-parameter", {"run_id": run_id, "key": "params.lr", "value": "0.5"})
    ok(client, alice, "POST", "runs/log-parameter", {"run_id": run_id, "key": "batch", "value": "32"})
    params = ok(client, alice, "GET", "runs/get", query={"run_id": run_id})["run"]["data"]["params"]
    assert {"key": "batch", "value": "32"} in params


@pytest.mark.parametrize(
    ("method", "endpoint", "status", "code"),
    [
        ("POST", "runs/log-model", 501, "NOT_IMPLEMENTED"),
        ("POST", "registered-models/create", 501, "NOT_IMPLEMENTED"),
        ("GET", "no/such/thing", 404, "ENDPOINT_NOT_FOUND"),
    ],
)
def test_unserved_endpoints_answer_in_mlflows_shape(client, alice, method, endpoint, status, code):
    mlflow_error(client, alice, method, endpoint, {}, status=status, code=code)


def test_auth_and_body_errors_are_in_mlflows_shape(client, alice):
    mlflow_error(client, {}, "GET", "experiments/search", status=401, code="UNAUTHENTICATED")
    response = client.post(f"{API}/runs/create", headers=alice, data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error_code"] == "INVALID_PARAMETER_VALUE"
    mlflow_error(client, alice, "POST", "runs/create", {"experiment_id": ["x"]})
    mlflow_error(
        client, alice, "GET", "runs/get", query={"run_id": "x" * 3}, status=404, code="RESOURCE_DOES_NOT_EXIST"
    )


@pytest.mark.fast
def test_a_nan_metric_is_kept_as_nan_on_every_database(client, alice):
    """MLflow's client logs a diverged loss as NaN; SQLite cannot store NaN (it becomes NULL)."""
    run_id = new_run(client, alice)["info"]["run_id"]
    for step, value in enumerate([0.5, "NaN", 0.25]):  # as the client's protobuf JSON writes NaN
        ok(
            client,
            alice,
            "POST",
            "runs/log-metric",
            {"run_id": run_id, "key": "loss", "value": value, "timestamp": 5, "step": step},
        )
    history = ok(client, alice, "GET", "metrics/get-history", query={"run_id": run_id, "metric_key": "loss"})
    values = [m["value"] for m in history["metrics"]]
    assert values[0] == 0.5 and values[2] == 0.25
    assert str(values[1]).lower() == "nan"
