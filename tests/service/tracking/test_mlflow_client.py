"""MLflow's own client, at each pinned version, against a real labtrain API server: experiments,
runs with params, metrics and tags, log-batch at MLflow's limits and past them, searches (jobs
seen as runs), metric history, set_terminated; another user's run is a 404; a course's TA sees
the course's runs and jobs. The client runs in a subprocess (tests/service/tracking/
mlflow_client_script.py) with that version on its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from service.core.db import Database
from service.core.orm import Course, User
from service.jobs import lifecycle
from service.tracking.runs import job_run_id
from tests.conftest import free_port
from tests.support.processes import ServiceProcess, create_user_token, deployment_env, wait_until_healthy

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).with_name("mlflow_client_script.py")
# The pinned client versions: the venv's own (3.x) and the 2.x one `make install` puts apart.
MLFLOW_2 = ROOT / ".venv" / "mlflow-2"
CLIENTS = {"3.18.0": None, "2.22.5": MLFLOW_2}


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_pg_database, make_redis_url):
    home = tmp_path_factory.mktemp("mlflow")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    tokens = {
        name: create_user_token(env, name, admin=name == "root") for name in ("root", "alice", "bob", "prof", "tara")
    }
    port = free_port()
    process = ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, home / "api.log")
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, [process])
    _course(url, tokens)
    yield url, env, tokens
    process.stop()


def _course(url: str, tokens: dict[str, str]) -> None:
    """DL-2026: prof teaches it, tara assists, alice studies in it."""

    def call(method, path, token, body):
        answer = requests.request(
            method, url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert answer.status_code in (200, 201), answer.text

    call(
        "POST",
        "/api/v1/courses",
        tokens["root"],
        {"name": "DL-2026", "term_end": "2099-01-31", "instructors": ["prof"]},
    )
    call("PUT", "/api/v1/courses/DL-2026/members/tara", tokens["prof"], {"role": "ta"})
    call("PUT", "/api/v1/courses/DL-2026/members/alice", tokens["prof"], {"role": "student"})


def _jobs(env: dict[str, str]) -> list[str]:
    """Two of alice's jobs in DL-2026: a finished one with metrics, a queued one."""
    db = Database(env["LABTRAIN_DATABASE_URL"])
    try:
        with db.session() as session:
            alice = session.query(User).filter_by(name="alice").one()
            course = session.query(Course).filter_by(name="DL-2026").one()
            ids = []
            for name, status in (("lr-0.1", "succeeded"), ("lr-0.2", "queued")):
                job = lifecycle.create_job(
                    session,
                    alice,
                    family="code",
                    spec={"entry": "train.py", "params": {"lr": 0.1}},
                    queue="cpu",
                    name=name,
                )
                job.course_id, job.status = course.id, status
                if status == "succeeded":
                    job.metrics = {"accuracy": 0.93}
                ids.append(job.id)
            return ids
    finally:
        db.dispose()


def client(url: str, token: str, path: Path | None, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABTRAIN_"))}
    env.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_TOKEN=token, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    env.pop("PYTHONPATH", None)
    if path is not None:
        assert (path / "mlflow").is_dir(), f"{path} holds no mlflow client: run `make install`"
        env["PYTHONPATH"] = str(path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version", CLIENTS)
def test_the_mlflow_client_logs_searches_and_is_isolated(server, version):
    url, env, tokens = server
    job_ids = _jobs(env)
    seen = client(url, tokens["alice"], CLIENTS[version], "student", f"laptop-{version}")
    assert seen["version"] == version
    run_id = seen["run_id"]
    assert seen["params"] == {"lr": "0.01", "batch": "32", "optimizer": "adam"}
    assert seen["tags"] == {"team": "blue", "labtrain.kind": "run", "mlflow.runName": "lr-0.01"}
    assert seen["status"] == "FINISHED" and seen["killed"] == "KILLED"
    assert seen["param_count"] == 103 and seen["metric_count"] == 1001  # loss and m0..m999
    assert seen["history"] == [[0, 1.0], [1, 0.5], [2, 1 / 3]]
    assert seen["past_metrics"][0] == "INVALID_PARAMETER_VALUE" and "at most 1000 metrics" in seen["past_metrics"][1]
    assert seen["past_tags"][0] == "INVALID_PARAMETER_VALUE" and "at most 100 tags" in seen["past_tags"][1]
    assert seen["changed_param"][0] == "INVALID_PARAMETER_VALUE"
    assert seen["bad_filter"][0] == "INVALID_PARAMETER_VALUE"
    assert seen["found"] == [run_id]
    assert set(job_ids) <= set(seen["jobs"])
    assert seen["job_metrics"][job_ids[0]] == {"accuracy": 0.93}

    stranger = client(url, tokens["bob"], CLIENTS[version], "stranger", run_id)
    assert stranger["get"][0] == "RESOURCE_DOES_NOT_EXIST" and stranger["log"][0] == "RESOURCE_DOES_NOT_EXIST"
    assert stranger["seen"] == []

    ta = client(url, tokens["tara"], CLIENTS[version], "staff", run_id)
    assert ta["get"] == run_id and ta["log"][0] == "PERMISSION_DENIED"
    assert {run_id, *(job_run_id(job_id) for job_id in job_ids)} <= set(ta["seen"])
