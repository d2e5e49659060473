"""Where queued jobs stand: their place in their queue (fair share's order) and an estimated
start, from the queue's worker slots and how long its recent jobs ran. An estimate, not a
promise: null when the queue has no worker online or no finished job to go by, and for a queue no
longer configured, whose jobs no round sends (service/lab/removed_queues.py). A job labtrain has
submitted to SLURM, which holds it pending, starts when SLURM's scheduler expects (`squeue
--start`), where it says: the dispatcher keeps those on the partition's worker row."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core import queues
from service.core.config import Settings
from service.core.orm import Job
from service.jobs import families
from service.jobs.lifecycle import FAILED, SUCCEEDED
from service.lab import worker_registry
from service.lab.fair_share import queue_order

RECENT_JOBS = 50  # the finished jobs whose run times the estimate takes the median of
# A worker row's capabilities key: job id -> {"slurm_id", "start"} (service/slurm/starts.py).
BACKEND_STARTS = "slurm_starts"


@dataclass(frozen=True)
class Place:
    position: int | None  # 1: the next job its queue starts
    estimated_start: datetime | None


def places(session: Session, settings: Settings, jobs: Iterable[Job], now: datetime) -> dict[str, Place]:
    """The place of each queued job, by id: one fair-share ordering per queue they are in."""
    jobs = list(jobs)
    found: dict[str, Place] = {}
    online = worker_registry.online(session) if jobs else []
    configured = queues.catalog(settings)
    for queue in sorted({job.queue for job in jobs}):
        if queue not in configured:  # no place: nothing sends them
            found.update({job.id: Place(None, None) for job in jobs if job.queue == queue})
            continue
        order = {job_id: index for index, job_id in enumerate(queue_order(session, queue, settings), start=1)}
        slots = sum(worker.concurrency for worker in online if worker.serves(queue))
        run_s = median_run_s(session, queue)
        planned = _backend_starts(worker for worker in online if worker.serves(queue))
        for job in jobs:
            if job.queue != queue:
                continue
            position = order.get(job.id)
            start = None
            if position is not None and slots and run_s is not None:
                start = now + timedelta(seconds=position / slots * run_s)
            known = planned.get(job.id)
            if known and job.released_at is not None and job.backend_id == known.get("slurm_id"):
                start = _time(known.get("start")) or start  # this submission's, as SLURM plans it
            found[job.id] = Place(position, start)
    return found


def _backend_starts(workers: Iterable) -> dict[str, dict[str, str]]:
    planned: dict[str, dict[str, str]] = {}
    for worker in workers:
        starts = (worker.capabilities or {}).get(BACKEND_STARTS)
        if isinstance(starts, dict):
            planned.update(starts)
    return planned


def _time(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def median_run_s(session: Session, queue: str) -> float | None:
    """The median run time of the queue's last finished jobs, in seconds (None: none finished)."""
    rows = session.execute(
        select(Job.started_at, Job.finished_at)
        .where(
            Job.queue == queue,
            families.takes_slot(),
            Job.status.in_((SUCCEEDED, FAILED)),
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
        .order_by(Job.finished_at.desc())
        .limit(RECENT_JOBS)
    ).all()
    runs = [(finished - started).total_seconds() for started, finished in rows]
    return statistics.median(runs) if runs else None
