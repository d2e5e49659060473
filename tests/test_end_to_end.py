"""The whole flow through real processes: an HTTP server, Celery workers, and either
PostgreSQL + Redis or the embedded defaults (SQLite and the serverless broker)."""

from __future__ import annotations

import time

import pytest
import redis

from service.core.broker import make_celery, send_job
from service.core.config import Settings
from tests.conftest import free_port
from tests.support.processes import (
    Client,
    ServiceProcess,
    create_user_token,
    deployment_env,
    run_cli,
    service_env,
    start_stack,
    stop_all,
    wait_until_healthy,
)


@pytest.fixture(scope="module")
def pg_redis_service(tmp_path_factory, make_pg_database, make_redis_url):
    home = tmp_path_factory.mktemp("pg-redis")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    created = run_cli(["users", "create", "alice"], env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("lt_")  # the token, alone on stdout
    again = run_cli(["users", "create", "alice"], env)
    assert again.returncode != 0 and "exists" in again.stderr

    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield Client(f"http://127.0.0.1:{port}", token), env, processes
    finally:
        stop_all(processes)


@pytest.fixture(scope="module")
def embedded_service(tmp_path_factory):
    home = tmp_path_factory.mktemp("embedded")
    port = free_port()
    process = ServiceProcess(["up", "--port", str(port)], service_env(home), home / "up.log")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", [process])
        token = (home / "token").read_text().strip()
        assert (home / "token").stat().st_mode & 0o777 == 0o600
        assert token in process.output()  # printed for the user
        yield Client(f"http://127.0.0.1:{port}", token), home, process
    finally:
        process.stop()


def _submit_poll_predict(client: Client) -> dict:
    response = client.post(
        "/api/v1/jobs",
        json={
            "dataset": "iris",
            "algorithm": "svm",
            "params": {"kernel": "linear"},
            "preprocessing": {"scale": True},
            "evaluation": {"cv": 3, "seed": 2},
        },
    )
    assert response.status_code == 201, response.text
    job = client.wait_for(response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["accuracy"] > 0.85 and job["progress"]["fraction"] == 1.0
    model_id = job["result"]["model_id"]
    answer = client.post(
        f"/api/v1/models/{model_id}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == ["setosa", "virginica"]
    bad = client.post(f"/api/v1/models/{model_id}/predict", json={"instances": [[5.1, 3.5]]})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "instances.0"
    invalid = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": -1}})
    assert invalid.status_code == 422 and invalid.json()["error"]["details"]["field"] == "params.n_neighbors"
    return job


def test_submit_poll_predict_on_postgres_and_redis(pg_redis_service):
    client, _env, _processes = pg_redis_service
    job = _submit_poll_predict(client)
    assert job["attempt"] == 1


def test_submit_poll_predict_on_embedded_defaults(embedded_service):
    client, home, _process = embedded_service
    _submit_poll_predict(client)
    assert (home / "labtrain.db").exists() and (home / "broker.db").exists()


def test_upload_and_train_on_embedded_defaults(embedded_service):
    client, _home, _process = embedded_service
    rows = "\n".join(f"{x},{x % 3},{'odd' if x % 2 else 'even'}" for x in range(60))
    uploaded = client.post(
        "/api/v1/datasets", files={"file": ("numbers.csv", "x,m,parity\n" + rows)}, data={"target": "parity"}
    )
    assert uploaded.status_code == 201, uploaded.text
    job = client.post("/api/v1/jobs", json={"dataset": {"id": uploaded.json()["id"]}, "algorithm": "decision_tree"})
    assert client.wait_for(job.json()["id"])["status"] == "succeeded"


def test_gradient_boosting_classifies_and_regresses_end_to_end(pg_redis_service):
    """The algorithm added through the classic family alone: submitted over HTTP, run by a
    real worker, and answering predict."""
    client, _env, _processes = pg_redis_service
    wine = client.post(
        "/api/v1/jobs",
        json={
            "dataset": "wine",
            "algorithm": "gradient_boosting",
            "params": {"max_iter": 60, "learning_rate": 0.2},
            "evaluation": {"cv": 3},
        },
    )
    diabetes = client.post(
        "/api/v1/jobs",
        json={
            "dataset": "diabetes",
            "algorithm": "gradient_boosting",
            "params": {"loss": "absolute_error", "max_iter": 80},
        },
    )
    assert wine.status_code == diabetes.status_code == 201, (wine.text, diabetes.text)
    assert wine.json()["spec"]["task"] == "classification" and diabetes.json()["spec"]["task"] == "regression"

    classified = client.wait_for(wine.json()["id"])
    assert classified["status"] == "succeeded", classified["error"]
    assert classified["metrics"]["accuracy"] > 0.85 and len(classified["metrics"]["cv"]["folds"]) == 3
    predicted = client.post(
        f"/api/v1/models/{classified['result']['model_id']}/predict",
        json={
            "instances": [
                [13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050],
                [12.37, 0.94, 1.36, 10.6, 88, 1.98, 0.57, 0.28, 0.42, 1.95, 1.05, 1.82, 520],
            ]
        },
    )
    assert predicted.status_code == 200, predicted.text
    answer = predicted.json()
    assert answer["labels"] == ["class_0", "class_1"] and len(answer["probabilities"][0]) == 3

    regressed = client.wait_for(diabetes.json()["id"])
    assert regressed["status"] == "succeeded", regressed["error"]
    assert regressed["metrics"]["r2"] > 0.1  # better than predicting the mean
    model = client.get(f"/api/v1/models/{regressed['id']}").json()
    assert model["algorithm"] == "gradient_boosting" and model["task"] == "regression"
    numbers = client.post(f"/api/v1/models/{model['id']}/predict", json={"instances": [[0.0] * 10]}).json()
    assert isinstance(numbers["predictions"][0], float)


def test_many_jobs_at_once_all_succeed_exactly_once(pg_redis_service):
    client, _env, _processes = pg_redis_service
    ids = [client.post("/api/v1/jobs", json={"dataset": "wine", "algorithm": "knn"}).json()["id"] for _ in range(20)]
    jobs = [client.wait_for(job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 20
    assert {j["attempt"] for j in jobs} == {1}


def test_a_duplicate_message_cannot_run_a_job_twice(pg_redis_service):
    client, env, processes = pg_redis_service
    job_id = client.post(
        "/api/v1/jobs", json={"dataset": "digits", "algorithm": "random_forest", "params": {"n_estimators": 30}}
    ).json()["id"]
    celery = make_celery(Settings.from_env_map(env))
    for _ in range(3):  # the same job id delivered three more times, as a broker might after a failure
        send_job(celery, job_id, "cpu")
    job = client.wait_for(job_id)
    time.sleep(1.0)  # let the duplicate deliveries arrive and be dropped
    assert job["status"] == "succeeded" and job["attempt"] == 1
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    assert [e["data"]["status"] for e in events if e["type"] == "status"] == ["queued", "running", "succeeded"]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["attempt"] == 1
    assert redis.Redis.from_url(env["LABTRAIN_BROKER_URL"]).llen("cpu") == 0
    assert "already claimed" in processes[1].output()


def test_network_jobs_on_a_warm_worker_with_both_frameworks(pg_redis_service):
    client, _env, _processes = pg_redis_service
    specs = [
        {
            "dataset": "mnist",
            "framework": "tensorflow",
            "network": {"preset": "mlp", "api": "subclassing"},
            "training": {"epochs": 2, "validation_split": 0.1},
        },
        {
            "dataset": "mnist",
            "framework": "pytorch",
            "network": {"preset": "lenet", "api": "module"},
            "training": {"epochs": 2, "batch_size": 64},
        },
    ]
    ids = [client.post("/api/v1/jobs", json=spec).json()["id"] for spec in specs]
    for job_id in ids:
        job = client.wait_for(job_id, timeout=180)
        assert job["status"] == "succeeded", job["error"]
        assert job["metrics"]["accuracy"] > 0.85
        epochs = [
            e["data"] for e in client.get(f"/api/v1/jobs/{job_id}/events").json()["items"] if e["type"] == "epoch"
        ]
        assert [e["epoch"] for e in epochs] == [1, 2]
        answer = client.post(
            f"/api/v1/models/{job['result']['model_id']}/predict", json={"instances": [[[0] * 28] * 28]}
        )
        assert answer.status_code == 200 and len(answer.json()["probabilities"][0]) == 10
    workers = client.get("/api/v1/queue").json()["queues"]["cpu"]["workers"]
    assert [w["concurrency"] for w in workers] == [2]


@pytest.fixture(scope="module")
def gpu_worker_service(tmp_path_factory, make_pg_database, make_redis_url):
    """A gpu-queue worker as a GPU server runs it (one job at a time, a fresh process per job),
    here training on the CPU."""
    home = tmp_path_factory.mktemp("gpu-worker")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    token = create_user_token(env, "gina")
    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "gpu", "--name", "gpu0@test"], api_workers=1)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield Client(f"http://127.0.0.1:{port}", token), processes
    finally:
        stop_all(processes)


def test_gpu_queue_jobs_run_on_the_gpu_worker(gpu_worker_service):
    client, _processes = gpu_worker_service
    deadline = time.monotonic() + 30
    while not client.get("/api/v1/queue").json()["queues"]["gpu"]["workers"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker registers once it is ready
    workers = client.get("/api/v1/queue").json()["queues"]["gpu"]["workers"]
    assert [(w["name"], w["concurrency"]) for w in workers] == [("gpu0@test", 1)]
    spec = {
        "dataset": "mnist",
        "framework": "pytorch",
        "network": {"preset": "feedforward"},
        "training": {"epochs": 1},
        "device": "auto",
    }
    job = client.post("/api/v1/jobs", json=spec).json()
    assert job["queue"] == "gpu"  # auto goes to the GPU while a GPU worker is online
    job = client.wait_for(job["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["device"] == "cpu"
    log = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    assert any("training on the CPU" in e["data"].get("message", "") for e in log)


def test_metrics_and_readiness_under_gunicorn(pg_redis_service):
    """Each gunicorn process keeps its own HTTP samples; a scrape answers with all of them."""
    from prometheus_client.parser import text_string_to_metric_families

    client, _env, _processes = pg_redis_service
    job = client.wait_for(client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()["id"])
    for _ in range(20):  # spread over the API's processes
        assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 200
    assert client.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}
    page = client.get("/metrics")
    assert page.status_code == 200
    counts = {}
    for family in text_string_to_metric_families(page.text):
        for sample in family.samples:
            if sample.name == "labtrain_http_request_duration_seconds_count":
                counts[(sample.labels["route"], sample.labels["status"])] = sample.value
            if sample.name == "labtrain_jobs_finished_total" and sample.labels["status"] == "succeeded":
                assert sample.value >= 1
    assert counts[("/api/v1/jobs/<job_id>", "200")] >= 20
