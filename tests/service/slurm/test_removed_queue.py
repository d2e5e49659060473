"""A SLURM queue an admin removes from LABTRAIN_QUEUES while SLURM holds jobs of it (the test
cluster, tests/support/slurm_cluster.py): the dispatcher, restarted without any SLURM queue,
still reconciles them: a running one is scancelled once cancelled, and one SLURM had not started
is scancelled and waits in labtrain's queue for an admin."""

from __future__ import annotations

import dataclasses
import json

import pytest

from service.core.broker import make_celery
from service.core.orm import Job, User
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from tests.support.slurm_cluster import CPU_PARTITION
from tests.support.slurm_rounds import NETWORK, NODE_ENV, job_row, rounds_until, status_is

BATCH = {"backend": "slurm", "partition": CPU_PARTITION, "depth": 2, "poll_s": 0.2, "environment": NODE_ENV}


@pytest.fixture
def settings(settings):
    """The deployment before the admin removed `batch`: what the API submits with."""
    return dataclasses.replace(settings, queues=json.dumps({"batch": BATCH}))


@pytest.fixture
def dispatchers(settings):
    """The dispatcher before, and after the restart with no SLURM queue left."""
    after = dataclasses.replace(settings, queues=None)
    return Dispatcher(settings, make_celery(settings)), Dispatcher(after, make_celery(after))


@pytest.fixture
def submit(client, alice):
    def submit(spec: dict) -> str:
        response = client.post("/api/v1/jobs", json={**spec, "queue": "batch"}, headers=alice)
        assert response.status_code == 201, response.text
        return response.json["id"]

    return submit


def test_a_running_job_of_a_removed_slurm_queue_is_still_reconciled(db, dispatchers, submit, slurm_cluster):
    before, after = dispatchers
    job_id = submit({**NETWORK, "training": {"epochs": 200, "batch_size": 32}})
    rounds_until(db, before, lambda: (job_row(db, job_id).progress or {}).get("epoch", 0) >= 1)
    slurm_id = job_row(db, job_id).backend_id
    assert after.slurm is None  # no SLURM queue configured: made for the job SLURM still runs
    rounds_until(db, after, lambda: after.slurm is not None, timeout=5)
    assert slurm_cluster.squeue()[slurm_id] == "RUNNING" and job_row(db, job_id).status == "running"
    with db.session() as session:
        job = session.get(Job, job_id)
        assert lifecycle.request_cancel(session, job, session.get(User, job.owner_id)) == "running"
    rounds_until(db, after, lambda: slurm_id not in slurm_cluster.squeue(), timeout=15)
    rounds_until(db, after, status_is(db, job_id, "cancelled", "failed", "succeeded"), timeout=15)
    assert job_row(db, job_id).status == "cancelled"
    rounds_until(db, after, lambda: job_row(db, job_id).backend_id is None, timeout=15)  # SLURM's end seen
    rounds_until(db, after, lambda: after.slurm is None, timeout=5)  # nothing left to follow there


def test_a_job_slurm_had_not_started_comes_back_to_wait_for_an_admin(db, dispatchers, submit, slurm_cluster):
    before, after = dispatchers
    slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=down")  # nothing starts
    try:
        job_id = submit({"dataset": "iris", "algorithm": "knn", "device": "cpu"})
        rounds_until(db, before, lambda: job_row(db, job_id).backend_id is not None, timeout=10)
        slurm_id = job_row(db, job_id).backend_id
        assert slurm_cluster.squeue()[slurm_id] == "PENDING"
        rounds_until(db, after, lambda: slurm_id not in slurm_cluster.squeue(), timeout=15)
        rounds_until(db, after, lambda: job_row(db, job_id).backend_id is None, timeout=15)
    finally:
        slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=up")
    job = job_row(db, job_id)
    assert (job.status, job.queue, job.released_at) == ("queued", "batch", None)
