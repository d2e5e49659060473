"""A shared lab server under trouble, with real processes on PostgreSQL and Redis:
fair share between students, cancelling running jobs, time limits, workers killed
mid-job, and a Redis restart while jobs wait."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from service.core.db import Database
from service.core.orm import Job, User
from service.jobs.limits import set_limits
from tests.conftest import free_port
from tests.support.processes import (
    Client,
    ServiceProcess,
    create_user_token,
    deployment_env,
    start_stack,
    stop_all,
    wait_until_healthy,
)
from tests.support.redis_server import RedisServer

FAST_RECOVERY = {
    "LABTRAIN_JOB_HEARTBEAT_TIMEOUT_S": "3",
    "LABTRAIN_RESEND_AFTER_S": "3",
    "LABTRAIN_STOP_GRACE_S": "3",
    "LABTRAIN_MAX_ATTEMPTS": "2",
}
LENET = {
    "dataset": "mnist",
    "framework": "pytorch",
    "network": {"preset": "lenet"},
    "training": {"epochs": 12, "batch_size": 32},
}


class Lab:
    """A running deployment and the students using it."""

    def __init__(self, home, env, port, processes):
        self.home, self.env, self.port, self.processes = home, env, port, processes
        self.clients: dict[str, Client] = {}
        self.db = Database(env["LABTRAIN_DATABASE_URL"])

    def student(self, name: str) -> Client:
        if name not in self.clients:
            self.clients[name] = Client(f"http://127.0.0.1:{self.port}", create_user_token(self.env, name))
        return self.clients[name]

    def limits(self, name: str, **changes: int) -> None:
        with self.db.session() as session:
            set_limits(session, session.scalar(select(User).where(User.name == name)), changes, actor="root")

    def add_worker(self, *args: str) -> ServiceProcess:
        process = ServiceProcess(["worker", *args], self.env, self.home / f"worker-{len(self.processes)}.log")
        self.processes.append(process)
        return process

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker called `name` and its pool processes."""
        process = next(p for p in self.processes if p.proc.poll() is None and p.proc.args[-1] == name)
        os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait()

    def stop(self) -> None:
        stop_all(self.processes)
        self.db.dispose()


def start_lab(home, make_pg_database, broker_url: str, worker_args: list[str], **env_extra: str) -> Lab:
    env = deployment_env(
        home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=broker_url, **FAST_RECOVERY, **env_extra
    )
    port = free_port()
    lab = Lab(home, env, port, start_stack(env, home, port, worker_args, api_workers=2))
    wait_until_healthy(f"http://127.0.0.1:{port}", lab.processes)
    return lab


def wait_status(client: Client, job_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} is {job['status']}, not {statuses}, after {timeout}s")


def wait_epoch(client: Client, job_id: str, epoch: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (client.get(f"/api/v1/jobs/{job_id}").json().get("progress") or {}).get("epoch", 0) >= epoch:
            return
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not reach epoch {epoch}")


def epochs_and_attempts(client: Client, job_id: str) -> tuple[list[int], list[int]]:
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    epochs = [e["data"]["epoch"] for e in events if e["type"] == "epoch"]
    attempts = [e["data"]["attempt"] for e in events if e["type"] == "status" and e["data"]["status"] == "running"]
    return epochs, attempts


@pytest.fixture(scope="module")
def cpu_lab(tmp_path_factory, make_pg_database, make_redis_url):
    lab = start_lab(
        tmp_path_factory.mktemp("cpu-lab"),
        make_pg_database,
        make_redis_url(),
        ["--queues", "cpu", "--concurrency", "1", "--name", "w1@lab"],
    )
    lab.add_worker("--queues", "cpu", "--concurrency", "1", "--name", "w2@lab")
    yield lab
    lab.stop()


@pytest.mark.parametrize("framework,preset", [("tensorflow", "mlp"), ("pytorch", "feedforward")])
def test_cancelling_a_running_job_stops_it_within_seconds(cpu_lab, framework, preset):
    client = cpu_lab.student(f"canceller-{framework}")
    job_id = client.post(
        "/api/v1/jobs",
        json={"dataset": "mnist", "framework": framework, "network": {"preset": preset}, "training": {"epochs": 50}},
    ).json()["id"]
    wait_epoch(client, job_id, 1)
    asked = time.monotonic()
    assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202
    job = wait_status(client, job_id, ("cancelled", "failed", "succeeded"), timeout=15)
    assert job["status"] == "cancelled" and time.monotonic() - asked < 5
    assert job["progress"]["epoch"] < 50
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    assert any(e["data"].get("message", "").startswith("cancel requested by canceller") for e in events)
    follow_up = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()["id"]
    assert client.wait_for(follow_up, timeout=30)["status"] == "succeeded"  # the slot is free again


def test_a_job_past_its_time_limit_fails_with_time_limit_exceeded(cpu_lab):
    client = cpu_lab.student("slowpoke")
    cpu_lab.limits("slowpoke", max_run_time_s=2)
    job_id = client.post("/api/v1/jobs", json={**LENET, "training": {"epochs": 100}}).json()["id"]
    job = wait_status(client, job_id, ("failed", "succeeded", "cancelled"), timeout=30)
    assert job["status"] == "failed" and job["error"]["code"] == "time_limit_exceeded"
    assert "2 s" in job["error"]["message"]


def test_a_job_that_ignores_its_cancel_is_killed_after_the_grace_period(cpu_lab):
    client = cpu_lab.student("stubborn")
    # One long scikit-learn fit has no batches to stop between: only killing it ends it.
    job_id = client.post(
        "/api/v1/jobs", json={"dataset": "digits", "algorithm": "random_forest", "params": {"n_estimators": 5000}}
    ).json()["id"]
    wait_status(client, job_id, ("running",))
    time.sleep(1)
    asked = time.monotonic()
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    job = wait_status(client, job_id, ("cancelled",), timeout=15)
    assert 3 <= time.monotonic() - asked < 12  # the grace period is 3 s
    assert job["status"] == "cancelled"
    follow_up = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()["id"]
    assert client.wait_for(follow_up, timeout=60)["status"] == "succeeded"


def test_a_killed_worker_loses_nothing_the_job_resumes_on_another(cpu_lab):
    client = cpu_lab.student("survivor")
    job_id = client.post("/api/v1/jobs", json=LENET).json()["id"]
    wait_epoch(client, job_id, 3)
    cpu_lab.kill_worker(_worker_name(cpu_lab, job_id))  # as an OOM kill or a power loss would
    job = client.wait_for(job_id, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    epochs, attempts = epochs_and_attempts(client, job_id)
    assert epochs == list(range(1, 13))  # each epoch reported once, none lost
    assert attempts == [1, 2]
    log = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    assert any("resuming from the checkpoint of epoch" in e["data"].get("message", "") for e in log)
    assert job["metrics"]["accuracy"] > 0.9


def test_a_checkpoint_left_unreadable_by_a_killed_worker_is_skipped_and_the_job_succeeds(cpu_lab):
    client = cpu_lab.student("resumer")
    job_id = client.post("/api/v1/jobs", json=LENET).json()["id"]
    wait_epoch(client, job_id, 3)  # epoch 3 reported: the checkpoints of epochs 1 and 2 are written
    name = _worker_name(cpu_lab, job_id)
    cpu_lab.kill_worker(name)
    folder = cpu_lab.home / "artifacts" / "jobs" / job_id / "checkpoints"
    kept = sorted(folder.glob("epoch-*.pt"))
    assert len(kept) >= 2, kept  # the newest two (a third for a moment); a cut write leaves only a hidden file
    newest = kept[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])  # as a dying disk write would leave it
    cpu_lab.add_worker("--queues", "cpu", "--concurrency", "1", "--name", f"{name}-replaced")

    job = client.wait_for(job_id, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    epochs, attempts = epochs_and_attempts(client, job_id)
    assert epochs == list(range(1, 13)) and attempts == [1, 2]  # each epoch reported once
    messages = [e["data"].get("message", "") for e in client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]]
    skipped = int(newest.name[6:10])
    assert any(f"checkpoint of epoch {skipped} could not be read" in m for m in messages), messages
    assert any(f"resuming from the checkpoint of epoch {skipped - 1}" in m for m in messages), messages


def _worker_name(lab: Lab, job_id: str) -> str:
    with lab.db.session() as session:
        return session.get(Job, job_id).worker


def test_a_job_whose_workers_keep_dying_fails_with_worker_lost(cpu_lab):
    client = cpu_lab.student("unlucky")
    job_id = client.post("/api/v1/jobs", json={**LENET, "training": {"epochs": 200}}).json()["id"]
    for attempt in (1, 2):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] == "running" and job["attempt"] == attempt:
                break
            time.sleep(0.1)
        name = _worker_name(cpu_lab, job_id)
        cpu_lab.kill_worker(name)
        cpu_lab.add_worker("--queues", "cpu", "--concurrency", "1", "--name", f"{name}-again{attempt}")
    job = wait_status(client, job_id, ("failed", "succeeded"), timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert job["attempt"] == 2


def test_fair_share_lets_other_students_in_before_a_heavy_user(tmp_path, make_pg_database, make_redis_url):
    lab = start_lab(tmp_path, make_pg_database, make_redis_url(), ["--queues", "gpu", "--name", "gpu0@lab"])
    try:
        anna, ben, cleo = (lab.student(n) for n in ("anna", "ben", "cleo"))
        spec = {
            "dataset": "digits",
            "framework": "pytorch",
            "network": {"preset": "feedforward"},
            "training": {"epochs": 2},
            "device": "gpu",
        }
        anna_jobs = [anna.post("/api/v1/jobs", json=spec).json()["id"] for _ in range(20)]
        # Her first job may already have started, freeing a queued place: submit until the limit answers.
        for _ in range(3):
            over = anna.post("/api/v1/jobs", json=spec)
            if over.status_code != 201:
                break
            anna_jobs.append(over.json()["id"])
        assert over.status_code == 429 and "queued-jobs limit" in over.json()["error"]["message"]
        assert over.json()["error"]["details"]["limit"] == "max_queued"
        ben_job = ben.post("/api/v1/jobs", json=spec).json()["id"]
        cleo_job = cleo.post("/api/v1/jobs", json=spec).json()["id"]
        assert ben.get(f"/api/v1/jobs/{ben_job}").json()["position"] <= 2
        started = {}
        for client, job_id in ((ben, ben_job), (cleo, cleo_job)):
            started[job_id] = client.wait_for(job_id, timeout=120)["started_at"]
        third = anna.get(f"/api/v1/jobs/{anna_jobs[2]}").json()
        assert third["started_at"] is None or third["started_at"] > max(started.values())
        for job_id in anna_jobs:
            anna.post(f"/api/v1/jobs/{job_id}/cancel")
    finally:
        lab.stop()


def test_restarting_redis_loses_no_queued_job(tmp_path, make_pg_database):
    server = RedisServer()
    lab = start_lab(
        tmp_path,
        make_pg_database,
        server.url,
        ["--queues", "cpu", "--concurrency", "2"],
        LABTRAIN_MAX_QUEUED="100",
    )
    try:
        client = lab.student("many")
        ids = [
            client.post("/api/v1/jobs", json={"dataset": "wine", "algorithm": "svm"}).json()["id"] for _ in range(50)
        ]
        server.stop()  # Redis goes away, and everything it held with it
        time.sleep(2)
        server.start()
        jobs = [client.wait_for(job_id, timeout=180) for job_id in ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * 50
        assert {j["attempt"] for j in jobs} == {1}  # each ran exactly once
        assert all(epochs_and_attempts(client, j["id"])[1] == [1] for j in jobs[:10])
    finally:
        lab.stop()
        server.stop()
