"""A code job's own MLflow endpoint (service/tracking/job_endpoint.py), as a WSGI app in process:
the job writes its own run, and what it logged reaches on_metrics; its status stays labtrain's;
set_experiment moves its run; another job's run is missing; bad requests are MLflow's 4xx.
(tests/workers/trainers/test_code_mlflow.py runs it behind the socket, from the sandbox.)"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from service.core.orm import JobEvent, User
from service.jobs import lifecycle
from service.tracking.job_endpoint import job_app, logged_values
from service.tracking.runs import job_run_id

API = "/api/2.0/mlflow/"


@pytest.fixture
def jobs(db, make_user):
    """Two running code jobs: alice's, and bob's."""
    make_user("alice")
    make_user("bob")
    found = []
    with db.session() as session:
        for name in ("alice", "bob"):
            owner = session.scalar(select(User).where(User.name == name))
            job = lifecycle.create_job(session, owner, family="code", spec={}, queue="cpu", name=f"{name}-job")
            found.append(job.id)
    for job_id in found:
        with db.session() as session:
            lifecycle.claim(session, job_id, "w")
    return found


def endpoint(db, settings, job_id):
    folded: list[dict[str, float]] = []
    return Client(job_app(db, settings, job_id, folded.append)), folded


def test_the_job_logs_its_own_run_and_its_values_are_folded(db, settings, jobs):
    client, folded = endpoint(db, settings, jobs[0])
    run_id = job_run_id(jobs[0])
    batch = {
        "run_id": run_id,
        "metrics": [
            {"key": "loss", "value": 0.9, "timestamp": 1, "step": 1},
            {"key": "loss", "value": 0.5, "timestamp": 2, "step": 2},
            {"key": "acc", "value": 0.7, "timestamp": 2, "step": 2},
        ],
        "params": [{"key": "lr", "value": "0.1"}],
    }
    assert client.post(API + "runs/log-batch", json=batch).status_code == 200
    assert folded == [{"loss": 0.5, "acc": 0.7}]
    ended = client.post(API + "runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": 5})
    assert ended.status_code == 200 and ended.json["run_info"]["status"] == "RUNNING"
    got = client.get(API + "runs/get", query_string={"run_id": run_id}).json["run"]
    assert {"key": "lr", "value": "0.1"} in got["data"]["params"]
    with db.session() as session:
        steps = [e.data["step"] for e in session.scalars(select(JobEvent).where(JobEvent.type == "metrics"))]
    assert sorted(steps) == [1, 2]


def test_set_experiment_moves_the_jobs_run(db, settings, jobs):
    client, _ = endpoint(db, settings, jobs[0])
    assert client.get(API + "experiments/get-by-name", query_string={"experiment_name": "week3"}).status_code == 404
    created = client.post(API + "experiments/create", json={"name": "week3"})
    assert created.status_code == 200
    run = client.get(API + "runs/get", query_string={"run_id": job_run_id(jobs[0])}).json["run"]
    assert run["info"]["experiment_id"] == created.json["experiment_id"]


def test_another_jobs_run_is_missing_and_untouched(db, settings, jobs):
    client, folded = endpoint(db, settings, jobs[0])
    other = job_run_id(jobs[1])
    wrote = client.post(
        API + "runs/log-metric", json={"run_id": other, "key": "x", "value": 1, "timestamp": 1, "step": 1}
    )
    assert wrote.status_code == 404 and wrote.json["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert client.get(API + "runs/get", query_string={"run_id": other}).status_code == 404
    assert folded == []
    with db.session() as session:
        assert (
            session.scalars(select(JobEvent).where(JobEvent.job_id == jobs[1], JobEvent.type == "metrics")).all() == []
        )


def test_bad_requests_are_mlflows_4xx(db, settings, jobs):
    client, _ = endpoint(db, settings, jobs[0])
    bad = client.post(API + "runs/log-metric", data=b"{not json", content_type="application/json")
    assert bad.status_code == 400 and bad.json["error_code"] == "INVALID_PARAMETER_VALUE"
    listed = client.post(API + "runs/log-batch", json=[1, 2])
    assert listed.status_code == 400 and "JSON object" in listed.json["message"]
    elsewhere = client.get("/api/v1/jobs")
    assert elsewhere.status_code == 404 and elsewhere.json["error_code"] == "ENDPOINT_NOT_FOUND"
    huge = client.post(API + "runs/log-batch", data=b"{" + b" " * (17 * 1024 * 1024) + b"}")
    assert huge.status_code == 413 and huge.json["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.fast
def test_logged_values_are_the_latest_finite_per_key():
    body = {
        "metrics": [
            {"key": "loss", "value": 0.3, "step": 3},
            {"key": "loss", "value": 0.9, "step": 1},
            {"key": "acc", "value": "NaN", "step": 1},
            {"key": "acc", "value": True, "step": 2},
            {"key": 5, "value": 1.0},
            "junk",
        ]
    }
    assert logged_values("runs/log-batch", body) == {"loss": 0.3}
    assert logged_values("runs/log-metric", {"key": "f1", "value": 0.5}) == {"f1": 0.5}
    assert logged_values("runs/log-batch", {"metrics": "no"}) == {}
