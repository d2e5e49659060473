"""SLURM jobs that run several labtrain jobs in turn (a SLURM queue's `jobs_per_allocation`).

A small job on SLURM pays SLURM's start and a Python start with its libraries (seconds), often
more than its own work. Where a queue allows it, the SLURM job that ran one job waits up to
`allocation_wait_s` for the next: the dispatcher, which still picks every job in fair-share
order, hands the next job of the same shape (partition, resources, account, QOS) to a waiting
allocation instead of sbatching it, when the allocation's --time still covers that job's own
limit. The job keeps its own claim, events, watch, limit and outcome; SLURM sees one job that
ran them, charged to the same account and QOS.

The hand-over is one guarded UPDATE each side, so an allocation that stops waiting and a
dispatcher that hands it a job cannot both win: `idle` -> `busy` (the dispatcher's) or `idle` ->
`ended` (the allocation's own).

Dispatcher side: `record`, `idle_count`, `hand_over`, `forget_ended`. Node side (`labtrain
worker run-one`): `Allocation`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.core import wakeups
from service.core.db import Database
from service.core.orm import Job, SlurmAllocation, utcnow
from service.jobs.lifecycle import QUEUED

BUSY, IDLE, ENDED = "busy", "idle", "ended"
# Per-job options: what differs between two jobs one allocation may run.
PER_JOB_OPTIONS = ("--job-name=", "--output=", "--time=")
LOOK_EVERY_S = 0.05  # how often a waiting allocation looks for the job handed to it


def shape(options: Iterable[str]) -> str:
    """What a job's sbatch options ask besides its name, output and time."""
    return "\n".join(sorted(o for o in options if not o.startswith(PER_JOB_OPTIONS)))


# -- the dispatcher's side --------------------------------------------------------------------


def record(session: Session, slurm_id: str, queue: str, job_shape: str, max_jobs: int, wait_s: float) -> None:
    """A SLURM job just submitted that may run more jobs after its first."""
    session.add(
        SlurmAllocation(
            slurm_id=slurm_id,
            queue=queue,
            shape=job_shape,
            state=BUSY,
            jobs_run=0,
            max_jobs=max_jobs,
            wait_s=wait_s,
            updated_at=utcnow(),
        )
    )


def idle_count(session: Session, queue: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(SlurmAllocation)
        .where(SlurmAllocation.queue == queue, SlurmAllocation.state == IDLE)
    )


def hand_over(session: Session, queue: str, job_shape: str, needs_s: int | None, now: datetime) -> str | None:
    """The SLURM id of a waiting allocation of this shape whose --time covers `needs_s` more
    seconds, now busy with the job (None: none). An allocation with no known end takes none."""
    if not needs_s:
        return None
    candidates = session.scalars(
        select(SlurmAllocation.slurm_id).where(
            SlurmAllocation.queue == queue,
            SlurmAllocation.state == IDLE,
            SlurmAllocation.shape == job_shape,
            SlurmAllocation.ends_at >= now + timedelta(seconds=needs_s),
        )
    ).all()
    for slurm_id in candidates:
        taken = session.execute(
            update(SlurmAllocation)
            .where(SlurmAllocation.slurm_id == slurm_id, SlurmAllocation.state == IDLE)
            .values(state=BUSY, updated_at=now)
        ).rowcount
        if taken:
            return slurm_id
    return None


def jobs_run(session: Session) -> dict[str, int]:
    """Each allocation's SLURM id and the jobs it has run."""
    return dict(session.execute(select(SlurmAllocation.slurm_id, SlurmAllocation.jobs_run)).tuples().all())


def forget_ended(session: Session, active_ids: Iterable[str]) -> None:
    """Drop the rows of allocations SLURM no longer runs (ended, or never known to it)."""
    session.execute(delete(SlurmAllocation).where(SlurmAllocation.slurm_id.not_in(list(active_ids))))


# -- the node's side --------------------------------------------------------------------------


class Allocation:
    """This SLURM job's row, for `labtrain worker run-one`: whether it may take another job, and
    waiting for the one the dispatcher hands it."""

    def __init__(self, db: Database, slurm_id: str, max_jobs: int, wait_s: float):
        self.db, self.slurm_id, self.max_jobs, self.wait_s = db, slurm_id, max_jobs, wait_s
        self.jobs_run = 0

    @classmethod
    def find(cls, db: Database, slurm_id: str | None, ends_after_s: int | None) -> Allocation | None:
        """This SLURM job's allocation, its end written down (None: it runs one job only)."""
        if not slurm_id:
            return None
        with db.session() as session:
            row = session.get(SlurmAllocation, slurm_id)
            if row is None:
                return None
            if ends_after_s:
                row.ends_at = utcnow() + timedelta(seconds=ends_after_s)
            return cls(db, slurm_id, row.max_jobs, row.wait_s)

    def next_job(self, stopping: Callable[[], bool]) -> str | None:
        """After a job: wait for the next one handed to this allocation (its id), or end and
        take no more (None) when it ran its last, `stopping()` says so, or none came in time."""
        self.jobs_run += 1
        if self.jobs_run >= self.max_jobs or stopping():
            self._end()
            return None
        with self.db.session() as session:
            session.execute(
                update(SlurmAllocation)
                .where(SlurmAllocation.slurm_id == self.slurm_id, SlurmAllocation.state == BUSY)
                .values(state=IDLE, jobs_run=self.jobs_run, updated_at=utcnow())
            )
            # The dispatcher wakes as it does for a worker coming online: a slot to fill.
            wakeups.notify(session, wakeups.WORKERS, {"worker": f"slurm-allocation:{self.slurm_id}"})
        deadline = time.monotonic() + self.wait_s
        while not stopping() and time.monotonic() < deadline:
            job_id = self._handed()
            if job_id:
                return job_id
            time.sleep(LOOK_EVERY_S)
        if self._end(only_if=IDLE):
            return None
        # The dispatcher handed it a job as it stopped waiting (its commit came first).
        job_id = self._handed()
        if job_id is None:  # cancelled since
            self._end()
        return job_id

    def _handed(self) -> str | None:
        """The job the dispatcher handed here: sent (released) with this SLURM job as its backend."""
        with self.db.session() as session:
            return session.scalar(
                select(Job.id)
                .where(Job.backend_id == self.slurm_id, Job.status == QUEUED, Job.released_at.is_not(None))
                .limit(1)
            )

    def _end(self, only_if: str | None = None) -> bool:
        """This allocation takes no more jobs; False when the dispatcher had just handed it one."""
        with self.db.session() as session:
            guard = [SlurmAllocation.slurm_id == self.slurm_id]
            if only_if:
                guard.append(SlurmAllocation.state == only_if)
            ended = session.execute(
                update(SlurmAllocation).where(*guard).values(state=ENDED, updated_at=utcnow())
            ).rowcount
        return bool(ended)
