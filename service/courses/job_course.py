"""Which course a new job is for: the one its spec names, or the caller's only course.

A course the caller is not a member of answers exactly like an unknown one (names reveal
nothing); a course past its term_end takes no new jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.core.errors import Conflict, SpecError
from service.core.orm import Course, User
from service.courses.courses import find_course, is_closed
from service.courses.members import courses_of, roles_in


def take_course(session: Session, user: User, payload: Any) -> Course | None:
    """The job's course, taking `course` out of the payload (the families never see it);
    None for a user in no course (a research user) who names none."""
    name = payload.pop("course", None) if isinstance(payload, dict) else None
    course = _default_course(session, user) if name is None else member_course(session, user, name)
    if course is not None and is_closed(course):
        raise Conflict(
            f"the course {course.name} closed on {course.term_end.isoformat()}; no new jobs",
            field="course",
            code="course_closed",
        )
    return course


def member_course(session: Session, user: User, name: Any) -> Course:
    """The course named, if the caller is a member (an admin: any course); else a 422."""
    if not isinstance(name, str):
        raise SpecError("course must be the name of one of your courses", field="course")
    course = find_course(session, name)
    if course is None or not (user.is_admin or roles_in(session, user, course)):
        raise SpecError(f"you are not a member of a course named {name!r}", field="course")
    return course


def _default_course(session: Session, user: User) -> Course | None:
    courses = [course for course, _roles in courses_of(session, user)]
    if len(courses) > 1:
        names = ", ".join(course.name for course in courses)
        raise SpecError(
            f'you are in several courses ({names}): say which with "course"',
            field="course",
            details={"courses": [course.name for course in courses]},
        )
    return courses[0] if courses else None
