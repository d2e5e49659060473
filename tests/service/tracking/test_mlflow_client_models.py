"""MLflow 3's client logging models from a laptop into a real labtrain: `mlflow.sklearn.log_model`
in a run and outside one, found again with `search_logged_models` and `get_logged_model`, loaded
back by `models:/` and `runs:/` URIs; the files count against the owner's storage quota; another
user's model is a 404 and its files out of reach. (The 2.x client has no logged models.)"""

from __future__ import annotations

import json
import textwrap

import pytest
import requests

from tests.support.mlflow_server import MlflowServer, mlflow_server

LOG = """
import json, mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

x, y = load_iris(return_X_y=True)
model = LogisticRegression(C=0.5, max_iter=300).fit(x, y)
experiment = mlflow.set_experiment("iris")
with mlflow.start_run() as run:
    mlflow.log_param("C", 0.5)
    mlflow.log_metric("accuracy", model.score(x, y))
    logged = mlflow.sklearn.log_model(model, name="iris-model")
lone = mlflow.sklearn.log_model(model, name="lone")  # outside any run
out = {"experiment_id": experiment.experiment_id, "run_id": run.info.run_id, "model_id": logged.model_id,
       "lone": lone.model_id}
found = mlflow.search_logged_models(output_format="list")
out["found"] = sorted(m.model_id for m in found)
out["by_name"] = [m.model_id for m in mlflow.search_logged_models(filter_string="name = 'iris-model'", output_format="list")]
got = MlflowClient().get_logged_model(logged.model_id)
out["source_run_id"], out["params"], out["status"] = got.source_run_id, got.params, str(got.status)
out["metrics"] = {m.key: m.value for m in got.metrics}
out["outputs"] = [o.model_id for o in MlflowClient().get_run(run.info.run_id).outputs.model_outputs]
out["by_model_uri"] = len(mlflow.sklearn.load_model(logged.model_uri).predict(x))
out["by_run_uri"] = len(mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/iris-model").predict(x))
print(json.dumps(out))
"""

STRANGER = """
import json, mlflow, sys
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

experiment_id, model_ids = sys.argv[1], sys.argv[2:]
out = {"found": [m.model_id for m in mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")]}
for model_id in model_ids:  # each of them, in one process: MLflow's import takes seconds
    seen = out[model_id] = {}
    try:
        MlflowClient().get_logged_model(model_id)
        seen["get"] = "read"
    except MlflowException as exc:
        seen["get"] = exc.error_code
    try:
        mlflow.artifacts.download_artifacts(f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts/MLmodel")
        seen["download"] = "read"
    except Exception as exc:
        seen["download"] = type(exc).__name__ + ": " + str(exc)[:300]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_pg_database, make_redis_url):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-models"), make_pg_database(), make_redis_url()) as running:
        yield running


def _run(server: MlflowServer, user: str, script: str, *args: str) -> dict:
    code = textwrap.dedent(script)
    if args:
        code = f"import sys; sys.argv = ['client', *{list(args)!r}]\n" + code
    done = server.run_client(user, code, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:] + server.log()[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_laptop_logs_finds_and_loads_models_and_another_user_cannot(server):
    alice = _run(server, "alice", LOG)
    model_id, run_id = alice["model_id"], alice["run_id"]
    assert sorted([model_id, alice["lone"]]) == alice["found"]
    assert alice["by_name"] == [model_id]
    assert alice["source_run_id"] == run_id and alice["params"]["C"] == "0.5"
    assert alice["status"] == "READY"
    assert alice["metrics"]["accuracy"] > 0.9  # the run's metric, logged again with the model's id
    assert alice["outputs"] == [model_id]
    assert alice["by_model_uri"] == alice["by_run_uri"] == 150

    me = requests.get(
        f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {server.tokens['alice']}"}, timeout=30
    ).json()
    assert me["storage"]["by_kind"]["runs"] > 1000  # the model files, in her quota

    bob = _run(server, "bob", STRANGER, alice["experiment_id"], model_id, alice["lone"])
    assert bob["found"] == []
    for model in (model_id, alice["lone"]):
        assert bob[model]["get"] == "RESOURCE_DOES_NOT_EXIST"
        assert bob[model]["download"] != "read" and "RESOURCE_DOES_NOT_EXIST" in bob[model]["download"], bob
