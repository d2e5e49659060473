"""The dispatcher with a queue on the tests' SLURM cluster, its rounds run in the test's process
(tests/service/slurm): the queue's dispatcher, a job's row as it stands, rounds until a condition."""

from __future__ import annotations

import dataclasses
import json
import time

from service.core.broker import make_celery
from service.core.orm import Job
from service.dispatcher import Dispatcher
from tests.support.slurm_cluster import CPU_PARTITION

NETWORK = {
    "dataset": "mnist",
    "framework": "pytorch",
    "network": {"preset": "feedforward"},
    "training": {"epochs": 12, "batch_size": 32},
    "device": "cpu",
}
# What the node's runner gets besides the deployment's settings: a checkpoint at each epoch's end.
NODE_ENV = {"LABTRAIN_CHECKPOINT_EVERY_S": "0", "LABTRAIN_JOB_HEARTBEAT_TIMEOUT_S": "10"}


def slurm_dispatcher(settings, **queue) -> Dispatcher:
    config = {
        "cpu": {
            "backend": "slurm",
            "partition": CPU_PARTITION,
            "depth": 2,
            "poll_s": 0.2,
            "environment": NODE_ENV,
            **queue,
        }
    }
    return Dispatcher(
        dataclasses.replace(settings, queues=json.dumps(config)), make_celery(settings), name="slurm-test"
    )


def job_row(db, job_id: str) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def rounds_until(db, dispatcher, condition, timeout: float = 120) -> None:
    """Dispatcher rounds, as its process runs them, until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            dispatcher.run_round(session)
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"not reached within {timeout} s")


def status_is(db, job_id: str, *statuses: str):
    return lambda: job_row(db, job_id).status in statuses
