"""Run by tests/service/tracking/test_mlflow_client.py in a subprocess, with MLflow's client of
one pinned version on the path, MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN set: does what a
student's laptop (or a TA's) does and prints what it saw as one JSON object."""

from __future__ import annotations

import json
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException


def refused(call) -> list[str] | None:
    try:
        call()
    except MlflowException as exc:
        return [exc.error_code, exc.message]
    return None


def student(out: dict, experiment_name: str) -> None:
    experiment = mlflow.set_experiment(experiment_name)
    out["experiment_id"] = experiment.experiment_id
    with mlflow.start_run(run_name="lr-0.01") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"batch": 32, "optimizer": "adam"})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.set_tag("team", "blue")
    run_id = run.info.run_id
    out["run_id"] = run_id
    client = MlflowClient()
    store = client._tracking_client.store  # one request as sent, where MlflowClient.log_batch splits
    store.log_batch(run_id, metrics=[Metric(f"m{i}", float(i), 1, 0) for i in range(1000)], params=[], tags=[])
    store.log_batch(run_id, metrics=[], params=[Param(f"p{i}", "v") for i in range(100)], tags=[])
    out["past_metrics"] = refused(
        lambda: store.log_batch(run_id, metrics=[Metric(f"x{i}", 1.0, 1, 0) for i in range(1001)], params=[], tags=[])
    )
    out["past_tags"] = refused(
        lambda: store.log_batch(run_id, metrics=[], params=[], tags=[RunTag(f"t{i}", "v") for i in range(101)])
    )
    out["changed_param"] = refused(lambda: client.log_param(run_id, "lr", 0.5))
    got = client.get_run(run_id)
    out["status"] = got.info.status
    out["params"] = {k: got.data.params[k] for k in ("lr", "batch", "optimizer")}
    out["param_count"] = len(got.data.params)
    out["metric_count"] = len(got.data.metrics)
    out["tags"] = {k: v for k, v in got.data.tags.items() if k in ("team", "labtrain.kind", "mlflow.runName")}
    out["history"] = [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")]
    other = client.create_run(experiment.experiment_id, run_name="killed")
    client.set_terminated(other.info.run_id, "KILLED")
    out["killed"] = client.get_run(other.info.run_id).info.status
    found = mlflow.search_runs(
        experiment_names=[experiment_name], filter_string="params.lr = '0.01'", output_format="list"
    )
    out["found"] = [r.info.run_id for r in found]
    jobs = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`labtrain.kind` = 'job'", output_format="list"
    )
    out["jobs"] = sorted(r.data.tags["labtrain.job"] for r in jobs)
    out["job_metrics"] = {r.data.tags["labtrain.job"]: r.data.metrics for r in jobs}
    out["bad_filter"] = refused(lambda: mlflow.search_runs(experiment_names=[experiment_name], filter_string="x ~ 1"))


def stranger(out: dict, run_id: str) -> None:
    client = MlflowClient()
    out["get"] = refused(lambda: client.get_run(run_id))
    out["log"] = refused(lambda: client.log_metric(run_id, "loss", 0.0))
    out["seen"] = sorted(r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list"))


def staff(out: dict, run_id: str) -> None:
    client = MlflowClient()
    out["get"] = client.get_run(run_id).info.run_id
    out["log"] = refused(lambda: client.set_tag(run_id, "grade", "A"))
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    out["seen"] = sorted(r.info.run_id for r in runs)


if __name__ == "__main__":
    result: dict = {"version": mlflow.__version__}
    role, *args = sys.argv[1:]
    {"student": student, "stranger": stranger, "staff": staff}[role](result, *args)
    print(json.dumps(result))
