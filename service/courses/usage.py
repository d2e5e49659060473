"""What a user's jobs in a course have held since the course began: device time per kind of
hours, counted as fair share counts it (service/lab/fair_share.py): a GPU's seconds times the
share of the GPU the job held, and the attempts a job ran before it was put back in the queue
(a lost worker, a preemption) as well as the attempt running now. Jobs that hold no slot (a
search: its trials count) and jobs of families outside budgets (a scoring) are left out."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from service.core.orm import Course, Job, User, utcnow
from service.jobs import families
from service.jobs.lifecycle import QUEUED, RUNNING
from service.lab.devices import is_gpu_job

BUDGETED = ("gpu_hours", "cpu_hours")


def kind_of(queue: str, gpu_memory_mb: int | None = None) -> str:
    """The hours a job of `queue` spends: GPU-hours on a GPU queue (gpu, or a named one: the job
    holds GPU memory), CPU-hours on the others."""
    return "gpu_hours" if is_gpu_job(queue, gpu_memory_mb) else "cpu_hours"


def budgeted_families() -> list[str]:
    return [f.name for f in families.all_families() if f.takes_slot and f.budgeted]


def held_seconds(
    session: Session, since: datetime, now: datetime, *where: ColumnElement[bool]
) -> dict[tuple[str, str], float]:
    """Device-seconds per (owner id, kind of hours) between `since` and `now`, for the jobs
    `where` selects. The attempt running or ended counts its part inside the window (as
    service/lab/usage.runs); the attempts put back in the queue count in full when the job was
    made inside the window, else at most the time from `since` to the current attempt."""
    rows = session.execute(
        select(
            Job.owner_id,
            Job.queue,
            Job.status,
            Job.created_at,
            Job.started_at,
            Job.finished_at,
            Job.gpu_share,
            Job.earlier_device_s,
            Job.gpu_memory_mb,
        ).where(
            Job.family.in_(budgeted_families()),
            Job.created_at < now,
            or_(Job.started_at.is_not(None), Job.earlier_device_s > 0),
            or_(Job.finished_at.is_(None), Job.finished_at >= since),
            *where,
        )
    )
    held: dict[tuple[str, str], float] = defaultdict(float)
    for owner, queue, status, created, started, finished, share, earlier, gpu_memory_mb in rows:
        seconds = 0.0
        # A queued job's start (if any) is stale: it has no attempt running.
        if started is not None and status != QUEUED and (finished is not None or status == RUNNING):
            seconds = max(0.0, (min(finished or now, now) - max(started, since)).total_seconds())
            seconds *= share if share is not None else 1.0
        if earlier:
            before = started if started is not None and status != QUEUED else now
            seconds += earlier if created >= since else min(earlier, max(0.0, (before - since).total_seconds()))
        held[(owner, kind_of(queue, gpu_memory_mb))] += seconds
    return held


def used_hours(session: Session, user: User, course: Course, now: datetime | None = None) -> dict[str, float]:
    """The hours the user's jobs in the course held this term, by kind."""
    held = held_seconds(
        session, course.created_at, now or utcnow(), Job.owner_id == user.id, Job.course_id == course.id
    )
    return {kind: round(held.get((user.id, kind), 0.0) / 3600, 4) for kind in BUDGETED}


def hours_left(budget: dict[str, Any] | None, used: dict[str, float]) -> dict[str, float | None]:
    """The budget less what was used, per kind of hours; None where the budget sets no limit."""
    budget = budget or {}
    return {
        kind: None if budget.get(kind) is None else round(max(0.0, budget[kind] - used[kind]), 4) for kind in BUDGETED
    }
