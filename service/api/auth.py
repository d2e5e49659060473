"""Bearer-token authentication and ownership: another user's object is a 404, like a missing one
(a job is also seen by its course's staff: `visible_job`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request
from sqlalchemy.orm import Session

from service.api.context import services
from service.core.errors import NotFound, ServiceError
from service.core.orm import Job, User, could_be_id
from service.courses.access import can_see
from service.lab.users import user_for_token

T = TypeVar("T")
F = TypeVar("F", bound=Callable)

PUBLIC_PATHS = ("/healthz",)


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


def init_app(app: Flask) -> None:
    app.before_request(_authenticate)
    app.teardown_appcontext(_close_session)


def _authenticate() -> None:
    if request.path in PUBLIC_PATHS or not request.path.startswith("/api/"):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send your token as 'Authorization: Bearer <token>' (labtrain users create NAME prints one)")
    user = user_for_token(db_session(), token.strip())
    if user is None:
        raise Unauthorized("the token is not valid (it may have been rotated or its user disabled)")
    g.user = user


def db_session() -> Session:
    """One session per request, closed when the request ends. A view marked `reads_only` reads
    outside a transaction (Database.reads)."""
    if "db_session" not in g:
        db = services().db
        view = current_app.view_functions.get(request.endpoint or "")
        reads = request.method in ("GET", "HEAD") and getattr(view, "reads_only", False)
        g.db_session = db.reads() if reads else db.sessions()
    return g.db_session


def reads_only(view: F) -> F:
    """Marks a view that only reads, which the busiest are (a job, the job list, a job's events):
    its session, the token's look-up included, opens no transaction, two round trips fewer a
    request on PostgreSQL. A write there is refused (Database.reads), so mark only what cannot
    write: some reads keep a cache (GET /me measures finished jobs' folders once)."""
    view.reads_only = True  # type: ignore[attr-defined]
    return view


def _close_session(_exc) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def current_user() -> User:
    return g.user


def owned(model: type[T], object_id: str, what: str) -> T:
    """The object if the caller owns it (or is an admin); else the same 404 as an unknown id."""
    obj = db_session().get(model, object_id) if could_be_id(object_id) else None
    user = current_user()
    if obj is None or (obj.owner_id != user.id and not user.is_admin):
        raise NotFound(f"no {what} with id {object_id!r}", field="id")
    return obj


def visible_job(job_id: str, what: str = "job") -> Job:
    """The job if the caller may see it (its owner, an admin, its course's instructors and TAs:
    service/courses/access.py); else the same 404 as an unknown id."""
    job = db_session().get(Job, job_id) if could_be_id(job_id) else None
    if job is None or not can_see(db_session(), current_user(), job):
        raise NotFound(f"no {what} with id {job_id!r}", field="id")
    return job
