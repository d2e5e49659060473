"""Creating, finding and changing courses."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.errors import Conflict, SpecError
from service.core.orm import Course, User
from service.courses.members import add_role
from service.courses.roles import INSTRUCTOR
from service.courses.spec import CourseCreate, CoursePatch


def find_course(session: Session, name: str) -> Course | None:
    if len(name) > 64 or "\x00" in name:  # no course has such a name; PostgreSQL refuses NUL
        return None
    return session.scalar(select(Course).where(Course.name == name))


def create_course(session: Session, spec: CourseCreate) -> Course:
    """The course, with its instructors; every instructor must already be a user."""
    if find_course(session, spec.name) is not None:
        raise Conflict(f"a course named {spec.name!r} exists already", field="name", code="course_exists")
    instructors = [_user_named(session, name) for name in dict.fromkeys(spec.instructors)]
    course = Course(
        name=spec.name,
        term_end=spec.term_end,
        share=spec.share,
        budget=spec.budget.model_dump() if spec.budget else None,
    )
    session.add(course)
    session.flush()
    for user in instructors:
        add_role(session, course, user, INSTRUCTOR)
    return course


def update_course(session: Session, course: Course, patch: CoursePatch) -> Course:
    """Only what the patch names changes (`"budget": null` makes it unlimited)."""
    given = patch.model_fields_set
    if "term_end" in given and patch.term_end is not None:
        course.term_end = patch.term_end
    if "share" in given and patch.share is not None:
        course.share = patch.share
    if "budget" in given:
        course.budget = patch.budget.model_dump() if patch.budget else None
    session.flush()
    return course


def is_closed(course: Course, today: date | None = None) -> bool:
    """A course takes jobs up to and including its term_end (UTC)."""
    from_day = today or datetime.now(UTC).date()
    return from_day > course.term_end


def _user_named(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise SpecError(f"instructors: no user named {name!r} (create it first)", field="instructors")
    return user
