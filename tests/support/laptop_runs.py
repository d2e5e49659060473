"""MLflow runs that are no job, logged as a student's laptop logs them (MLflow's own client
against a real labtrain API, tests/support/mlflow_server.py), in a course so that its TA sees
them, and a job of hers to put beside them.

    course(server)                      # DL-2026: tara assists, alice studies
    runs = log_runs(server, "alice")    # {"lr-0.01": run id, "lr-0.1": run id}
    job = finished_job(server, "alice") # a job with a step curve of its own
"""

from __future__ import annotations

import json

import requests

from service.core.db import Database
from service.core.orm import Course, User
from service.jobs import lifecycle
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import create_user_token

RATES = (0.01, 0.1)
STEPS = 5
EXPERIMENT = "lr-sweep"
LOG_RUNS = f"""
import json
import mlflow

mlflow.set_experiment({EXPERIMENT!r})
ids = {{}}
for lr in {RATES!r}:
    with mlflow.start_run(run_name=f"lr-{{lr}}") as run:
        mlflow.log_params({{"lr": lr, "optimizer": "adam"}})
        for step in range({STEPS}):
            mlflow.log_metric("loss", round(1.0 / (1 + step * lr * 10), 6), step=step)
        mlflow.log_metric("accuracy", 0.5 + lr, step={STEPS - 1})
        ids[f"lr-{{lr}}"] = run.info.run_id
print(json.dumps(ids))
"""


def loss(lr: float, step: int) -> float:
    return round(1.0 / (1 + step * lr * 10), 6)


def course(server: MlflowServer, ta: str = "tara", student: str = "alice") -> None:
    """DL-2026, made by an admin: `ta` assists, `student` studies in it (her only course)."""
    headers = {"Authorization": f"Bearer {create_user_token(server.env, 'root', admin=True)}"}
    steps = [
        ("POST", "/api/v1/courses", {"name": "DL-2026", "term_end": "2099-01-31"}),
        ("PUT", f"/api/v1/courses/DL-2026/members/{ta}", {"role": "ta"}),
        ("PUT", f"/api/v1/courses/DL-2026/members/{student}", {"role": "student"}),
    ]
    for method, path, body in steps:
        answer = requests.request(method, server.url + path, json=body, headers=headers, timeout=30)
        assert answer.status_code in (200, 201), answer.text


def log_runs(server: MlflowServer, user: str) -> dict[str, str]:
    """Two runs in experiment lr-sweep, lr 0.01 and 0.1, each a loss curve over five steps and a
    final accuracy: their ids by run name."""
    done = server.run_client(user, LOG_RUNS)
    assert done.returncode == 0, done.stderr[-5000:] + server.log()[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def finished_job(server: MlflowServer, user: str) -> str:
    """A finished code job of `user`'s with an accuracy and a loss it logged by step (what the
    code trainer writes for a job's MLflow logging)."""
    db = Database(server.env["LABTRAIN_DATABASE_URL"])
    try:
        with db.session() as session:
            owner = session.query(User).filter_by(name=user).one()
            job = lifecycle.create_job(
                session,
                owner,
                family="code",
                spec={"entry": "train.py", "params": {"lr": 0.05}},
                queue="cpu",
                name="job-lr-0.05",
            )
            job.course_id = session.query(Course.id).filter_by(name="DL-2026").scalar()
            job.status, job.metrics = "succeeded", {"accuracy": 0.55}
            for step in range(STEPS):
                lifecycle.add_event(
                    session, job.id, "metrics", {"step": step, "source": "mlflow", "loss": loss(0.05, step)}
                )
            return job.id
    finally:
        db.dispose()
