"""What a user's jobs in a course have used: run time from start to finish (a running job's
up to now), split by queue, as `labtrain admin usage` counts device time. A search holds no
slot: its trials are jobs of their own and count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.orm import Course, Job, User, utcnow
from service.jobs import families

BUDGETED = ("gpu_hours", "cpu_hours")


def used_hours(session: Session, user: User, course: Course, now: datetime | None = None) -> dict[str, float]:
    now = now or utcnow()
    rows = session.execute(
        select(Job.queue, Job.started_at, Job.finished_at).where(
            Job.owner_id == user.id, Job.course_id == course.id, Job.started_at.is_not(None), families.takes_slot()
        )
    )
    seconds = {"gpu": 0.0, "cpu": 0.0}
    for queue, started, finished in rows:
        seconds[queue if queue in seconds else "cpu"] += max(0.0, ((finished or now) - started).total_seconds())
    return {"gpu_hours": round(seconds["gpu"] / 3600, 4), "cpu_hours": round(seconds["cpu"] / 3600, 4)}


def hours_left(budget: dict[str, Any] | None, used: dict[str, float]) -> dict[str, float | None]:
    """The budget less what was used, per kind of hours; None where the budget sets no limit."""
    budget = budget or {}
    return {
        kind: None if budget.get(kind) is None else round(max(0.0, budget[kind] - used[kind]), 4) for kind in BUDGETED
    }
