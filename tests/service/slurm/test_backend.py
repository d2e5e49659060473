"""The dispatcher with a queue on a real SLURM cluster (tests/support/slurm_cluster.py): jobs
submitted through the API in process, the dispatcher's rounds run here, and each job run on the
node by `labtrain worker run-one` against the same PostgreSQL database."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select

from service.core.orm import Job, JobEvent, User, Worker, utcnow
from service.dispatcher import run_forever
from service.jobs import lifecycle
from service.lab import queue_estimates
from service.sandbox import cgroups
from service.slurm import starts
from tests.support.labs import host_processes_with
from tests.support.slurm_cluster import CPU_PARTITION, NODE
from tests.support.slurm_rounds import NETWORK, job_row, rounds_until, slurm_dispatcher, status_is


def epochs_and_attempts(db, job_id: str) -> tuple[list[int], list[int]]:
    with db.session() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)).all()
        epochs = [e.data["epoch"] for e in events if e.type == "epoch"]
        attempts = [e.data["attempt"] for e in events if e.type == "status" and e.data["status"] == "running"]
        return epochs, attempts


def test_a_classic_job_on_a_slurm_queue_runs_on_the_node(db, settings, submit, slurm_cluster):
    dispatcher = slurm_dispatcher(settings)
    job_id = submit({"dataset": "iris", "algorithm": "knn", "device": "cpu"})
    with db.session() as session:
        assert dispatcher.run_round(session) == [job_id]
    slurm_id = job_row(db, job_id).backend_id
    shown = slurm_cluster.job(slurm_id)
    assert shown["JobName"] == f"labtrain-{job_id}" and shown["Partition"] == CPU_PARTITION
    assert shown["TimeLimit"] == "1-00:02:00"  # the job's 24 h, its stop's grace and a margin, in minutes
    rounds_until(db, dispatcher, status_is(db, job_id, "succeeded", "failed"))
    job = job_row(db, job_id)
    assert job.status == "succeeded", job.error
    assert job.worker == f"slurm:{CPU_PARTITION}@{NODE}" and job.result["model_id"]
    rounds_until(db, dispatcher, lambda: job_row(db, job_id).backend_id is None)  # SLURM's end seen
    assert slurm_cluster.job(slurm_id)["JobState"] == "COMPLETED"
    with db.session() as session:  # the partition and its node in the worker registry
        worker = session.get(Worker, f"slurm:{CPU_PARTITION}")
        assert worker.queues == "cpu" and worker.host == NODE and worker.concurrency == 2
        assert worker.capabilities["nodes"][0]["name"] == NODE


def test_slurm_holds_only_the_queues_depth_and_a_cancel_is_an_scancel(db, settings, submit, slurm_cluster):
    dispatcher = slurm_dispatcher(settings, depth=1)
    slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=down")  # nothing starts
    try:
        jobs = [submit({"dataset": "iris", "algorithm": "knn", "device": "cpu"}) for _ in range(3)]
        for _ in range(3):
            with db.session() as session:
                dispatcher.run_round(session)
        submitted = [j for j in jobs if job_row(db, j).backend_id]
        assert len(submitted) == 1  # depth 1: one waits in SLURM, the others in labtrain's queue
        slurm_id = job_row(db, submitted[0]).backend_id
        assert slurm_cluster.squeue()[slurm_id] == "PENDING"
        with db.session() as session:
            job = session.get(Job, submitted[0])
            assert lifecycle.request_cancel(session, job, session.get(User, job.owner_id)) == "cancelled"
        rounds_until(db, dispatcher, lambda: slurm_id not in slurm_cluster.squeue(), timeout=10)
        next_one = [j for j in jobs if j != submitted[0] and job_row(db, j).backend_id]
        assert len(next_one) == 1  # its slot went to the next job
    finally:
        slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=up")


def wait_epoch(db, job_id: str, epoch: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (job_row(db, job_id).progress or {}).get("epoch", 0) >= epoch:
            return
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not reach epoch {epoch}: {job_row(db, job_id).status}")


def test_cancelling_a_running_job_ends_its_slurm_job_within_seconds(db, settings, submit, slurm_cluster):
    dispatcher = slurm_dispatcher(settings)
    job_id = submit({**NETWORK, "training": {"epochs": 200, "batch_size": 32}})
    rounds_until(db, dispatcher, lambda: (job_row(db, job_id).progress or {}).get("epoch", 0) >= 1)
    slurm_id = job_row(db, job_id).backend_id
    assert slurm_cluster.squeue()[slurm_id] == "RUNNING"
    with db.session() as session:
        job = session.get(Job, job_id)
        assert lifecycle.request_cancel(session, job, session.get(User, job.owner_id)) == "running"
    rounds_until(db, dispatcher, lambda: slurm_id not in slurm_cluster.squeue(), timeout=15)
    rounds_until(db, dispatcher, status_is(db, job_id, "cancelled", "failed", "succeeded"), timeout=15)
    assert job_row(db, job_id).status == "cancelled"


def test_a_job_past_its_slurm_time_limit_fails_naming_it(db, settings, submit, slurm_cluster):
    dispatcher = slurm_dispatcher(settings, max={"time_limit_s": 60})
    job_id = submit({**NETWORK, "training": {"epochs": 1000, "batch_size": 32}})
    with db.session() as session:
        dispatcher.run_round(session)
    slurm_id = job_row(db, job_id).backend_id
    assert slurm_cluster.job(slurm_id)["TimeLimit"] == "00:01:00"  # the queue's largest, under the job's 24 h
    rounds_until(db, dispatcher, status_is(db, job_id, "running"))
    # SLURM's limits are whole minutes, looked at every 30 s: an admin's EndTime brings the same
    # limit's end to now (its TimeLimit stays), and the job ends within those 30 s.
    slurm_cluster.end_soon(slurm_id)
    rounds_until(db, dispatcher, status_is(db, job_id, "failed", "succeeded"), timeout=90)
    job = job_row(db, job_id)
    assert job.status == "failed" and job.error_code == "time_limit_exceeded", (job.status, job.error)
    assert "--time=1 min" in job.error and slurm_id in job.error
    assert slurm_cluster.job(slurm_id)["JobState"] == "TIMEOUT"
    assert epochs_and_attempts(db, job_id)[1] == [1]  # failed, not run again


# A student's script that runs on until something stops it; the second ignores SIGTERM, as a
# script may that wants to finish its epoch whatever happens.
ENDLESS = b"""
import time
open("outputs/progress.txt", "w").write("epoch 1 done")
print("looping until stopped", flush=True)
while True:
    time.sleep(0.2)
"""
IGNORES_SIGTERM = b"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open("outputs/progress.txt", "w").write("epoch 1 done")
print("looping until stopped", flush=True)
while True:
    time.sleep(0.2)
"""


@pytest.mark.parametrize("script", [ENDLESS, IGNORES_SIGTERM], ids=["dies-of-sigterm", "ignores-sigterm"])
def test_a_code_job_at_its_slurm_time_limit_fails_with_its_sandbox_gone(
    db, settings, client, alice, submit, slurm_cluster, script
):
    # No --signal: SLURM's SIGTERM at the end (then SIGKILL after KillWait) is all the job hears.
    dispatcher = slurm_dispatcher(settings, max={"time_limit_s": 60}, sandbox="bubblewrap", signal_grace_s=0)
    source = client.post(
        "/api/v1/sources",
        data={"file": (io.BytesIO(script), "endless.py")},
        headers=alice,
        content_type="multipart/form-data",
    )
    assert source.status_code == 201, source.get_json()
    marker = f"until-stopped-{uuid.uuid4().hex}"  # on the program's command line
    job_id = submit({"code": {"source": source.get_json()["id"], "args": [marker]}, "device": "cpu"})

    def log() -> str:
        return client.get(f"/api/v1/jobs/{job_id}/log", headers=alice).get_data(as_text=True)

    rounds_until(db, dispatcher, lambda: "looping until stopped" in log())
    slurm_id = job_row(db, job_id).backend_id
    assert host_processes_with(marker), "the sandboxed program is not running"
    slurm_cluster.end_soon(slurm_id)
    rounds_until(db, dispatcher, status_is(db, job_id, "failed", "succeeded", "queued"), timeout=90)
    job = job_row(db, job_id)
    assert job.status == "failed" and job.error_code == "time_limit_exceeded", (job.status, job.error, log()[-2000:])
    rounds_until(db, dispatcher, lambda: slurm_id not in slurm_cluster.squeue(), timeout=30)
    assert slurm_cluster.job(slurm_id)["JobState"] == "TIMEOUT"
    assert epochs_and_attempts(db, job_id)[1] == [1]  # not run again
    job = job_row(db, job_id)
    assert job.attempt == 1 and job.preemptions == 0  # its attempt not given back
    # The runner recorded it before SLURM's SIGKILL: the log says so, and nothing of the sandbox is left.
    assert f"SLURM's time limit (--time) ended the job (SLURM job {slurm_id})" in log(), log()[-2000:]
    if script == IGNORES_SIGTERM:  # alive after SLURM's SIGTERM: the runner killed it
        assert "the script gets SIGTERM, then is killed" in log(), log()[-2000:]
    kept = client.get(f"/api/v1/jobs/{job_id}/artifacts/progress.txt", headers=alice)
    assert kept.status_code == 200 and kept.get_data(as_text=True) == "epoch 1 done"  # its outputs kept
    assert host_processes_with(marker) == []
    assert job_id not in Path("/proc/self/mountinfo").read_text()  # the job's own disk unmounted
    assert not [p for p in cgroups.shared().parents.values() if (p / f"{job_id}-1").exists()]  # its cgroup


def test_a_node_set_down_mid_job_brings_the_job_back_from_its_checkpoint(
    db, settings, client, alice, submit, slurm_cluster
):
    dispatcher = slurm_dispatcher(settings)
    # Digits' short epochs, each one's checkpoint kept: the node goes down at the third of 16 (the
    # dozen left are seconds for it to go down before the job would end).
    job_id = submit({**NETWORK, "dataset": "digits", "training": {"epochs": 16, "batch_size": 32}})
    rounds_until(db, dispatcher, lambda: (job_row(db, job_id).progress or {}).get("epoch", 0) >= 3)
    first = job_row(db, job_id).backend_id
    slurm_cluster.set_node("down")
    try:
        # Back in labtrain's queue and submitted again: SLURM holds it until the node returns.
        rounds_until(db, dispatcher, lambda: job_row(db, job_id).backend_id not in (None, first), timeout=60)
        second = job_row(db, job_id).backend_id
        assert slurm_cluster.squeue()[second] == "PENDING"
        assert slurm_cluster.job(first)["JobState"] in ("NODE_FAIL", "CANCELLED", "COMPLETED")
    finally:
        slurm_cluster.set_node("resume")
    rounds_until(db, dispatcher, status_is(db, job_id, "succeeded", "failed", "cancelled"), timeout=240)
    job = job_row(db, job_id)
    assert job.status == "succeeded", job.error
    epochs, attempts = epochs_and_attempts(db, job_id)
    assert epochs == list(range(1, 17))  # each epoch reported once: the second run resumed
    assert len(attempts) == 2
    with db.session() as session:
        requeued = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "status")).all()
        reasons = [e.data.get("reason") for e in requeued if e.data["status"] == "queued" and "reason" in e.data]
    assert reasons and (reasons[0] == "preempted" or "NODE_FAIL" in reasons[0]), reasons
    # The network it trained on the node, resumed there, predicts in the API.
    digits = load_digits()
    answer = client.post(
        f"/api/v1/models/{job.result['model_id']}/predict",
        headers=alice,
        json={"instances": digits.images[:100].tolist()},
    )
    assert answer.status_code == 200, answer.get_json()
    assert np.mean(np.array(answer.get_json()["predictions"]) == digits.target[:100]) > 0.8


def test_fair_share_holds_across_the_backend_two_students_jobs_alternate(
    db, settings, submit, slurm_cluster, make_user
):
    dispatcher = slurm_dispatcher(settings, depth=4)
    ben = make_user("ben")
    slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=down")
    try:
        spec = {"dataset": "iris", "algorithm": "knn", "device": "cpu"}
        anna_jobs = [submit(spec) for _ in range(2)]
        ben_jobs = [submit(spec, headers=ben) for _ in range(2)]
        with db.session() as session:
            released = dispatcher.run_round(session)
        assert sorted(released) == sorted(anna_jobs + ben_jobs)
        # SLURM's ids follow the order labtrain submitted them in: the students take turns.
        by_slurm_id = sorted(released, key=lambda j: int(job_row(db, j).backend_id))
        owners = ["anna" if j in anna_jobs else "ben" for j in by_slurm_id]
        assert owners in (["anna", "ben"] * 2, ["ben", "anna"] * 2), owners
    finally:
        slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=up")
    rounds_until(db, dispatcher, lambda: all(job_row(db, j).status == "succeeded" for j in released), timeout=180)
    starts = sorted(released, key=lambda j: job_row(db, j).started_at)
    started_owners = ["anna" if j in anna_jobs else "ben" for j in starts]
    assert started_owners[:2] in (["anna", "ben"], ["ben", "anna"])  # SLURM started them as they came


def test_a_job_slurm_holds_pending_gets_slurms_expected_start(db, settings, client, alice, submit, slurm_cluster):
    dispatcher = slurm_dispatcher(settings)
    other = slurm_cluster.fill_node(minutes=10)  # SLURM plans labtrain's job after it
    try:
        job_id = submit({"dataset": "iris", "algorithm": "knn", "device": "cpu"})
        rounds_until(db, dispatcher, lambda: job_row(db, job_id).backend_id is not None)
        slurm_id = job_row(db, job_id).backend_id

        def planned() -> datetime | None:
            return starts.parse_time(slurm_cluster.job(slurm_id).get("StartTime", ""))

        rounds_until(db, dispatcher, lambda: planned() is not None, timeout=60)
        rounds_until(db, dispatcher, lambda: True)  # one more poll: the partition's row has it
        expected = planned()
        assert expected - utcnow() > timedelta(minutes=5)  # after the other job's ten minutes
        with db.session() as session:
            place = queue_estimates.places(session, settings, [session.get(Job, job_id)], utcnow())[job_id]
        assert place.estimated_start == expected and place.position == 1
        # What the student sees: GET /api/v1/me (a research user: the top-level queue).
        [queued] = client.get("/api/v1/me", headers=alice).json["queue"]
        assert queued["id"] == job_id and queued["estimated_start"] == expected.isoformat().replace("+00:00", "Z")
    finally:
        slurm_cluster.run("scancel", other)
    rounds_until(db, dispatcher, status_is(db, job_id, "succeeded", "failed", "cancelled"), timeout=120)
    assert job_row(db, job_id).status == "succeeded"
    with db.session() as session:  # started: no estimate left on the partition's row
        row = session.get(Worker, f"slurm:{CPU_PARTITION}")
        assert row.capabilities[queue_estimates.BACKEND_STARTS] == {}


def test_the_dispatcher_refuses_to_start_on_a_partition_slurm_does_not_have(settings, slurm_cluster):
    stop = threading.Event()
    stop.set()  # checked, then no round
    bad = dataclasses.replace(settings, queues=json.dumps({"gpu": {"backend": "slurm", "partition": "nosuch"}}))
    message = "LABTRAIN_QUEUES.gpu.partition: SLURM has no partition 'nosuch' for queue gpu (its partitions: "
    with pytest.raises(ValueError, match=re.escape(message) + ".*labcpu"):
        run_forever(bad, stop)
    good = dataclasses.replace(settings, queues=json.dumps({"cpu": {"backend": "slurm", "partition": CPU_PARTITION}}))
    run_forever(good, stop)
