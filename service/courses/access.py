"""Who may see a job, in one place: its owner, an admin, and the instructors and TAs of the
job's course. Everyone else gets the 404 an unknown id gets (the API's `owned` helpers, the
model routes and the events feed all ask here).

`can_see` answers for one job; `visible_jobs` and `visible_models` are the same rule as SQL
conditions, for listings."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, or_, select, true
from sqlalchemy.orm import Session

from service.core.orm import CourseMember, Job, Model, User
from service.courses.roles import STAFF


def staffed_courses(user_id: str) -> Select:
    """The ids of the courses where the user is an instructor or a TA."""
    return select(CourseMember.course_id).where(CourseMember.user_id == user_id, CourseMember.role.in_(STAFF))


def is_staff_anywhere(session: Session, user_id: str) -> bool:
    return session.scalar(staffed_courses(user_id).limit(1)) is not None


def visible_jobs(user_id: str, is_admin: bool) -> ColumnElement[bool]:
    """A condition on Job: the jobs the user may see."""
    if is_admin:
        return true()
    return or_(Job.owner_id == user_id, Job.course_id.in_(staffed_courses(user_id)))


def visible_models(user_id: str, is_admin: bool) -> ColumnElement[bool]:
    """A condition on Model: a model is seen by whoever sees the job that made it."""
    if is_admin:
        return true()
    course_jobs = select(Job.id).where(Job.course_id.in_(staffed_courses(user_id)))
    return or_(Model.owner_id == user_id, Model.job_id.in_(course_jobs))


def can_see(session: Session, user: User, job: Job) -> bool:
    if user.is_admin or job.owner_id == user.id:
        return True
    if job.course_id is None:
        return False
    staff = staffed_courses(user.id).where(CourseMember.course_id == job.course_id)
    return session.scalar(staff.limit(1)) is not None


def can_see_model(session: Session, user: User, model: Model) -> bool:
    if user.is_admin or model.owner_id == user.id:
        return True
    job = session.get(Job, model.job_id)
    return job is not None and can_see(session, user, job)
