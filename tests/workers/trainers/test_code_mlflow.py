"""Students' own MLflow logging in a code job, in the real sandbox: an unchanged script that uses
`mlflow` logs into the job itself through the job's socket and forwarder (MLFLOW_TRACKING_URI,
MLFLOW_RUN_ID), its metrics become the job's curves as report()'s would, its params and tags
are the job's run's, which the owner's own MLflow client reads from the API afterwards; autolog
for Keras and scikit-learn works; a job cannot write or read another's run, nor reach the API.

A real labtrain API (PostgreSQL) for the owner's client; the code trainer driven in process on
that database as a worker drives it (the runner's job_app). Not in the fast tier."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from service.core import storage
from service.core.config import Settings
from service.core.db import Database
from service.core.orm import Job, JobEvent, User
from service.jobs import lifecycle
from service.sandbox.probe import capabilities
from service.tracking.job_endpoint import job_app
from service.tracking.runs import job_run_id
from tests.support.code_trainer import code_job
from tests.support.mlflow_server import MlflowServer, mlflow_server
from tests.support.trainers import ListReporter
from workers.trainers import code as code_trainer
from workers.trainers.base import Allotment

TORCH = """
    import sys, torch, labtrain_job
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    with_mlflow = sys.argv[1] == "mlflow"
    if with_mlflow:
        import mlflow
        mlflow.set_experiment("week3")  # as tutorials do: the job's run moves there
        mlflow.start_run()  # resumes MLFLOW_RUN_ID, the job's own run
        mlflow.log_param("lr", 0.1)
        mlflow.set_tag("model", "linear")
    for epoch in range(1, 7):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        accuracy = 1.0 / (1.0 + loss.item())
        if with_mlflow:
            mlflow.log_metric("loss", loss.item(), step=epoch)
            mlflow.log_metrics({"accuracy": accuracy}, step=epoch)
        else:
            labtrain_job.report(epoch=epoch, loss=loss.item(), accuracy=accuracy)
    if with_mlflow:
        mlflow.end_run()  # the job's status stays labtrain's
"""

KERAS = """
    import json, numpy as np, keras, mlflow
    mlflow.keras.autolog()
    keras.utils.set_random_seed(0)
    x = np.random.rand(128, 8).astype("float32"); y = (x.sum(axis=1) > 4).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    print("HISTORY " + json.dumps(history.history))
"""

SKLEARN = """
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    mlflow.sklearn.autolog()
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=0.5, max_iter=300).fit(x, y)
    print("SCORE", model.score(x, y))
"""

HOSTILE = """
    import json, os, socket, sys, urllib.error, urllib.request
    uri = os.environ["MLFLOW_TRACKING_URI"]
    other, api_port = sys.argv[1], int(sys.argv[2])

    def ask(method, endpoint, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(uri + "/api/2.0/mlflow/" + endpoint, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    found = {
        "log": ask("POST", "runs/log-metric", {"run_id": other, "key": "x", "value": 1, "timestamp": 1, "step": 1}),
        "param": ask("POST", "runs/log-param", {"run_id": other, "key": "p", "value": "v"}),
        "tag": ask("POST", "runs/set-tag", {"run_id": other, "key": "t", "value": "v"}),
        "end": ask("POST", "runs/update", {"run_id": other, "status": "FAILED"}),
        "get": ask("GET", "runs/get?run_id=" + other),
        "history": ask("GET", "metrics/get-history?run_id=" + other + "&metric_key=loss"),
        "own": ask("GET", "runs/get?run_id=" + os.environ["MLFLOW_RUN_ID"]),
    }
    try:
        socket.create_connection(("127.0.0.1", api_port), timeout=3).close()
        found["api"] = "reached"
    except OSError:
        found["api"] = "refused"
    print("FOUND " + json.dumps(found))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_pg_database, make_redis_url):
    with mlflow_server(tmp_path_factory.mktemp("code-mlflow"), make_pg_database(), make_redis_url()) as running:
        yield running


@pytest.fixture(scope="module")
def settings(server: MlflowServer) -> Settings:
    """The worker's settings: the API's database and folders."""
    settings = Settings.from_env_map(server.env)
    settings.ensure_dirs()
    found = capabilities(settings)
    if "sandbox_error" in found:
        pytest.skip(f"no sandbox on this machine: {found['sandbox_error']}")
    return settings


@pytest.fixture(scope="module")
def db(settings):
    database = Database(settings.database_url)
    yield database
    database.dispose()


@dataclasses.dataclass
class Ran:
    job_id: str
    reporter: ListReporter
    result: object

    @property
    def run_id(self) -> str:
        return job_run_id(self.job_id)


def run_job(settings: Settings, db: Database, name: str, script: str, args: list[str] | None = None) -> Ran:
    """`script` as a running code job of alice's, trained as a worker trains it, with its endpoint."""
    run, inputs = code_job(settings, name, script)
    run = run.model_copy(update={"code": run.code.model_copy(update={"args": args or []})})
    with db.session() as session:
        alice = session.scalar(select(User).where(User.name == "alice"))
        job = lifecycle.create_job(
            session, alice, family="code", spec=run.model_dump(mode="json"), queue="cpu", name=name
        )
        job_id = job.id
    with db.session() as session:
        assert lifecycle.claim(session, job_id, "test-worker") == 1
    inputs = dataclasses.replace(inputs, job_id=job_id)
    reporter = ListReporter()
    allotted = Allotment(
        tracking_app=lambda on_metrics: job_app(db, settings, job_id, on_metrics), tracking_run_id=job_run_id(job_id)
    )
    result = code_trainer.train(run, inputs, reporter, allotted)
    return Ran(job_id, reporter, result)


def metrics_events(db: Database, job_id: str) -> list[dict]:
    with db.session() as session:
        return list(
            session.scalars(
                select(JobEvent.data)
                .where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
                .order_by(JobEvent.seq)
            )
        )


def curves(events: list[dict], x: str) -> dict[str, list[tuple[int, float]]]:
    """Each key's points in order: (step or epoch, value)."""
    found: dict[str, list[tuple[int, float]]] = {}
    for data in events:
        for key, value in data.items():
            if key not in ("step", "epoch", "epochs", "source"):
                found.setdefault(key, []).append((data[x], value))
    return found


def owners_client(server: MlflowServer, body: str) -> dict:
    script = "import json, mlflow\nfrom mlflow import MlflowClient\nout = {}\n" + textwrap.dedent(body)
    finished = server.run_client("alice", script + "\nprint('RESULT ' + json.dumps(out))\n")
    assert finished.returncode == 0, finished.stderr[-4000:]
    return json.loads(finished.stdout.splitlines()[-1].removeprefix("RESULT "))


def test_mlflow_log_metric_draws_the_curves_report_draws_and_the_owner_reads_the_run(server, settings, db):
    logged = run_job(settings, db, "torch-mlflow", TORCH, ["mlflow"])
    reported = run_job(settings, db, "torch-report", TORCH, ["report"])
    assert "Traceback" not in logged.reporter.printed(), logged.reporter.printed()

    events = metrics_events(db, logged.job_id)
    assert {e["source"] for e in events} == {"mlflow"}
    epochs = [data for kind, data in reported.reporter.events if kind == "epoch"]
    assert curves(events, "step") == curves(epochs, "epoch")  # the same values, key by key, in order
    assert len(curves(events, "step")["loss"]) == 6
    assert logged.result.metrics["loss"] == reported.result.metrics["loss"]  # folded into the job's metrics
    with db.session() as session:
        assert session.get(Job, logged.job_id).metrics["loss"] == reported.result.metrics["loss"]

    out = owners_client(
        server,
        f"""
        run = MlflowClient().get_run("{logged.run_id}")
        out["params"], out["tags"] = run.data.params, run.data.tags
        out["status"] = run.info.status
        out["experiment"] = MlflowClient().get_experiment(run.info.experiment_id).name
        out["history"] = [(m.step, m.value) for m in MlflowClient().get_metric_history("{logged.run_id}", "loss")]
        """,
    )
    assert out["params"]["lr"] == "0.1" and out["tags"]["model"] == "linear"
    assert out["experiment"] == "week3"
    assert out["status"] == "RUNNING"  # end_run did not end the job
    assert [tuple(p) for p in out["history"]] == curves(events, "step")["loss"]


def test_keras_autolog_becomes_the_jobs_curves(server, settings, db):
    ran = run_job(settings, db, "keras-autolog", KERAS)
    history = json.loads(next(line for _, line in ran.reporter.lines if line.startswith("HISTORY ")).split(" ", 1)[1])
    found = curves(metrics_events(db, ran.job_id), "step")
    assert "loss" in found, ran.reporter.printed()[-3000:]
    assert [value for _, value in found["loss"]] == pytest.approx(history["loss"], rel=1e-6)
    assert [value for _, value in found["accuracy"]] == pytest.approx(history["accuracy"], rel=1e-6)
    assert [step for step, _ in found["loss"]] == [0, 1, 2]  # logged once, though again with the model's id
    assert "unexpected error" not in ran.reporter.printed().lower(), ran.reporter.printed()[-3000:]

    model = logged_model(server, settings, ran)
    assert model["files"] >= {"MLmodel", "data/model.keras"}
    assert model["metrics"]["loss"] == pytest.approx(history["loss"][-1], rel=1e-6)
    assert model["datasets"] and model["outputs"] == [model["id"]]


def test_sklearn_autolog_logs_into_the_job(server, settings, db):
    ran = run_job(settings, db, "sklearn-autolog", SKLEARN)
    score = float(next(line for _, line in ran.reporter.lines if line.startswith("SCORE ")).split()[1])
    found = curves(metrics_events(db, ran.job_id), "step")
    assert "training_accuracy_score" in found, ran.reporter.printed()[-3000:]
    assert found["training_accuracy_score"] == [(0, pytest.approx(score))]
    assert ran.result.metrics["training_accuracy_score"] == pytest.approx(score)
    out = owners_client(server, f'out["params"] = MlflowClient().get_run("{ran.run_id}").data.params')
    assert out["params"]["C"] == "0.5" and out["params"]["max_iter"] == "300"

    model = logged_model(server, settings, ran, load="sklearn")
    assert model["files"] >= {"MLmodel", "model.pkl"}
    assert model["params"]["C"] == "0.5"
    assert model["metrics"]["training_accuracy_score"] == pytest.approx(score)
    assert model["predicted"] == 150  # the owner's client loaded it through the model's artifact path


def logged_model(server: MlflowServer, settings: Settings, ran: Ran, load: str | None = None) -> dict:
    """The one model autolog logged from the job's run, as the owner's MLflow client sees it, and
    the files it left among the job's outputs (outputs/mlflow/models/<model_id>/)."""
    loading = ""
    if load:
        loading = f"""
        from sklearn.datasets import load_iris
        loaded = mlflow.{load}.load_model("models:/" + model.model_id)
        out["predicted"] = len(loaded.predict(load_iris(return_X_y=True)[0]))
        """
    out = owners_client(
        server,
        f"""
        models = mlflow.search_logged_models(
            experiment_ids=["1"], filter_string="source_run_id = '{ran.run_id}'", output_format="list"
        )
        out["found"] = [m.model_id for m in models]
        model = MlflowClient().get_logged_model(models[0].model_id)
        out["id"], out["params"] = model.model_id, model.params
        out["metrics"] = {{m.key: m.value for m in model.metrics}}
        out["artifact_location"] = model.artifact_location
        run = MlflowClient().get_run("{ran.run_id}")
        out["datasets"] = [d.dataset.name for d in run.inputs.dataset_inputs]
        out["outputs"] = [o.model_id for o in run.outputs.model_outputs] if run.outputs else []
        """
        + loading,
    )
    assert len(out["found"]) == 1, out
    assert out["artifact_location"] == f"mlflow-artifacts:/1/models/{out['id']}/artifacts"
    folder = storage.job_outputs_dir(settings, ran.job_id) / "mlflow" / "models" / out["id"]
    out["files"] = {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}
    return out


def test_a_job_cannot_write_or_read_another_run_nor_reach_the_api(server, settings, db):
    victim = run_job(settings, db, "victim", TORCH, ["mlflow"])
    before = metrics_events(db, victim.job_id)
    port = str(urlsplit(server.url).port)
    attacker = run_job(settings, db, "attacker", HOSTILE, [victim.run_id, port])
    found = json.loads(next(line for _, line in attacker.reporter.lines if line.startswith("FOUND ")).split(" ", 1)[1])
    assert found == {
        "log": 404,
        "param": 404,
        "tag": 404,
        "end": 404,
        "get": 404,
        "history": 404,
        "own": 200,
        "api": "refused",
    }
    assert metrics_events(db, victim.job_id) == before
    out = owners_client(server, f'run = MlflowClient().get_run("{victim.run_id}"); out["params"] = run.data.params')
    assert "p" not in out["params"]
