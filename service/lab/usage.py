"""Device usage per user and queue over a window of time (`labtrain admin usage`, a course's use)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from service.core.orm import Job, User
from service.jobs import families
from service.jobs.lifecycle import RUNNING


def device_usage(session: Session, since: datetime, now: datetime) -> list[dict[str, Any]]:
    """Device-hours per user and queue between `since` and `now` (see `runs`)."""
    totals: dict[tuple[str, str], list[float]] = {}
    for user, queue, seconds in runs(session, since, now):
        total = totals.setdefault((user, queue), [0, 0.0])
        total[0] += 1
        total[1] += seconds
    return [
        {"user": user, "queue": queue, "jobs": jobs, "device_hours": round(seconds / 3600, 4)}
        for (user, queue), (jobs, seconds) in sorted(totals.items())
    ]


def runs(
    session: Session, since: datetime, now: datetime, *where: ColumnElement[bool]
) -> Iterator[tuple[str, str, float]]:
    """(user name, queue, seconds) of each job's run between `since` and `now`, for the jobs
    `where` selects: from `started_at` to `finished_at` (a running job's up to now), the part
    inside the window. A job that holds no slot (a search: its trials are jobs of their own and
    count) is left out."""
    rows = session.execute(
        select(User.name, Job.queue, Job.started_at, Job.finished_at)
        .join(User, User.id == Job.owner_id)
        .where(
            families.takes_slot(),
            Job.started_at.is_not(None),
            Job.started_at < now,
            or_(Job.finished_at >= since, Job.finished_at.is_(None) & (Job.status == RUNNING)),
            *where,
        )
    )
    for user, queue, started, finished in rows:
        seconds = (min(finished or now, now) - max(started, since)).total_seconds()
        if seconds > 0:
            yield user, queue, seconds
