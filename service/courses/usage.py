"""What a user's jobs in a course have used since the course began: device time per queue,
counted as `labtrain admin usage` counts it (service/lab/usage.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.core.orm import Course, Job, User, utcnow
from service.lab.usage import runs

BUDGETED = ("gpu_hours", "cpu_hours")


def used_hours(session: Session, user: User, course: Course, now: datetime | None = None) -> dict[str, float]:
    seconds = {"gpu": 0.0, "cpu": 0.0}
    in_course = (Job.owner_id == user.id, Job.course_id == course.id)
    for _user, queue, run in runs(session, course.created_at, now or utcnow(), *in_course):
        seconds[queue if queue in seconds else "cpu"] += run
    return {"gpu_hours": round(seconds["gpu"] / 3600, 4), "cpu_hours": round(seconds["cpu"] / 3600, 4)}


def hours_left(budget: dict[str, Any] | None, used: dict[str, float]) -> dict[str, float | None]:
    """The budget less what was used, per kind of hours; None where the budget sets no limit."""
    budget = budget or {}
    return {
        kind: None if budget.get(kind) is None else round(max(0.0, budget[kind] - used[kind]), 4) for kind in BUDGETED
    }
