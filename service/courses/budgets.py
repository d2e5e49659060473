"""A student's budget in a course, and why a queued job waits for it.

The budget is the course's hours per student (`Course.budget`: gpu_hours, cpu_hours, null:
no limit) plus the hours the instructors granted that student (`CourseGrant` rows add up);
what is used is what their jobs in the course held this term (service/courses/usage.py).
`week_gpu_hours` caps the GPU-hours held since Monday 00:00 UTC. A budget holds a job of a
budgeted family (a scoring is not) in a course whose owner is a student there: not also an
instructor or TA there, and not an admin. A job whose hours of its kind are spent waits
queued (the dispatcher skips it and writes why in `Job.waiting`); one that no budget could
ever cover (0 hours in all) is refused when it is submitted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core import wakeups
from service.core.errors import SpecError
from service.core.orm import AuditEntry, Course, CourseGrant, CourseMember, Job, User, utcnow
from service.courses.roles import STAFF, STUDENT
from service.courses.usage import BUDGETED, held_seconds, hours_left, kind_of
from service.jobs import families
from service.lab.devices import gpu_jobs

LABELS = {"gpu_hours": "GPU-hours", "cpu_hours": "CPU-hours"}
WEEK_CAP = "week_gpu_hours"


def week_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of the week `now` is in: when a weekly cap starts again."""
    day = now.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)


def number(hours: float) -> str:
    return f"{max(0.0, round(hours, 2)):g}"


@dataclass
class Standing:
    """One student's budget in one course: hours per kind (None: no limit)."""

    course_budget: dict[str, Any] | None  # the course's hours per student (null: no limit)
    budget: dict[str, float | None]  # the course's hours plus the grants, by kind
    granted: dict[str, float]
    used: dict[str, float]
    week: dict[str, Any] | None  # {"cap", "used", "left", "resets_at"} where the course caps weeks
    week_resets: datetime | None = None

    @property
    def left(self) -> dict[str, float | None]:
        return hours_left(self.budget, self.used)

    def waiting(self, kind: str) -> dict[str, str] | None:
        """Why a job spending `kind` waits, or None when its budget covers it."""
        total, left = self.budget[kind], self.left[kind]
        if total is not None and left is not None and left <= 0:
            message = f"budget: {number(left)} of {number(total)} {LABELS[kind]} left this term"
            return {"reason": "budget", "message": message}
        if kind == "gpu_hours" and self.week is not None and self.week["left"] <= 0:
            resets = self.week_resets.strftime("%a %Y-%m-%d %H:%M UTC")
            message = f"budget: 0 of {number(self.week['cap'])} GPU-hours left this week; the week resets {resets}"
            return {"reason": "budget", "message": message}
        return None

    def view(self) -> dict[str, Any]:
        """As the API shows it (GET /me, a course's usage, a grant's answer)."""
        return {
            "budget": self.course_budget,
            "granted": self.granted,
            "total": self.budget,
            "used": self.used,
            "left": self.left,
            "week": self.week,
        }


def students(session: Session, course: Course, user_ids: Iterable[str] | None = None) -> set[str]:
    """Ids of the course's members a budget holds: students who are not also its staff, nor admins."""
    query = select(CourseMember.user_id, CourseMember.role).where(CourseMember.course_id == course.id)
    if user_ids is not None:
        query = query.where(CourseMember.user_id.in_(list(user_ids)))
    roles: dict[str, set[str]] = defaultdict(set)
    for user_id, role in session.execute(query):
        roles[user_id].add(role)
    held = {user_id for user_id, theirs in roles.items() if STUDENT in theirs and not theirs & set(STAFF)}
    if not held:
        return held
    admins = set(session.scalars(select(User.id).where(User.id.in_(held), User.is_admin.is_(True))))
    return held - admins


def standings(
    session: Session, course: Course, now: datetime, user_ids: Iterable[str] | None = None
) -> dict[str, Standing]:
    """The standing of each student of the course (or of those in `user_ids`): a few queries per
    course, however many students."""
    ids = students(session, course, user_ids)
    if not ids:
        return {}
    granted = granted_hours(session, course, ids)
    mine = (Job.course_id == course.id, Job.owner_id.in_(ids))
    held = held_seconds(session, course.created_at, now, *mine)
    budget = course.budget or {}
    cap = budget.get(WEEK_CAP)
    week_held: dict[tuple[str, str], float] = {}
    if cap is not None:
        week_held = held_seconds(session, max(week_start(now), course.created_at), now, *mine, gpu_jobs())
    resets = week_start(now) + timedelta(days=7)
    found = {}
    for user_id in ids:
        used = {kind: round(held.get((user_id, kind), 0.0) / 3600, 4) for kind in BUDGETED}
        week = None
        if cap is not None:
            week_used = round(week_held.get((user_id, "gpu_hours"), 0.0) / 3600, 4)
            week = {
                "cap": cap,
                "used": week_used,
                "left": round(max(0.0, cap - week_used), 4),
                "resets_at": resets.isoformat().replace("+00:00", "Z"),
            }
        totals = {
            kind: None if budget.get(kind) is None else budget[kind] + granted[user_id][kind] for kind in BUDGETED
        }
        found[user_id] = Standing(
            course.budget, totals, granted[user_id], used, week, resets if cap is not None else None
        )
    return found


def granted_hours(session: Session, course: Course, user_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """The hours the instructors granted each of `user_ids` in the course, summed by kind."""
    granted = {user_id: dict.fromkeys(BUDGETED, 0.0) for user_id in user_ids}
    for user_id, gpu, cpu in session.execute(
        select(CourseGrant.user_id, func.sum(CourseGrant.gpu_hours), func.sum(CourseGrant.cpu_hours))
        .where(CourseGrant.course_id == course.id, CourseGrant.user_id.in_(list(granted)))
        .group_by(CourseGrant.user_id)
    ):
        granted[user_id] = {"gpu_hours": float(gpu or 0.0), "cpu_hours": float(cpu or 0.0)}
    return granted


def _held(job: Job) -> bool:
    """Whether a budget could hold the job at all (its family counts, it is in a course)."""
    return job.course_id is not None and families.get(job.family).budgeted


class Ledger:
    """The budgets of the owners of `jobs`, read once per course: what a dispatch round asks."""

    def __init__(self, session: Session, jobs: Iterable[Job], now: datetime):
        owners: dict[str, set[str]] = defaultdict(set)
        for job in jobs:
            if _held(job):
                owners[job.course_id].add(job.owner_id)
        self._standings = {
            course_id: standings(session, session.get(Course, course_id), now, ids) for course_id, ids in owners.items()
        }

    def waiting_reason(self, job: Job) -> dict[str, str] | None:
        if not _held(job):
            return None
        standing = self._standings.get(job.course_id, {}).get(job.owner_id)
        return standing.waiting(kind_of(job.queue, job.gpu_memory_mb)) if standing is not None else None


def waiting_reason(session: Session, job: Job, now: datetime) -> dict[str, str] | None:
    """{"reason": "budget", "message"} when the owner's hours of the job's kind are spent; else None."""
    return Ledger(session, [job], now).waiting_reason(job)


def check_coverable(session: Session, job: Job) -> None:
    """A 422 naming `resources` for a job that no budget could ever cover: its course gives the
    owner 0 hours of its kind in all (course and grants), or caps GPU weeks at 0."""
    if not _held(job):
        return
    course = session.get(Course, job.course_id)
    budget, kind = course.budget or {}, kind_of(job.queue, job.gpu_memory_mb)
    if budget.get(kind) is None and not (kind == "gpu_hours" and budget.get(WEEK_CAP) is not None):
        return
    if job.owner_id not in students(session, course, [job.owner_id]):
        return
    granted = granted_hours(session, course, [job.owner_id])[job.owner_id][kind]
    term = None if budget.get(kind) is None else budget[kind] + granted
    if (term is not None and term <= 0) or (kind == "gpu_hours" and budget.get(WEEK_CAP) == 0):
        other = "cpu" if kind == "gpu_hours" else "gpu"
        raise SpecError(
            f"{course.name} gives you no {LABELS[kind]}, so this {job.queue} job could never start: ask an "
            f"instructor of {course.name} for a grant, or run it on the {other} queue",
            field="resources",
        )


def grant(session: Session, course: Course, user: User, hours: dict[str, float], by: User) -> Standing:
    """Add hours to a student's budget (recorded in the audit log) and wake the dispatcher, so
    that a job the grant now covers starts in its next round."""
    if user.id not in students(session, course, [user.id]):
        raise SpecError(
            f"{user.name} is not a student of {course.name} (budgets hold students only); "
            f"enrol them first with the roster or the members route",
            field="user",
        )
    session.add(CourseGrant(course_id=course.id, user_id=user.id, granted_by=by.id, **hours))
    session.add(
        AuditEntry(actor=by.name, action="course_grant", target=user.name, details={"course": course.name, **hours})
    )
    session.flush()
    # Delivered at commit; the dispatcher's round reads the new budget (service/dispatcher.py).
    wakeups.notify(session, wakeups.JOB_EVENTS, {"owner": user.id, "type": "budget"})
    return standings(session, course, utcnow(), [user.id])[user.id]
