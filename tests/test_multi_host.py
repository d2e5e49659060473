"""A worker on a second host: its own network namespace, reaching PostgreSQL and Redis over
a veth link. Jobs run there; when the link is cut mid-job, the job recovers as any job
whose worker was lost does: re-queued, and resumed from its checkpoint on another worker."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import free_port
from tests.service.lab.test_lab_server import FAST_RECOVERY, epochs_and_attempts, wait_epoch
from tests.support.netns import SecondHost
from tests.support.processes import (
    Client,
    ServiceProcess,
    create_user_token,
    deployment_env,
    stop_all,
    wait_until_healthy,
)

NETWORK = {
    "dataset": "mnist",
    "framework": "pytorch",
    "network": {"preset": "feedforward"},
    "training": {"epochs": 12, "batch_size": 32},
}


@pytest.fixture
def two_hosts(tmp_path, make_pg_database, make_redis_url):
    """The API and the dispatcher here; one worker on the second host, none here yet."""
    database, broker = make_pg_database(), make_redis_url()
    env = deployment_env(tmp_path, LABTRAIN_DATABASE_URL=database, LABTRAIN_BROKER_URL=broker, **FAST_RECOVERY)
    token = create_user_token(env, "alice")
    host2 = SecondHost()
    processes = []
    try:
        pg, rd = make_url(database), make_url(broker)
        remote = {
            **env,
            "LABTRAIN_DATABASE_URL": pg.set(host=host2.gateway, port=host2.forward(pg.port or 5432)).render_as_string(
                hide_password=False
            ),
            "LABTRAIN_BROKER_URL": f"redis://{host2.gateway}:{host2.forward(rd.port or 6379)}/{rd.database}",
        }
        port = free_port()
        processes += [
            ServiceProcess(["dispatcher"], env, tmp_path / "dispatcher.log"),
            ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log"),
            ServiceProcess(
                ["worker", "--queues", "cpu", "--concurrency", "1", "--name", "w@host2"],
                remote,
                tmp_path / "worker-host2.log",
                prefix=host2.prefix,
            ),
        ]
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        client = Client(f"http://127.0.0.1:{port}", token)
        _wait_for_worker(client, "w@host2")
        yield client, host2, env, tmp_path, processes
    finally:
        stop_all(processes)
        host2.remove()


def _wait_for_worker(client: Client, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = client.get("/api/v1/queue").json()["queues"]["cpu"]["workers"]
        if any(w["name"] == name for w in workers):
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker {name} did not come online")


def _workers_of(client: Client, job_id: str) -> list[str]:
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    return [e["data"]["worker"] for e in events if e["type"] == "status" and e["data"]["status"] == "running"]


def test_jobs_run_on_the_second_host_and_survive_a_cut_link(two_hosts):
    client, host2, env, home, processes = two_hosts
    job = client.wait_for(client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()["id"])
    assert job["status"] == "succeeded" and _workers_of(client, job["id"]) == ["w@host2"]

    job_id = client.post("/api/v1/jobs", json=NETWORK).json()["id"]
    wait_epoch(client, job_id, 3)
    host2.cut()  # the second host drops off the network mid-job
    processes.append(
        ServiceProcess(
            ["worker", "--queues", "cpu", "--concurrency", "1", "--name", "w@host1"], env, home / "worker-host1.log"
        )
    )
    job = client.wait_for(job_id, timeout=240)
    assert job["status"] == "succeeded", job["error"]
    epochs, attempts = epochs_and_attempts(client, job_id)
    assert epochs == list(range(1, 13)) and attempts == [1, 2]  # each epoch once, resumed
    assert _workers_of(client, job_id) == ["w@host2", "w@host1"]
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    assert any("lost" in (e["data"].get("reason") or "") for e in events if e["type"] == "status")
    processes[2].stop(timeout=1)  # the cut-off worker waits on its database: no point in a grace period
