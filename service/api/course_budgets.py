"""A course's budgets: each student's use (its instructors and TAs read it) and grants of
hours to one student (its instructors). The rules are in service/courses/budgets.py.

A course the caller is not a member of is the unknown course's 404 (service/api/courses.py)."""

from __future__ import annotations

from flask import Blueprint, Flask
from sqlalchemy import func, select

from service.api.auth import current_user, db_session
from service.api.courses import course_to_manage, visible_course
from service.api.requests import json_body
from service.core.errors import Forbidden, SpecError
from service.core.orm import Job, User, utcnow
from service.courses import budgets
from service.courses.roles import STAFF
from service.courses.spec import Grant
from service.jobs.spec import parse_spec

bp = Blueprint("course_budgets", __name__, url_prefix="/api/v1/courses")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/<name>/usage")
def course_usage(name: str):
    course, roles = visible_course(name)
    if not (current_user().is_admin or set(roles) & set(STAFF)):
        raise Forbidden(f"only {course.name}'s instructors and TAs (or an admin) see its students' use")
    session = db_session()
    found = budgets.standings(session, course, utcnow())
    counts = session.execute(
        select(Job.owner_id, func.count())
        .where(Job.course_id == course.id, Job.owner_id.in_(found))
        .group_by(Job.owner_id)
    )
    jobs = {owner: count for owner, count in counts}
    users = session.scalars(select(User).where(User.id.in_(found)).order_by(User.name)) if found else []
    return {
        "items": [
            {"user": user.name, "name": user.full_name, "email": user.email}
            | found[user.id].view()
            | {"jobs": jobs.get(user.id, 0)}
            for user in users
        ]
    }


@bp.post("/<name>/grants")
def grant(name: str):
    course = course_to_manage(name)
    spec = parse_spec(Grant, json_body())
    if not (spec.gpu_hours or spec.cpu_hours):
        raise SpecError("a grant gives gpu_hours or cpu_hours (or both) above 0", field="gpu_hours")
    session, by = db_session(), current_user()
    user = session.scalar(select(User).where(User.name == spec.user))
    if user is None:
        raise SpecError(f"no user named {spec.user!r}; enrol them in {course.name} first", field="user")
    standing = budgets.grant(session, course, user, {"gpu_hours": spec.gpu_hours, "cpu_hours": spec.cpu_hours}, by)
    session.commit()
    return {"course": course.name, "user": user.name} | standing.view(), 201
