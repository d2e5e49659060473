"""Course routes: courses (admin creates; members read; instructors change), rosters, members'
roles, and `GET /api/v1/me` (the caller's courses with what their jobs used).

A course the caller is not a member of is the same 404 as an unknown one; a member whose role
does not allow the change gets a 403."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request
from sqlalchemy import select

from service.api.auth import current_user, db_session
from service.api.context import services
from service.api.requests import json_body
from service.api.serialize import configured_queues, iso
from service.core.errors import Forbidden, NotFound, SpecError
from service.core.orm import Course, Job, User, utcnow
from service.courses import budgets, courses, members, roster, usage
from service.courses.roles import INSTRUCTOR, ROLES, STAFF
from service.courses.spec import CourseCreate, CoursePatch, MemberRole, RosterJson
from service.jobs import families, quota
from service.jobs.lifecycle import QUEUED
from service.jobs.spec import parse_spec
from service.lab import queue_estimates, removed_queues

bp = Blueprint("courses", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/courses")
def create_course():
    user = current_user()
    if not user.is_admin:
        raise Forbidden("only an admin creates courses")
    spec = parse_spec(CourseCreate, json_body())
    session = db_session()
    course = courses.create_course(session, spec)
    session.commit()
    return (
        course_view(course, []) | {"members": _member_views(course)},
        201,
        {"Location": f"/api/v1/courses/{course.name}"},
    )


@bp.get("/courses")
def list_courses():
    """The caller's courses with their roles there; an admin's: every course."""
    session, user = db_session(), current_user()
    mine = members.courses_of(session, user)
    if not user.is_admin:
        return {"items": [course_view(course, roles) for course, roles in mine]}
    roles_by_id = {course.id: roles for course, roles in mine}
    every = session.scalars(select(Course).order_by(Course.name))
    return {"items": [course_view(course, roles_by_id.get(course.id, [])) for course in every]}


@bp.get("/courses/<name>")
def get_course(name: str):
    course, roles = visible_course(name)
    view = course_view(course, roles)
    if current_user().is_admin or set(roles) & set(STAFF):  # students see their own roles, not the class list
        view["members"] = _member_views(course)
    return view


@bp.patch("/courses/<name>")
def update_course(name: str):
    course = course_to_manage(name)
    patch = parse_spec(CoursePatch, json_body())
    session = db_session()
    courses.update_course(session, course, patch)
    session.commit()
    return course_view(course, members.roles_in(session, current_user(), course))


@bp.post("/courses/<name>/roster")
def upload_roster(name: str):
    course = course_to_manage(name)
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise SpecError("send the roster as a multipart field named file (CSV: id,name,email)", field="file")
        students = roster.parse_csv(upload.read())
    else:
        students = parse_spec(RosterJson, json_body()).students
        twice = roster.first_repeat(students)
        if twice is not None:
            raise SpecError(f"students.{twice}.id: {students[twice].id!r} appears twice", field=f"students.{twice}.id")
    session = db_session()
    done = roster.enrol(session, course, students)
    session.commit()
    return {"created": [{"id": user, "token": token} for user, token in done.created], "enrolled": done.enrolled}


@bp.put("/courses/<name>/members/<user_name>")
def put_member(name: str, user_name: str):
    course = course_to_manage(name)
    role = parse_spec(MemberRole, json_body()).role
    session = db_session()
    user = _user_named(user_name)
    members.add_role(session, course, user, role)
    session.commit()
    return {"user": user.name, "course": course.name, "roles": members.roles_in(session, user, course)}


@bp.delete("/courses/<name>/members/<user_name>")
def delete_member(name: str, user_name: str):
    course = course_to_manage(name)
    role = request.args.get("role") or None
    if role is not None and role not in ROLES:
        raise SpecError(f"role must be one of {', '.join(ROLES)}", field="role")
    session = db_session()
    user = _user_named(user_name)
    if not members.remove_roles(session, course, user, role):
        raise NotFound(f"{user.name} holds no {role or 'role'} in {course.name}", field="user")
    session.commit()
    return {"user": user.name, "course": course.name, "roles": members.roles_in(session, user, course)}


@bp.get("/me")
def me():
    """Each course's budget, use and what is left (grants and the week's cap included where a
    budget holds the caller: service/courses/budgets.py), and the caller's queued jobs with
    their place in the queue; research users' jobs (in no course) under the top-level "queue"."""
    session, user, now = db_session(), current_user(), utcnow()
    queued = session.scalars(
        select(Job).where(Job.owner_id == user.id, Job.status == QUEUED, families.takes_slot()).order_by(Job.id)
    ).all()
    places = queue_estimates.places(session, services().settings, queued, now)  # one ordering per queue
    items = []
    for course, roles in members.courses_of(session, user):
        standing = budgets.standings(session, course, now, [user.id]).get(user.id)
        if standing is None:  # staff and admins: reported, not held
            used = usage.used_hours(session, user, course, now)
            hours = {"used": used, "left": usage.hours_left(course.budget, used), "granted": None, "week": None}
        else:
            hours = standing.view()
        mine = [_queued_view(job, places) for job in queued if job.course_id == course.id]
        items.append(course_view(course, roles) | hours | {"queue": mine})
    research = [_queued_view(job, places) for job in queued if job.course_id is None]
    storage = quota.storage_view(session, services().settings, user)  # what the user's files take
    return {"user": user.name, "admin": user.is_admin, "courses": items, "queue": research, "storage": storage}


def _queued_view(job: Job, places: dict[str, queue_estimates.Place]) -> dict[str, Any]:
    place = places.get(job.id)
    waiting = removed_queues.waiting(job, configured_queues())  # its budget, or its queue no longer configured
    return {
        "id": job.id,
        "name": job.name,
        "queue": job.queue,
        "position": place.position if place else None,
        # A job its budget holds starts only once a grant (or a new week) covers it.
        "estimated_start": iso(place.estimated_start) if place and not waiting else None,
        "waiting": waiting,
    }


def course_view(course: Course, roles: list[str]) -> dict[str, Any]:
    return {
        "id": course.id,
        "name": course.name,
        "term_end": course.term_end.isoformat(),
        "closed": courses.is_closed(course),
        "share": course.share,
        "budget": course.budget,
        "role": next((role for role in ROLES if role in roles), None),  # the highest the caller holds
        "roles": roles,
        "created_at": iso(course.created_at),
    }


def _member_views(course: Course) -> list[dict[str, str]]:
    return [{"user": user, "role": role} for user, role in members.members(db_session(), course)]


def visible_course(name: str) -> tuple[Course, list[str]]:
    """The course and the caller's roles there; a 404 for a course they are not in (admins: any)."""
    session, user = db_session(), current_user()
    course = courses.find_course(session, name)
    roles = members.roles_in(session, user, course) if course is not None else []
    if course is None or not (roles or user.is_admin):
        raise NotFound(f"no course named {name!r}", field="name")
    return course, roles


def course_to_manage(name: str) -> Course:
    """A course the caller may change: an admin's or the course's instructor's."""
    course, roles = visible_course(name)
    if not (current_user().is_admin or INSTRUCTOR in roles):
        raise Forbidden(f"only {course.name}'s instructors (or an admin) may change it")
    return course


def _user_named(name: str) -> User:
    user = (
        db_session().scalar(select(User).where(User.name == name)) if len(name) <= 64 and "\x00" not in name else None
    )
    if user is None:
        raise NotFound(f"no user named {name!r}", field="user")
    return user
