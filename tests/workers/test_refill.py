"""A CPU worker's processes refill their own slots (workers/refill.py), on real processes
(PostgreSQL, Redis, the dispatcher, one worker of one slot, the API): each takes the next job as
its job ends, and a worker asked to stop finishes its job and takes no other."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from service.core.orm import Job, Worker
from tests.service.lab.test_lab_server import start_lab, wait_status

WORKER = "w1"
LONG = {"dataset": "digits", "algorithm": "random_forest", "params": {"n_estimators": 800}}  # a few seconds
SHORT = {"dataset": "iris", "algorithm": "knn"}


@pytest.fixture
def lab(tmp_path, make_pg_database, make_redis_url):
    lab = start_lab(
        tmp_path, make_pg_database, make_redis_url(), ["--queues", "cpu", "--concurrency", "1", "--name", WORKER]
    )
    yield lab
    lab.stop()


def submit(client, spec: dict) -> str:
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_process_takes_the_next_job_itself_as_its_job_ends(lab):
    client = lab.student("anna")
    first = submit(client, LONG)
    wait_status(client, first, ("running",))
    short = [submit(client, SHORT) for _ in range(3)]  # they wait for the one slot
    jobs = [client.wait_for(job_id) for job_id in [first, *short]]
    assert [(j["status"], j["attempt"]) for j in jobs] == [("succeeded", 1)] * 4, [j["error"] for j in jobs]
    for job_id in short:
        events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
        assert [e["data"]["status"] for e in events if e["type"] == "status"] == ["queued", "running", "succeeded"]
    worker_log = lab.processes[1].output()
    # The first short job waited while the long one ran: its end's refill took it, no round of the
    # dispatcher (whose safety round could take a later one between an end and its refill).
    assert f"took job {short[0]} for the slot its last job freed" in worker_log, worker_log[-3000:]


def test_a_worker_asked_to_stop_finishes_its_job_and_takes_no_other(lab):
    client = lab.student("anna")
    running = submit(client, LONG)
    wait_status(client, running, ("running",))
    waiting = submit(client, SHORT)
    worker = lab.processes[1]
    os.kill(worker.proc.pid, signal.SIGTERM)  # Celery's warm shutdown: the running job ends first
    deadline = time.monotonic() + 20
    while _registered(lab) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _registered(lab), "the worker stayed in the registry after it was asked to stop"
    assert client.get(f"/api/v1/jobs/{running}").json()["status"] == "running"
    assert client.wait_for(running)["status"] == "succeeded"
    worker.proc.wait(60)
    with lab.db.session() as session:
        left = session.get(Job, waiting)
        assert (left.status, left.released_at) == ("queued", None)  # neither refilled nor sent
    lab.add_worker("--queues", "cpu", "--concurrency", "1", "--name", "w2")
    assert client.wait_for(waiting)["status"] == "succeeded"


def _registered(lab) -> bool:
    with lab.db.session() as session:
        return session.scalar(select(Worker.name).where(Worker.name == WORKER)) is not None
