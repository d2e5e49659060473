"""Who holds which roles in which course."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Select, bindparam, delete, select
from sqlalchemy.orm import Session

from service.core.errors import Conflict
from service.core.orm import Course, CourseMember, User
from service.courses.roles import INSTRUCTOR


def roles_in(session: Session, user: User, course: Course) -> list[str]:
    """The user's roles in the course, in a stable order (none: not a member)."""
    rows = session.scalars(
        select(CourseMember.role).where(CourseMember.course_id == course.id, CourseMember.user_id == user.id)
    )
    return sorted(set(rows))


def courses_of(session: Session, user: User) -> list[tuple[Course, list[str]]]:
    """Each course the user is a member of, with their roles there, by course name."""
    rows = session.execute(_courses_of(), {"user": user.id}).all()
    found: dict[str, tuple[Course, list[str]]] = {}
    for course, role in rows:
        found.setdefault(course.id, (course, []))[1].append(role)
    return list(found.values())


@cache
def _courses_of() -> Select:
    # Every submit asks it (the job's course): built once.
    return (
        select(Course, CourseMember.role)
        .join(CourseMember, CourseMember.course_id == Course.id)
        .where(CourseMember.user_id == bindparam("user"))
        .order_by(Course.name, CourseMember.role)
    )


def members(session: Session, course: Course) -> list[tuple[str, str]]:
    """(user name, role) of every membership, by user name."""
    rows = session.execute(
        select(User.name, CourseMember.role)
        .join(CourseMember, CourseMember.user_id == User.id)
        .where(CourseMember.course_id == course.id)
        .order_by(User.name, CourseMember.role)
    )
    return [(name, role) for name, role in rows]


def add_role(session: Session, course: Course, user: User, role: str) -> bool:
    """Gives the user the role; False when they held it already."""
    exists = session.scalar(
        select(CourseMember.id).where(
            CourseMember.course_id == course.id, CourseMember.user_id == user.id, CourseMember.role == role
        )
    )
    if exists is not None:
        return False
    session.add(CourseMember(course_id=course.id, user_id=user.id, role=role))
    session.flush()
    return True


def remove_roles(session: Session, course: Course, user: User, role: str | None = None) -> int:
    """Takes one role (or, without `role`, every role) from the user; how many went. A course
    keeps at least one instructor: taking the last one's role is a 409."""
    if role in (None, INSTRUCTOR) and _last_instructor(session, course, user):
        raise Conflict(
            f"{user.name} is {course.name}'s last instructor; add another instructor first "
            f"(PUT /api/v1/courses/{course.name}/members/<user> with role instructor)",
            field="role",
            code="last_instructor",
        )
    query = delete(CourseMember).where(CourseMember.course_id == course.id, CourseMember.user_id == user.id)
    if role is not None:
        query = query.where(CourseMember.role == role)
    return session.execute(query).rowcount


def _last_instructor(session: Session, course: Course, user: User) -> bool:
    """Whether the user is an instructor of the course and no one else is."""
    instructors = set(
        session.scalars(
            select(CourseMember.user_id).where(CourseMember.course_id == course.id, CourseMember.role == INSTRUCTOR)
        )
    )
    return instructors == {user.id}
