"""One SLURM job running several small labtrain jobs in turn (a SLURM queue's jobs_per_allocation,
service/slurm/allocations.py): the hand-over between the dispatcher and a waiting allocation,
against PostgreSQL, and a burst on the real one-node SLURM cluster."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from service.core.orm import Job, SlurmAllocation, utcnow
from service.jobs import lifecycle
from service.slurm import allocations
from service.slurm.allocations import Allocation
from tests.support.slurm_cluster import CPU_PARTITION
from tests.support.slurm_rounds import job_row, rounds_until, slurm_dispatcher

IRIS = {"dataset": "iris", "algorithm": "knn", "device": "cpu"}
SHAPE = "--cpus-per-task=1\n--mem=2048M"


def _allocation(db, slurm_id: str, ends_in_s: float = 3600, state: str = allocations.IDLE) -> None:
    with db.session() as session:
        allocations.record(session, slurm_id, "cpu", SHAPE, max_jobs=4, wait_s=5)
        session.flush()
        row = session.get(SlurmAllocation, slurm_id)
        row.state, row.ends_at, row.jobs_run = state, utcnow() + timedelta(seconds=ends_in_s), 1


def _hand(db, job_id: str, shape: str = SHAPE, needs_s: int = 600) -> str | None:
    """What the dispatcher's submit does for a job of `shape` needing `needs_s` of --time."""
    with db.session() as session:
        slurm_id = allocations.hand_over(session, "cpu", shape, needs_s, utcnow())
        if slurm_id:
            job = session.get(Job, job_id)
            job.backend_id, job.released_at = slurm_id, utcnow()
        return slurm_id


def test_a_waiting_allocation_takes_the_job_handed_to_it(db, submit):
    _allocation(db, "9001", state=allocations.BUSY)
    allocation = Allocation(db, "9001", max_jobs=4, wait_s=10)
    taken = []
    waiting = threading.Thread(target=lambda: taken.append(allocation.next_job(lambda: False)))
    waiting.start()
    job_id = submit(IRIS)
    rounds = 0
    while _hand(db, job_id) is None:  # the allocation goes idle as its thread starts
        rounds += 1
        assert rounds < 200, "the allocation never waited"
        threading.Event().wait(0.05)
    waiting.join(timeout=10)
    assert taken == [job_id]
    with db.session() as session:
        row = session.get(SlurmAllocation, "9001")
        assert (row.state, row.jobs_run) == (allocations.BUSY, 1)


def test_an_allocation_that_stopped_waiting_takes_nothing_and_a_job_of_another_shape_or_too_long_goes_elsewhere(
    db, submit
):
    job_id = submit(IRIS)
    _allocation(db, "9002", ends_in_s=900)
    assert _hand(db, job_id, shape="--cpus-per-task=4\n--mem=2048M") is None  # other resources
    assert _hand(db, job_id, needs_s=1200) is None  # its --time ends before the job's limit would
    allocation = Allocation(db, "9002", max_jobs=4, wait_s=0.2)
    allocation.jobs_run = 1
    assert allocation.next_job(lambda: False) is None  # nothing came: it ends
    assert _hand(db, job_id) is None
    with db.session() as session:
        assert session.get(SlurmAllocation, "9002").state == allocations.ENDED


def test_an_allocation_ends_after_its_last_job_or_when_slurm_signalled(db):
    _allocation(db, "9003", state=allocations.BUSY)
    last = Allocation(db, "9003", max_jobs=2, wait_s=30)
    last.jobs_run = 1
    assert last.next_job(lambda: False) is None  # its second job was its last: no wait
    _allocation(db, "9004", state=allocations.BUSY)
    assert Allocation(db, "9004", max_jobs=4, wait_s=30).next_job(lambda: True) is None
    with db.session() as session:
        states = session.scalars(select(SlurmAllocation.state).order_by(SlurmAllocation.slurm_id)).all()
    assert states == [allocations.ENDED, allocations.ENDED]


def test_a_burst_of_small_jobs_runs_in_fewer_slurm_jobs_each_job_whole(
    db, settings, submit, slurm_cluster, alice, make_user
):
    dispatcher = slurm_dispatcher(settings, depth=1, jobs_per_allocation=4, allocation_wait_s=3)
    ben = make_user("ben")
    jobs = [submit(IRIS, headers=headers) for headers in (alice, ben) * 3]
    rounds_until(db, dispatcher, lambda: all(job_row(db, j).status in lifecycle.FINISHED for j in jobs), timeout=240)
    for job_id in jobs:
        job = job_row(db, job_id)
        assert job.status == "succeeded" and job.attempt == 1 and job.result["model_id"], job.error
    models = {job_row(db, j).result["model_id"] for j in jobs}
    assert len(models) == len(jobs)  # each job its own model
    # SLURM names a job after the labtrain job it was submitted for: the others were handed over.
    listed = slurm_cluster.run("squeue", "--noheader", "--states=all", "--format=%j|%i").stdout.split()
    ours = {slurm_id for name, slurm_id in (line.split("|") for line in listed) if name[len("labtrain-") :] in jobs}
    assert 1 <= len(ours) < len(jobs), ours
    # With no job left, each allocation ends after its wait, and the dispatcher forgets it.
    rounds_until(db, dispatcher, lambda: not set(slurm_cluster.squeue()) & ours, timeout=60)
    rounds_until(db, dispatcher, lambda: not _allocation_rows(db), timeout=10)


def test_a_job_handed_to_an_allocation_that_ended_before_taking_it_goes_in_again(db, settings, submit, slurm_cluster):
    dispatcher = slurm_dispatcher(settings, depth=1, jobs_per_allocation=4)
    # A SLURM job of labtrain's that ran and ended (as an allocation does when its wait runs out).
    gone = slurm_cluster.run(
        "sbatch",
        "--parsable",
        f"--partition={CPU_PARTITION}",
        "--job-name=labtrain-ended",
        "--output=/dev/null",
        "--wrap=true",
    ).stdout.strip()
    rounds_until(db, dispatcher, lambda: gone not in slurm_cluster.squeue(), timeout=60)
    job_id = submit(IRIS)
    _allocation(db, gone)
    with db.session() as session:  # handed to it in the instant before it ended
        job = session.get(Job, job_id)
        job.backend_id, job.released_at = gone, utcnow()
    rounds_until(db, dispatcher, lambda: job_row(db, job_id).status in lifecycle.FINISHED, timeout=120)
    job = job_row(db, job_id)
    assert job.status == "succeeded" and job.error is None  # not "SLURM ended it before it started"


def _allocation_rows(db) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(SlurmAllocation.slurm_id)))
