"""Who asks, and which runs they may read or write.

A user (by their token) reads and writes their own runs, jobs included; a course's instructors
and TAs read the course's runs and jobs (service/courses/access.py, the one rule); admins read
all. A running code job (through its own socket) reads and writes only its own run and the runs
it created under it. Any other run answers as a missing one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.orm import Session

from service.core.orm import CourseMember, Job, TrackingRun, User
from service.courses.access import can_see, staffed_courses, visible_jobs
from service.tracking.errors import TrackingError
from service.tracking.runs import job_id_of


@dataclass(frozen=True)
class UserPrincipal:
    user: User


@dataclass(frozen=True)
class JobPrincipal:
    job_id: str
    owner_id: str


Principal = UserPrincipal | JobPrincipal


def runs_seen(principal: Principal) -> ColumnElement[bool]:
    """The rule above as a condition on TrackingRun rows (runs that are no job's own run)."""
    if isinstance(principal, JobPrincipal):
        return TrackingRun.created_by_job_id == principal.job_id
    user = principal.user
    if user.is_admin:
        return true()
    seen_jobs = select(Job.id).where(visible_jobs(user.id, False))
    return or_(
        TrackingRun.owner_id == user.id,
        TrackingRun.course_id.in_(staffed_courses(user.id)),
        TrackingRun.created_by_job_id.in_(seen_jobs),
    )


@dataclass
class RunRef:
    """A run found for a caller: a job's (job set; row its TrackingRow, if one was made yet) or
    a run of its own (row set, job None)."""

    run_id: str
    owner_id: str
    job: Job | None
    row: TrackingRun | None


def owner_id(principal: Principal) -> str:
    return principal.user.id if isinstance(principal, UserPrincipal) else principal.owner_id


def missing_run(run_id: str) -> TrackingError:
    return TrackingError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found")


def find_run(session: Session, run_id: str) -> RunRef | None:
    """The run with this id, whoever owns it (callers check who may see it)."""
    if not isinstance(run_id, str) or len(run_id) != 32:
        return None
    job_id = job_id_of(run_id)
    if job_id is not None:
        job = session.get(Job, job_id)
        if job is None:
            return None
        row = session.query(TrackingRun).filter(TrackingRun.job_id == job_id).one_or_none()
        return RunRef(run_id, job.owner_id, job, row)
    row = session.get(TrackingRun, run_id)
    if row is None or row.job_id is not None:
        return None
    return RunRef(run_id, row.owner_id, None, row)


def may_read(session: Session, principal: Principal, ref: RunRef) -> bool:
    if isinstance(principal, JobPrincipal):
        return _job_writes(principal, ref)
    user = principal.user
    if ref.job is not None:
        return can_see(session, user, ref.job)
    row = ref.row
    if user.is_admin or row.owner_id == user.id:
        return True
    if row.created_by_job_id is not None:
        job = session.get(Job, row.created_by_job_id)
        return job is not None and can_see(session, user, job)
    if row.course_id is None:
        return False
    staff = staffed_courses(user.id).where(CourseMember.course_id == row.course_id)
    return session.scalar(staff.limit(1)) is not None


def may_write(principal: Principal, ref: RunRef) -> bool:
    if isinstance(principal, JobPrincipal):
        return _job_writes(principal, ref)
    return ref.owner_id == principal.user.id


def _job_writes(principal: JobPrincipal, ref: RunRef) -> bool:
    if ref.job is not None:
        return ref.job.id == principal.job_id
    return ref.row is not None and ref.row.created_by_job_id == principal.job_id


def readable_run(session: Session, principal: Principal, run_id: str) -> RunRef:
    ref = find_run(session, run_id)
    if ref is None or not may_read(session, principal, ref):
        raise missing_run(run_id)
    return ref


def writable_run(session: Session, principal: Principal, run_id: str) -> RunRef:
    """A run the caller may change; one they may only read answers PERMISSION_DENIED (a TA
    knows the run exists), any other the same 404 as a missing one."""
    ref = readable_run(session, principal, run_id)
    if not may_write(principal, ref):
        raise TrackingError("PERMISSION_DENIED", f"Run with id={run_id} is not yours to change")
    return ref
