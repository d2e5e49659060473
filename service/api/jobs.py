"""Job routes: submit, list, get, events, log, artifacts, a notebook's page, cancel."""

from __future__ import annotations

import os
import re

from flask import Blueprint, Flask, Response, jsonify, request, send_file
from sqlalchemy import select

from service.api.auth import current_user, db_session, reads_only, visible_job
from service.api.context import services
from service.api.events import stream
from service.api.requests import MAX_SPEC_DEPTH, int_arg, json_body
from service.api.serialize import event_view, iso, job_view
from service.core import storage
from service.core.errors import NotFound, SpecError
from service.core.orm import ID_PATTERN, Job, JobEvent, User, could_be_id, utcnow
from service.courses import budgets
from service.courses.access import visible_jobs
from service.courses.job_course import member_course, take_course
from service.jobs import lifecycle, submission
from service.jobs.context import SubmitContext
from service.lab import queue_estimates

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
MAX_LOG_READ = 4 * 1024 * 1024  # bytes of log one request returns; follow with offset for more
NOTEBOOK_PAGE_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("")
def submit():
    user = current_user()
    services().rate_limits.hit("submit", user.id)
    payload = json_body(max_depth=MAX_SPEC_DEPTH)
    session = db_session()
    course = take_course(session, user, payload)
    job = submission.submit(SubmitContext(session, services().settings, user), payload, course=course)
    budgets.check_coverable(session, job)  # a 422 for a job its course could never cover; rolled back
    view = job_view(session, job, user.name)  # its position read in the same transaction
    # The dispatcher sends it to a worker when a slot is free (DESIGN.md decisions 1 and 5); the
    # first of its queue's line takes a free slot now, by the dispatcher's rule and lock.
    released = services().arrivals.release_arrival(session, job.queue) if view["position"] == 1 else []
    session.commit()
    services().arrivals.send_arrivals(services().db, job.queue, released)
    response = jsonify(view)
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return response


@bp.get("")
@reads_only
def list_jobs():
    session = db_session()
    user = current_user()
    status = request.args.get("status") or None
    if status is not None and status not in lifecycle.STATUSES:
        raise SpecError(f"status must be one of {', '.join(lifecycle.STATUSES)}", field="status")
    parent = request.args.get("parent") or None
    if parent is not None and not could_be_id(parent):
        raise SpecError("parent must be the id of a search job", field="parent")
    limit = int_arg("limit", 50, 1, 500)
    cursor = request.args.get("cursor") or None
    if cursor is not None and not re.fullmatch(ID_PATTERN, cursor):
        raise SpecError("cursor must be the next_cursor of a previous page", field="cursor")
    query = (
        select(Job, User.name)
        .join(User, User.id == Job.owner_id)
        .where(visible_jobs(user.id, user.is_admin))
        .order_by(Job.id.desc())
        .limit(limit + 1)
    )
    course = request.args.get("course") or None
    if course is not None:
        query = query.where(Job.course_id == member_course(session, user, course).id)
    if status:
        query = query.where(Job.status == status)
    if cursor:
        query = query.where(Job.id < cursor)
    if parent:
        query = query.where(Job.parent_id == parent)
    rows = session.execute(query).all()
    items = [job_view(session, job, owner) for job, owner in rows[:limit]]
    next_cursor = items[-1]["id"] if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


@bp.get("/<job_id>")
@reads_only
def get_job(job_id: str):
    session = db_session()
    job, user = visible_job(job_id), current_user()
    view = job_view(session, job, user.name if job.owner_id == user.id else None)
    if job.status == lifecycle.QUEUED:  # its estimated start (a listing leaves it out: one ordering per queue)
        place = queue_estimates.places(session, services().settings, [job], utcnow()).get(job.id)
        view["estimated_start"] = iso(place.estimated_start) if place else None
    return view


@bp.get("/<job_id>/events")
@reads_only
def events(job_id: str):
    job = visible_job(job_id)
    after = int_arg("after", 0, 0, 2**31 - 1)
    if request.accept_mimetypes.best_match(["application/json", "text/event-stream"]) == "text/event-stream":
        # A reconnecting client says where it stopped in Last-Event-ID; that wins over ?after.
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isascii() and last_id.isdigit():
            after = min(int(last_id), 2**31 - 1)
        return stream({"kind": "job", "job": job.id, "after": after})
    limit = int_arg("limit", 1000, 1, 10_000)
    rows = db_session().scalars(
        select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.seq > after).order_by(JobEvent.seq).limit(limit)
    )
    return {"items": [event_view(e) for e in rows]}


@bp.get("/<job_id>/log")
@reads_only
def job_log(job_id: str):
    """The job's log; from byte `offset` on when given (what `labtrain logs -f` follows), with
    the offset to ask from next in X-Log-Offset."""
    job = visible_job(job_id)
    offset = int_arg("offset", 0, 0, 2**62)
    path = storage.job_log_path(services().settings, job.id)
    data = b""
    if path.exists():
        with open(path, "rb") as log_file:
            offset = min(offset, os.fstat(log_file.fileno()).st_size)  # past the end is the end
            log_file.seek(offset)
            data = log_file.read(MAX_LOG_READ)
    response = Response(data.decode(errors="replace"), mimetype="text/plain")
    response.headers["X-Log-Offset"] = str(offset + len(data))
    return response


@bp.get("/<job_id>/artifacts")
@reads_only
def artifacts(job_id: str):
    """The files a code job left in its outputs/ folder (listed once the job has ended)."""
    job = visible_job(job_id)
    folder = storage.job_outputs_dir(services().settings, job.id)
    return {"items": [{"path": path, "size": size} for path, size in storage.regular_files(folder)]}


@bp.get("/<job_id>/artifacts/<path:artifact>")
def artifact(job_id: str, artifact: str):
    job = visible_job(job_id)
    path = storage.file_inside(storage.job_outputs_dir(services().settings, job.id), artifact)
    if path is None:
        raise NotFound(
            f"job {job.id} has no artifact {artifact!r}; GET /api/v1/jobs/{job.id}/artifacts lists them", field="path"
        )
    response = send_file(path, as_attachment=True, download_name=path.name, mimetype="application/octet-stream")
    # A student's file is data, never a page of this site: no sniffing, no scripts if opened.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.get("/<job_id>/notebook")
def notebook_page(job_id: str):
    """A notebook job's page, as its worker rendered it from the executed notebook once the job
    had ended (never a file the job wrote: that would be an artifact)."""
    job = visible_job(job_id)
    path = storage.notebook_page_path(services().settings, job.id)
    if not path.is_file() or path.is_symlink():
        raise NotFound(f"job {job.id} has no notebook page (its result.notebook says why)", field="job_id")
    response = send_file(path, mimetype="text/html", max_age=0)
    # The notebook's outputs are a student's: a document with no script and no request, in an
    # opaque origin, on top of the sanitizer that rendering ran.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = NOTEBOOK_PAGE_POLICY
    return response


@bp.post("/<job_id>/cancel")
def cancel(job_id: str):
    session = db_session()
    job = visible_job(job_id)
    status = lifecycle.request_cancel(session, job, current_user())
    session.commit()
    return {"id": job.id, "status": status, "cancel_requested": True}, 202
