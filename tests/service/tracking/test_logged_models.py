"""MLflow 3's logged models through the API and a job's own endpoint: a model is its source run's
(read and changed as that run is), its files are kept with the run's artifacts, metrics logged
with its id stay on it, runs keep their inputs and outputs; another user's model is missing, a
job creates models only from its own runs. In process (the fast tier runs them on SQLite)."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from service.core import storage
from service.core.orm import JobEvent, User
from service.tracking import artifacts, protocol
from service.tracking.principal import JobPrincipal
from service.tracking.runs import job_run_id
from tests.service.tracking.test_protocol import call, make_job, mlflow_error, new_run, ok

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
pytestmark = pytest.mark.fast


def new_model(client, headers, run_id=None, experiment_id="0", **fields):
    body = {"experiment_id": experiment_id, **fields}
    if run_id:
        body["source_run_id"] = run_id
    return ok(client, headers, "POST", "logged-models", body)["model"]


def test_a_model_is_created_changed_found_and_deleted(client, alice):
    run_id = new_run(client, alice)["info"]["run_id"]
    model = new_model(
        client,
        alice,
        run_id,
        name="iris",
        model_type="classifier",
        params=[{"key": "C", "value": "0.5"}],
        tags=[{"key": "flavor", "value": "sklearn"}],
    )
    model_id, info = model["info"]["model_id"], model["info"]
    assert model_id.startswith("m-") and info["source_run_id"] == run_id
    assert info["artifact_uri"] == f"mlflow-artifacts:/0/models/{model_id}/artifacts"
    assert info["status"] == "LOGGED_MODEL_PENDING" and info["name"] == "iris"

    ok(client, alice, "POST", f"logged-models/{model_id}/params", {"params": [{"key": "max_iter", "value": "300"}]})
    message = mlflow_error(
        client, alice, "POST", f"logged-models/{model_id}/params", {"params": [{"key": "C", "value": "1"}]}
    )
    assert "Changing param values is not allowed" in message
    ok(client, alice, "PATCH", f"logged-models/{model_id}/tags", {"tags": [{"key": "stage", "value": "try"}]})
    ok(client, alice, "DELETE", f"logged-models/{model_id}/tags/flavor")
    mlflow_error(
        client, alice, "DELETE", f"logged-models/{model_id}/tags/flavor", status=404, code="RESOURCE_DOES_NOT_EXIST"
    )
    final = ok(client, alice, "PATCH", f"logged-models/{model_id}", {"status": 2})["model"]
    assert final["info"]["status"] == "LOGGED_MODEL_READY"
    mlflow_error(client, alice, "PATCH", f"logged-models/{model_id}", {"status": 9})

    got = ok(client, alice, "GET", f"logged-models/{model_id}")["model"]
    assert {t["key"]: t["value"] for t in got["info"]["tags"]} == {"stage": "try"}
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"C": "0.5", "max_iter": "300"}

    search = {"experiment_ids": ["0"], "filter": "name = 'iris'"}
    found = ok(client, alice, "POST", "logged-models/search", search)["models"]
    assert [m["info"]["model_id"] for m in found] == [model_id]
    assert ok(client, alice, "POST", "logged-models/search", {**search, "filter": "params.C = '9'"}) == {}
    mlflow_error(client, alice, "POST", "logged-models/search", {**search, "filter": "nonsense ~ 1"})

    ok(client, alice, "DELETE", f"logged-models/{model_id}")
    mlflow_error(client, alice, "GET", f"logged-models/{model_id}", status=404, code="RESOURCE_DOES_NOT_EXIST")
    kept = ok(client, alice, "GET", f"logged-models/{model_id}", query={"allow_deleted": "true"})["model"]
    assert kept["info"]["model_id"] == model_id
    assert ok(client, alice, "POST", "logged-models/search", search) == {}


def test_bad_input_is_mlflows_error_naming_the_field(client, alice):
    run_id = new_run(client, alice)["info"]["run_id"]
    mlflow_error(client, alice, "POST", "logged-models", {"source_run_id": run_id})  # no experiment
    message = mlflow_error(client, alice, "POST", "logged-models", {"experiment_id": "0", "name": "a/b"})
    assert "Invalid model name" in message
    mlflow_error(client, alice, "POST", "logged-models", {"experiment_id": "0", "tags": [{"value": "x"}]})
    mlflow_error(
        client, alice, "POST", "logged-models", {"experiment_id": "0", "params": [{"key": "p" * 300, "value": "x"}]}
    )
    mlflow_error(
        client, alice, "POST", "logged-models", {"experiment_id": "12345"}, status=404, code="RESOURCE_DOES_NOT_EXIST"
    )
    mlflow_error(client, alice, "GET", "logged-models/m-nothing", status=404, code="RESOURCE_DOES_NOT_EXIST")
    mlflow_error(client, alice, "POST", "logged-models/search", {"experiment_ids": ["0"], "max_results": -1})


def test_another_users_model_is_missing_and_a_ta_only_reads(client, alice, bob):
    run_id = new_run(client, alice)["info"]["run_id"]
    model_id = new_model(client, alice, run_id, name="mine")["info"]["model_id"]
    for method, endpoint, body in (
        ("GET", f"logged-models/{model_id}", None),
        ("PATCH", f"logged-models/{model_id}", {"status": 2}),
        ("DELETE", f"logged-models/{model_id}", None),
        ("PATCH", f"logged-models/{model_id}/tags", {"tags": [{"key": "k", "value": "v"}]}),
        ("POST", f"logged-models/{model_id}/params", {"params": [{"key": "k", "value": "v"}]}),
    ):
        mlflow_error(client, bob, method, endpoint, body, status=404, code="RESOURCE_DOES_NOT_EXIST")
    # bob cannot log a model from alice's run, nor a metric onto her model
    mlflow_error(
        client,
        bob,
        "POST",
        "logged-models",
        {"experiment_id": "0", "source_run_id": run_id},
        status=404,
        code="RESOURCE_DOES_NOT_EXIST",
    )
    bobs_run = new_run(client, bob)["info"]["run_id"]
    point = {"key": "acc", "value": 1.0, "timestamp": 1, "step": 0, "model_id": model_id}
    mlflow_error(
        client,
        bob,
        "POST",
        "runs/log-batch",
        {"run_id": bobs_run, "metrics": [point]},
        status=404,
        code="RESOURCE_DOES_NOT_EXIST",
    )
    assert ok(client, bob, "POST", "logged-models/search", {"experiment_ids": ["0"]}) == {}
    # nor reach its files
    path = f"{ARTIFACTS}/0/models/{model_id}/artifacts/MLmodel"
    assert client.put(path, data=b"flavors: {}", headers=alice).status_code == 200
    assert client.get(path, headers=bob).status_code == 404
    assert client.put(path, data=b"planted", headers=bob).status_code == 404
    assert client.get(path, headers=alice).data == b"flavors: {}"


def test_a_ta_reads_a_course_models_but_changes_nothing(client, alice, make_user):
    root, tara = make_user("root", admin=True), make_user("tara")
    for method, path, body in (
        ("POST", "/api/v1/courses", {"name": "DL-2026", "term_end": "2099-01-31"}),
        ("PUT", "/api/v1/courses/DL-2026/members/tara", {"role": "ta"}),
        ("PUT", "/api/v1/courses/DL-2026/members/alice", {"role": "student"}),
    ):
        assert client.open(path, method=method, json=body, headers=root).status_code in (200, 201)
    run_id = new_run(client, alice)["info"]["run_id"]  # alice's only course: the run is DL-2026's
    model_id = new_model(client, alice, run_id, name="graded")["info"]["model_id"]
    assert ok(client, tara, "GET", f"logged-models/{model_id}")["model"]["info"]["name"] == "graded"
    found = ok(client, tara, "POST", "logged-models/search", {"experiment_ids": ["0"]})["models"]
    assert [m["info"]["model_id"] for m in found] == [model_id]
    mlflow_error(
        client, tara, "PATCH", f"logged-models/{model_id}", {"status": 3}, status=403, code="PERMISSION_DENIED"
    )
    mlflow_error(
        client,
        tara,
        "POST",
        "logged-models",
        {"experiment_id": "0", "source_run_id": run_id},
        status=403,
        code="PERMISSION_DENIED",
    )
    path = f"{ARTIFACTS}/0/models/{model_id}/artifacts/MLmodel"
    assert client.put(path, data=b"flavors: {}", headers=alice).status_code == 200
    assert client.get(path, headers=tara).data == b"flavors: {}"
    assert client.put(path, data=b"x", headers=tara).status_code == 403


def test_a_models_files_are_kept_with_its_runs(client, db, alice, settings):
    run_id = new_run(client, alice)["info"]["run_id"]
    model_id = new_model(client, alice, run_id)["info"]["model_id"]
    base = f"{ARTIFACTS}/0/models/{model_id}/artifacts"
    assert client.put(f"{base}/model.pkl", data=b"pickled bytes", headers=alice).status_code == 200
    with db.session() as session:
        owner = session.query(User).filter_by(name="alice").one().id
    kept = storage.mlflow_runs_dir(settings, owner) / run_id / "models" / model_id / "model.pkl"
    assert kept.read_bytes() == b"pickled bytes"
    listed = client.get(ARTIFACTS, query_string={"path": f"0/models/{model_id}/artifacts"}, headers=alice)
    assert listed.get_json() == {"files": [{"path": "model.pkl", "is_dir": False, "file_size": 13}]}
    # A model logged without a run is its owner's alone, kept in their own folder.
    lone = new_model(client, alice)["info"]["model_id"]
    assert client.put(f"{ARTIFACTS}/0/models/{lone}/artifacts/m.bin", data=b"x", headers=alice).status_code == 200
    assert (storage.mlflow_runs_dir(settings, owner) / "models" / lone / "m.bin").read_bytes() == b"x"
    # A path that names no model, or a model's files outside artifacts/, is not found.
    assert client.get(f"{ARTIFACTS}/0/models/m-none/artifacts/x", headers=alice).status_code == 404
    assert client.put(f"{ARTIFACTS}/0/models/{model_id}/other/x", data=b"x", headers=alice).status_code == 404


def test_model_metrics_inputs_and_outputs(client, alice):
    run_id = new_run(client, alice)["info"]["run_id"]
    model_id = new_model(client, alice, run_id)["info"]["model_id"]
    points = [{"key": "loss", "value": v, "timestamp": 10 + s, "step": s} for s, v in enumerate([0.9, 0.4])]
    ok(client, alice, "POST", "runs/log-batch", {"run_id": run_id, "metrics": points})
    # MLflow's log_model logs the run's points again with the model's id: the run keeps each once
    again = [{**p, "model_id": model_id} for p in points]
    ok(client, alice, "POST", "runs/log-batch", {"run_id": run_id, "metrics": again})
    history = ok(client, alice, "GET", "metrics/get-history", query={"run_id": run_id, "metric_key": "loss"})
    assert [(m["step"], m["value"]) for m in history["metrics"]] == [(0, 0.9), (1, 0.4)]
    model = ok(client, alice, "GET", f"logged-models/{model_id}")["model"]
    assert [(m["key"], m["value"], m["step"]) for m in model["data"]["metrics"]] == [("loss", 0.4, 1)]
    found = ok(client, alice, "POST", "logged-models/search", {"experiment_ids": ["0"], "filter": "metrics.loss < 0.5"})
    assert [m["info"]["model_id"] for m in found["models"]] == [model_id]

    ok(client, alice, "POST", "runs/outputs", {"run_id": run_id, "models": [{"model_id": model_id, "step": 1}]})
    dataset = {"name": "iris", "digest": "abc123", "source_type": "code", "source": "{}", "schema": "{}"}
    inputs = {
        "run_id": run_id,
        "datasets": [{"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": "train"}]}],
    }
    ok(client, alice, "POST", "runs/log-inputs", {**inputs, "models": [{"model_id": model_id}]})
    ok(client, alice, "POST", "runs/log-inputs", inputs)  # the same data set again: kept once
    run = ok(client, alice, "GET", "runs/get", query={"run_id": run_id})["run"]
    assert [d["dataset"]["name"] for d in run["inputs"]["dataset_inputs"]] == ["iris"]
    assert run["inputs"]["model_inputs"] == [{"model_id": model_id}]
    assert run["outputs"]["model_outputs"] == [{"model_id": model_id, "step": 1}]
    mlflow_error(client, alice, "POST", "runs/log-inputs", {"run_id": run_id, "datasets": [{"dataset": {"name": "x"}}]})
    other_run = new_run(client, alice)["info"]["run_id"]
    message = mlflow_error(
        client, alice, "POST", "runs/outputs", {"run_id": other_run, "models": [{"model_id": model_id, "step": 0}]}
    )
    assert "the run it was logged from" in message


def test_a_job_makes_models_only_from_its_own_runs(client, db, settings, alice):
    own, other = make_job(db, "alice", "own"), make_job(db, "alice", "other")
    with db.session() as session:
        owner = session.query(User).filter_by(name="alice").one().id
    job = JobPrincipal(job_id=own, owner_id=owner)

    def ask(method, endpoint, body=None):
        with db.session() as session:
            return protocol.handle(session, settings, job, method, endpoint, {}, body)

    status, answer = ask("POST", "logged-models", {"experiment_id": "1", "name": "model"})
    assert status == 200 and answer["model"]["info"]["source_run_id"] == job_run_id(own)  # no run named: its own
    model_id = answer["model"]["info"]["model_id"]
    status, answer = ask("POST", "logged-models", {"experiment_id": "1", "source_run_id": job_run_id(other)})
    assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    laptop_run = new_run(client, alice)["info"]["run_id"]
    laptop_model = new_model(client, alice, laptop_run)["info"]["model_id"]
    status, answer = ask("GET", f"logged-models/{laptop_model}")  # the owner's other models: not the job's
    assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, answer = ask("POST", "logged-models/search", {"experiment_ids": ["0", "1"]})
    assert [m["info"]["model_id"] for m in answer["models"]] == [model_id]

    with db.session() as session:  # its files land among the job's outputs
        upload = artifacts.handle(
            session, settings, job, "PUT", f"artifacts/1/models/{model_id}/artifacts/MLmodel", {}, io.BytesIO(b"m"), 1
        )
    assert upload.status == 200
    assert (storage.job_outputs_dir(settings, own) / "mlflow" / "models" / model_id / "MLmodel").read_bytes() == b"m"
    # metrics logged with its id go to the job's curves once, and onto the model (finite ones)
    points = [
        {"key": "acc", "value": 0.8, "timestamp": 1, "step": 0, "model_id": model_id},
        {"key": "bad", "value": "NaN", "timestamp": 1, "step": 0, "model_id": model_id},
    ]
    for _ in range(2):
        status, answer = ask("POST", "runs/log-batch", {"run_id": job_run_id(own), "metrics": points})
        assert status == 200, answer
    with db.session() as session:
        events = session.scalars(select(JobEvent.data).where(JobEvent.job_id == own, JobEvent.type == "metrics")).all()
    assert events == [{"step": 0, "source": "mlflow", "acc": 0.8}]
    got = ok(client, alice, "GET", f"logged-models/{model_id}")["model"]  # the owner reads the job's model
    assert got["info"]["source_run_id"] == job_run_id(own)
    assert [(m["key"], m["value"]) for m in got["data"]["metrics"]] == [("acc", 0.8)]
    status, answer = call(client, alice, "PATCH", f"logged-models/{model_id}", {"status": 3})
    assert status == 200 and answer["model"]["info"]["status"] == "LOGGED_MODEL_UPLOAD_FAILED"
