"""Named queues in one deployment: `bigmem` served by a Celery worker started with `--queues
bigmem`, `batch` and `a100` (a GPU queue) by the test cluster's partitions; the API, the
dispatcher and the worker as real processes. Each job runs where its queue says, and the queue
overview shows which workers serve which queue."""

from __future__ import annotations

import json

import pytest

from tests.conftest import free_port
from tests.support.processes import (
    Client,
    ServiceProcess,
    create_user_token,
    deployment_env,
    run_cli,
    stop_all,
    wait_until_healthy,
)
from tests.support.slurm_cluster import CPU_PARTITION, GPU_PARTITION, NODE

QUEUES = {
    "batch": {"backend": "slurm", "partition": CPU_PARTITION, "depth": 2, "poll_s": 0.5, "max": {"cpus": 1}},
    "a100": {"backend": "slurm", "partition": GPU_PARTITION, "device": "gpu", "depth": 1, "poll_s": 0.5},
    "bigmem": {"backend": "celery", "max_running": 2},
}


@pytest.fixture(scope="module")
def named_queues(tmp_path_factory, make_pg_database, make_redis_url, slurm_cluster):
    home = tmp_path_factory.mktemp("named-queues")
    env = deployment_env(
        home,
        LABTRAIN_DATABASE_URL=make_pg_database(),
        LABTRAIN_BROKER_URL=make_redis_url(),
        LABTRAIN_QUEUES=json.dumps(QUEUES),
    )
    token = create_user_token(env, "alice")
    port = free_port()
    processes = [
        ServiceProcess(["dispatcher"], env, home / "dispatcher.log"),
        ServiceProcess(["worker", "--queues", "bigmem", "--name", "bigmem0@test"], env, home / "worker.log"),
        ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, home / "api.log"),
    ]
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield Client(f"http://127.0.0.1:{port}", token), env
    finally:
        stop_all(processes)


def _ran_on(client: Client, job_id: str) -> list[str]:
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    return [e["data"]["worker"] for e in events if e["type"] == "status" and e["data"]["status"] == "running"]


def _run(client: Client, spec: dict, queue: str, timeout: float = 180) -> dict:
    created = client.post("/api/v1/jobs", json={**spec, "queue": queue})
    assert created.status_code == 201, created.text
    assert created.json()["queue"] == queue
    done = client.wait_for(created.json()["id"], timeout=timeout)
    assert done["status"] == "succeeded", done["error"]
    assert client.get(f"/api/v1/jobs/{done['id']}").json()["queue"] == queue
    return done


def test_a_named_celery_queue_is_served_by_the_worker_started_for_it(named_queues):
    client, _ = named_queues
    done = _run(client, {"dataset": "iris", "algorithm": "svm"}, "bigmem")
    assert _ran_on(client, done["id"]) == ["bigmem0@test"]
    answer = client.post(
        f"/api/v1/models/{done['result']['model_id']}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert answer.status_code == 200 and answer.json()["labels"] == ["setosa"]


def test_a_named_slurm_queue_runs_its_jobs_on_its_partition(named_queues):
    client, _ = named_queues
    done = _run(client, {"dataset": "iris", "algorithm": "knn"}, "batch")
    assert _ran_on(client, done["id"]) == [f"slurm:{CPU_PARTITION}@{NODE}"]
    source = client.post("/api/v1/sources", files={"file": ("train.py", b"print('hi')\n")}).json()["id"]
    spec = {"code": {"source": source}, "resources": {"cpus": 2}}
    refused = client.post("/api/v1/jobs", json={**spec, "queue": "batch"})
    assert refused.status_code == 422 and refused.json()["error"]["details"]["field"] == "resources.cpus"


def test_a_named_gpu_queue_on_slurm_asks_for_a_gpu(named_queues, slurm_cluster):
    client, _ = named_queues
    network = {"dataset": "digits", "framework": "pytorch", "network": {"preset": "feedforward"}}
    done = _run(client, {**network, "training": {"epochs": 1}}, "a100")
    assert done["spec"]["device"] == "gpu" and done["gpu_memory_mb"]
    assert _ran_on(client, done["id"]) == [f"slurm:{GPU_PARTITION}@{NODE}"]
    asked = slurm_cluster.run(
        "squeue", "--states=all", "--noheader", f"--name=labtrain-{done['id']}", "--format=%b"
    ).stdout.split()
    assert asked and "gpu" in asked[0], asked  # --gres=gpu:1, kept for MinJobAge


def test_the_queue_overview_shows_which_workers_serve_which_queue(named_queues):
    client, _ = named_queues
    queues = client.get("/api/v1/queue").json()["queues"]
    assert list(queues) == ["cpu", "gpu", "batch", "a100", "bigmem"]
    workers = {name: [w["name"] for w in q["workers"]] for name, q in queues.items()}
    assert workers == {
        "cpu": [],
        "gpu": [],
        "batch": [f"slurm:{CPU_PARTITION}"],
        "a100": [f"slurm:{GPU_PARTITION}"],
        "bigmem": ["bigmem0@test"],
    }
    assert (queues["a100"]["backend"], queues["a100"]["partition"], queues["a100"]["device"]) == (
        "slurm",
        GPU_PARTITION,
        "gpu",
    )
    assert queues["batch"]["max"] == {"cpus": 1} and queues["bigmem"]["your_max_running"] == 2


def test_a_worker_for_a_queue_no_one_configured_stops_naming_it(named_queues):
    _, env = named_queues
    refused = run_cli(["worker", "--queues", "bigmem,hugemem"], env)
    assert refused.returncode == 2 and "hugemem" in refused.stderr and "bigmem" in refused.stderr
