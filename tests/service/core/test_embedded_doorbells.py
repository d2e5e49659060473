"""`labtrain up` on the embedded defaults, its waits on doorbells (service/core/doorbell.py): the
dispatcher and the API's streams on the database's, the worker on the broker's. The worker's
safety round is set to a minute, longer than a job may take here: each message must ring it."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from service.core import doorbell
from tests.conftest import free_port
from tests.support.processes import Client, ServiceProcess, service_env, wait_until_healthy

SAFETY = {"LABTRAIN_DISPATCH_SAFETY_S": "60", "LABTRAIN_EMBEDDED_SAFETY_S": "60"}
JOB_S = 40  # under the safety rounds: a job that needed one of them does not finish in time


def bell_owners(database: Path) -> set[int]:
    return {int(name.split("-")[0]) for name in os.listdir(doorbell.folder_for(database))}


def role_of(process: psutil.Process) -> str:
    command = process.cmdline()
    return next((role for role in ("dispatcher", "worker", "api") if role in command), "other")


def test_jobs_run_end_to_end_woken_by_doorbells(tmp_path):
    port = free_port()
    up = ServiceProcess(["up", "--port", str(port)], service_env(tmp_path, **SAFETY), tmp_path / "up.log")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", [up])
        client = Client(f"http://127.0.0.1:{port}", (tmp_path / "token").read_text().strip())
        first = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()
        # The worker's parent imports the frameworks before it consumes: its first job waits for that.
        assert client.wait_for(first["id"], timeout=180)["status"] == "succeeded", up.output()[-3000:]

        for _ in range(3):  # one after another: each is submitted, released, sent and run
            job = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()
            assert client.wait_for(job["id"], timeout=JOB_S)["status"] == "succeeded"
        job = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()
        assert client.follow(job["id"])["status"] == "succeeded"  # its event stream ends with it

        processes = psutil.Process(up.proc.pid).children(recursive=True)
        roles = {process.pid: role_of(process) for process in processes}
        assert {roles.get(pid) for pid in bell_owners(tmp_path / "labtrain.db")} == {"dispatcher", "api"}
        assert [roles.get(pid) for pid in bell_owners(tmp_path / "broker.db")] == ["worker"]
    finally:
        up.stop(timeout=40)
    assert bell_owners(tmp_path / "labtrain.db") == bell_owners(tmp_path / "broker.db") == set()  # each removed its own
