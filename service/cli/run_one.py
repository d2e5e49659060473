"""`labtrain worker run-one JOB_ID`: one job on a node SLURM gave it (service/slurm), then exit.

It claims the job as a Celery worker's task would (the runner's guarded claim: a submission
that is no longer the job's claims nothing), heartbeats, runs it and records its outcome. A
signal from SLURM (SIGUSR1 from --signal, SIGTERM on preemption or a node going down) is a
yield: the job checkpoints at its next epoch's end and goes back to labtrain's queue, the
attempt given back. Near its --time end a signal is SLURM's time limit, not a yield: the job's
own watch, or the dispatcher reading SLURM's TIMEOUT, ends it.

Where the queue reuses allocations (`jobs_per_allocation`, service/slurm/allocations.py), it then
waits briefly for the next job the dispatcher hands this SLURM job, and runs it the same way,
until it has run its last, none comes, or SLURM signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import click
from sqlalchemy import select, update

from service.core.config import Settings
from service.core.db import Database
from service.core.orm import Job
from service.data.fetch import install_subset
from service.jobs.lifecycle import RUNNING
from service.slurm.allocations import Allocation
from workers import batch_signal
from workers.runner import JobRunner

log = logging.getLogger("labtrain.worker")
# SLURM may send --signal's signal up to a minute early, and checks time limits about every 30 s.
SLURM_TIMING_SLACK_S = 90


@click.command("run-one")
@click.argument("job_id")
@click.option("--worker-name", default="slurm", show_default=True, help="the worker's name on the job's events")
@click.option("--ends-after-s", type=int, default=None, help="the job's --time, in seconds")
@click.option("--signal-grace-s", type=int, default=0, help="how early SLURM signals before --time ends")
def run_one(job_id: str, worker_name: str, ends_after_s: int | None, signal_grace_s: int) -> None:
    """Run one job in this process (a SLURM batch job's command; with an allocation, the ones
    handed to it after), then exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    started = time.monotonic()
    settings = Settings.from_env()
    install_subset(settings.data_dir)  # a node with a data directory of its own reads mnist from it
    db = Database(settings.database_url)
    slurm_id = os.environ.get("SLURM_JOB_ID")
    node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
    name = f"{worker_name}@{node}"
    allocation = Allocation.find(db, slurm_id, ends_after_s)
    signalled = threading.Event()
    current = [job_id]  # the job running now, which a signal asks to yield
    near_end = (ends_after_s - signal_grace_s - SLURM_TIMING_SLACK_S) if ends_after_s else None

    def on_signal(*_) -> None:
        # Known at once in this process (the code job's supervisor reads it as its program ends);
        # the database hears it from the thread below.
        near = near_end is not None and time.monotonic() - started >= near_end
        batch_signal.ask(batch_signal.ENDING if near else batch_signal.YIELD)
        signalled.set()

    for signum in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(signum, on_signal)
    yielder = threading.Thread(
        target=_yield_when_signalled, args=(db, current, name, signalled, started, near_end), daemon=True
    )
    yielder.start()
    runner = JobRunner(settings, db, name)
    try:
        while current[0]:
            _run(db, runner, current[0], slurm_id)
            current[0] = allocation.next_job(signalled.is_set) if allocation else None
    finally:
        db.dispose()
    _exit_at_once()


def _run(db: Database, runner: JobRunner, job_id: str, slurm_id: str | None) -> None:
    if slurm_id and not _still_this_submission(db, job_id, slurm_id):
        log.info("job %s is no longer SLURM job %s's to run", job_id, slurm_id)
        return
    status = runner.run(job_id)  # which names the job on its log lines itself
    log.info("job %s: %s", job_id, status or "not claimed by this run")


def _exit_at_once() -> None:
    """The job's outcome is committed and its log closed: the process ends without the
    interpreter's teardown, which frees scikit-learn's and PyTorch's modules one by one (0.8 s of
    CPU a job, measured) while SLURM still holds the job's CPUs. Output is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _still_this_submission(db: Database, job_id: str, slurm_id: str) -> bool:
    with db.session() as session:
        return session.scalar(select(Job.backend_id).where(Job.id == job_id)) == slurm_id


def _yield_when_signalled(
    db: Database, current: list, name: str, signalled: threading.Event, started: float, near_end: float | None
) -> None:
    """Off the signal handler (which may interrupt a database call), ask the running job to yield:
    its watch reads preempt_requested as it reads the dispatcher's own requests."""
    signalled.wait()
    job_id = current[0]
    if job_id is None:
        return
    if near_end is not None and time.monotonic() - started >= near_end:
        log.warning("job %s: SLURM's time limit is near; the job is not yielding", job_id)
        return
    with db.session() as session:
        asked = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == RUNNING, Job.worker == name, Job.cancel_requested.is_(False))
            .values(preempt_requested=True)
        ).rowcount
    log.info(
        "job %s: SLURM signalled it; %s", job_id, "yielding at its next checkpoint" if asked else "nothing to yield"
    )
