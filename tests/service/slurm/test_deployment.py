"""One deployment, two backends: the cpu queue on the SLURM cluster's partition, the gpu queue on a
Celery worker; the API, the dispatcher and the worker as real processes, each SLURM job run on the
node by `labtrain worker run-one`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import free_port
from tests.support.processes import (
    Client,
    ServiceProcess,
    create_user_token,
    deployment_env,
    stop_all,
    wait_until_healthy,
)
from tests.support.slurm_cluster import CPU_PARTITION, NODE

MODELS = Path(__file__).parents[1] / "code" / "models"  # students' model scripts (tests/service/code)


@pytest.fixture(scope="module")
def two_backends(tmp_path_factory, make_pg_database, make_redis_url, slurm_cluster):
    home = tmp_path_factory.mktemp("slurm-deployment")
    queues = {
        "cpu": {"backend": "slurm", "partition": CPU_PARTITION, "depth": 2, "poll_s": 0.5, "sandbox": "bubblewrap"}
    }
    env = deployment_env(
        home,
        LABTRAIN_DATABASE_URL=make_pg_database(),
        LABTRAIN_BROKER_URL=make_redis_url(),
        LABTRAIN_QUEUES=json.dumps(queues),
    )
    token = create_user_token(env, "alice")
    port = free_port()
    processes = [
        ServiceProcess(["dispatcher"], env, home / "dispatcher.log"),
        ServiceProcess(["worker", "--queues", "gpu", "--name", "gpu0@test"], env, home / "worker.log"),
        ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, home / "api.log"),
    ]
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield Client(f"http://127.0.0.1:{port}", token), processes
    finally:
        stop_all(processes)


def _running_on(client: Client, job_id: str) -> list[str]:
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    return [e["data"]["worker"] for e in events if e["type"] == "status" and e["data"]["status"] == "running"]


def test_a_classic_job_runs_on_slurm_while_the_gpu_queue_stays_on_celery(two_backends, slurm_cluster):
    client, _ = two_backends
    job = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "svm", "device": "cpu"}).json()
    assert job["queue"] == "cpu"
    job = client.wait_for(job["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert _running_on(client, job["id"]) == [f"slurm:{CPU_PARTITION}@{NODE}"]
    answer = client.post(
        f"/api/v1/models/{job['result']['model_id']}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert answer.status_code == 200 and answer.json()["labels"] == ["setosa"]
    # The partition and its node are a worker of the cpu queue; the Celery worker serves gpu.
    workers = client.get("/api/v1/queue").json()["queues"]
    assert [w["name"] for w in workers["cpu"]["workers"]] == [f"slurm:{CPU_PARTITION}"]
    network = {
        "dataset": "digits",
        "framework": "pytorch",
        "network": {"preset": "feedforward"},
        "training": {"epochs": 1},
        "device": "gpu",
    }
    gpu_job = client.post("/api/v1/jobs", json=network).json()
    assert gpu_job["queue"] == "gpu"
    gpu_job = client.wait_for(gpu_job["id"], timeout=180)
    assert gpu_job["status"] == "succeeded", gpu_job["error"]
    assert _running_on(client, gpu_job["id"]) == ["gpu0@test"]


def test_a_job_cancelled_through_labtrain_is_gone_from_squeue_within_seconds(two_backends, slurm_cluster):
    client, _ = two_backends
    spec = {
        "dataset": "mnist",
        "framework": "pytorch",
        "network": {"preset": "feedforward"},
        "training": {"epochs": 500},
        "device": "cpu",
    }
    job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while (client.get(f"/api/v1/jobs/{job_id}").json().get("progress") or {}).get("epoch", 0) < 1:
        assert time.monotonic() < deadline, "the job did not start on the node"
        time.sleep(0.2)
    assert list(slurm_cluster.squeue().values()) == ["RUNNING"]
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202  # asked to stop
    deadline = time.monotonic() + 15
    while slurm_cluster.squeue():
        assert time.monotonic() < deadline, f"still in squeue: {slurm_cluster.squeue()}"
        time.sleep(0.2)
    assert client.wait_for(job_id, timeout=30)["status"] == "cancelled"


def test_a_code_job_runs_in_its_sandbox_on_the_node(two_backends):
    client, _ = two_backends
    script = (
        b"import os, pathlib\n"
        b"print('running as', os.getuid())\n"
        b"pathlib.Path('outputs/report.txt').write_text('written on the node')\n"
    )
    source = client.post("/api/v1/sources", files={"file": ("report.py", script)})
    assert source.status_code == 201, source.text
    job = client.post("/api/v1/jobs", json={"code": {"source": source.json()["id"]}, "device": "cpu"})
    assert job.status_code == 201 and job.json()["queue"] == "cpu", job.text
    done = client.wait_for(job.json()["id"], timeout=180)
    assert done["status"] == "succeeded", (done["error"], client.get(f"/api/v1/jobs/{done['id']}/log").text[-2000:])
    assert _running_on(client, done["id"]) == [f"slurm:{CPU_PARTITION}@{NODE}"]
    served = client.get(f"/api/v1/jobs/{done['id']}/artifacts/report.txt")
    assert served.status_code == 200 and served.text == "written on the node"
    log = client.get(f"/api/v1/jobs/{done['id']}/log").text
    uid = re.search(r"running as (\d+)", log)
    assert uid and uid.group(1) != "0", log[-2000:]  # in the sandbox, not as the node's root


def test_a_code_jobs_model_made_on_the_node_is_checked_there_and_predicts(two_backends):
    client, _ = two_backends
    script = (MODELS / "sklearn_pipeline.py").read_bytes()  # a scikit-learn pipeline saved with save_model
    source = client.post("/api/v1/sources", files={"file": ("pipeline.py", script)}).json()["id"]
    job = client.post("/api/v1/jobs", json={"code": {"source": source}, "device": "cpu"}).json()
    done = client.wait_for(job["id"], timeout=180)
    assert done["status"] == "succeeded", (done["error"], client.get(f"/api/v1/jobs/{done['id']}/log").text[-2000:])
    assert _running_on(client, done["id"]) == [f"slurm:{CPU_PARTITION}@{NODE}"]
    answer = client.post(
        f"/api/v1/models/{done['result']['model_id']}/predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
    )
    assert answer.status_code == 200 and answer.json()["labels"] == ["setosa", "virginica"], answer.text


# Checkpoints at each epoch's end; asked to yield (labtrain_job.preempted()), it exits after one.
PREEMPTIBLE = b"""
import json, time
import labtrain_job

state = labtrain_job.checkpoint_dir() / "state.json"
start = json.loads(state.read_text())["epoch"] if state.exists() else 0
print("starting after epoch", start, flush=True)
for epoch in range(start + 1, 11):
    time.sleep(0.4)
    labtrain_job.report(epoch=epoch, loss=1.0 / epoch)
    state.write_text(json.dumps({"epoch": epoch}))
    if labtrain_job.preempted():
        print("yielding after epoch", epoch, flush=True)
        raise SystemExit(0)
"""


def test_a_code_job_slurm_preempts_yields_from_its_checkpoint_with_its_attempt_given_back(two_backends, slurm_cluster):
    client, _ = two_backends
    source = client.post("/api/v1/sources", files={"file": ("epochs.py", PREEMPTIBLE)})
    assert source.status_code == 201, source.text
    job_id = client.post("/api/v1/jobs", json={"code": {"source": source.json()["id"]}, "device": "cpu"}).json()["id"]
    deadline = time.monotonic() + 120
    while (client.get(f"/api/v1/jobs/{job_id}").json().get("progress") or {}).get("epoch", 0) < 2:
        assert time.monotonic() < deadline, "the job did not start on the node"
        time.sleep(0.1)
    [first] = [slurm_id for slurm_id, state in slurm_cluster.squeue().items() if state == "RUNNING"]
    # SLURM's own preemption: SIGTERM to every process of the job (the sandboxed script too).
    slurm_cluster.preempt(seconds=3)
    done = client.wait_for(job_id, timeout=180)
    log = client.get(f"/api/v1/jobs/{job_id}/log").text
    assert done["status"] == "succeeded", (done["error"], log[-3000:])
    assert slurm_cluster.job(first)["JobState"] == "PREEMPTED"
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    assert [e["data"]["epoch"] for e in events if e["type"] == "epoch"] == list(range(1, 11))  # each once
    requeued = [e["data"] for e in events if e["type"] == "status" and e["data"]["status"] == "queued"]
    assert [r.get("reason") for r in requeued][-1:] == ["preempted"], requeued
    assert done["attempt"] == 1 and done["preemptions"] == 1  # the attempt given back
    yielded = re.search(r"yielding after epoch (\d+)", log)
    assert yielded and f"starting after epoch {yielded.group(1)}" in log, log[-3000:]


def test_a_notebook_job_runs_on_the_node_and_comes_back_executed_and_rendered(two_backends):
    client, _ = two_backends
    book = new_notebook(
        cells=[
            new_code_cell("epochs = 1", metadata={"tags": ["parameters"]}),
            new_code_cell(
                "import labtrain_job\n"
                "for epoch in range(1, epochs + 1):\n"
                "    labtrain_job.report(epoch=epoch, loss=1 / epoch)\n"
                "print('trained', epochs, 'epochs')"
            ),
        ]
    )
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = client.post("/api/v1/sources", files={"file": ("train.ipynb", nbformat.writes(book).encode())})
    assert source.status_code == 201, source.text
    spec = {"code": {"source": source.json()["id"], "parameters": {"epochs": 2}}, "device": "cpu"}
    job = client.post("/api/v1/jobs", json=spec).json()
    assert job["queue"] == "cpu"
    done = client.wait_for(job["id"], timeout=180)
    assert done["status"] == "succeeded", (done["error"], client.get(f"/api/v1/jobs/{job['id']}/log").text[-2000:])
    assert _running_on(client, job["id"]) == [f"slurm:{CPU_PARTITION}@{NODE}"]
    assert done["result"]["notebook"] == {
        "executed": "train.ipynb",
        "cells": 3,
        "page": True,
    }  # its parameters injected
    events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    assert [e["data"]["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
    executed = nbformat.reads(client.get(f"/api/v1/jobs/{job['id']}/artifacts/train.ipynb").text, as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "trained 2 epochs\n"
    page = client.get(f"/api/v1/jobs/{job['id']}/notebook")
    assert page.status_code == 200 and "trained 2 epochs" in page.text
