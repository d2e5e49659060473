"""Competition routes: an instructor creates one in a course; its members read it, its test
inputs (never the labels) and its leaderboard; students submit models or predictions files and
select their final ones; staff see every submission and download the grades.

A competition outside the caller's courses is the same 404 as an unknown id; a member whose
role does not allow the request gets a 403."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, request
from sqlalchemy import select

from service.api.auth import current_user, db_session
from service.api.context import services
from service.api.courses import visible_course
from service.api.requests import json_body
from service.competitions import competitions, leaderboard, submissions
from service.competitions.competitions import Seen
from service.competitions.spec import CompetitionCreate, ModelSubmission, Selection
from service.competitions.testset import inputs_csv, read_test_set
from service.core.errors import Conflict, Forbidden, SpecError
from service.core.orm import Dataset, User
from service.courses.members import roles_in
from service.courses.roles import INSTRUCTOR, STAFF, STUDENT
from service.jobs.spec import parse_spec

bp = Blueprint("competitions", __name__, url_prefix="/api/v1")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/courses/<name>/competitions")
def create(name: str):
    course, roles = visible_course(name)
    user = current_user()
    if not (user.is_admin or INSTRUCTOR in roles):
        raise Forbidden(f"only {course.name}'s instructors (or an admin) create competitions")
    spec = parse_spec(CompetitionCreate, json_body())
    session = db_session()
    competition = competitions.create_competition(session, course, user, spec)
    session.commit()
    seen = Seen(competition, course, staff=True)
    return competitions.view(session, seen), 201, {"Location": f"/api/v1/competitions/{competition.id}"}


@bp.get("/courses/<name>/competitions")
def list_in_course(name: str):
    course, roles = visible_course(name)
    session, user = db_session(), current_user()
    staff = user.is_admin or bool(set(roles) & set(STAFF))
    found = competitions.in_course(session, course)
    return {"items": [competitions.view(session, Seen(c, course, staff)) for c in found]}


@bp.get("/competitions/<competition_id>")
def get(competition_id: str):
    seen = _seen(competition_id)
    session = db_session()
    described = competitions.view(session, seen)
    if _is_student(seen):
        described |= submissions.allowance(session, seen.competition, current_user())
    return described


@bp.get("/competitions/<competition_id>/test-inputs")
def test_inputs(competition_id: str):
    competition = _seen(competition_id).competition
    test = db_session().get(Dataset, competition.test_dataset_id)
    if not Path(test.path).is_file():  # pruned with its closed course
        raise Conflict("this competition's test set was removed with its course's files", code="test_set_removed")
    column = competitions.id_column(test)
    body = inputs_csv(read_test_set(test.path, competition.target, column), column)
    disposition = f'attachment; filename="{competition.name}-test-inputs.csv"'
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": disposition})


@bp.post("/competitions/<competition_id>/submissions")
def submit(competition_id: str):
    seen = _seen(competition_id)
    if not _is_student(seen):
        raise Forbidden(f"only {seen.course.name}'s students submit to its competitions")
    session, user, settings = db_session(), current_user(), services().settings
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise SpecError("send the predictions as a multipart field named file (CSV: id,prediction)", field="file")
        submission = submissions.submit_file(session, settings, seen.competition, user, upload.read())
    else:
        model_id = parse_spec(ModelSubmission, json_body()).model
        submission = submissions.submit_model(session, settings, seen.competition, user, model_id)
    session.commit()
    answer = submissions.submission_view(submission, user.name, seen.competition, seen.staff)
    answer |= submissions.allowance(session, seen.competition, user)
    location = f"/api/v1/competitions/{seen.competition.id}/submissions"
    return answer, 202, {"Location": location}


@bp.get("/competitions/<competition_id>/submissions")
def list_submissions(competition_id: str):
    seen = _seen(competition_id)
    session, user = db_session(), current_user()
    submissions.refresh(session, seen.competition)
    found = submissions.listed(session, seen.competition, user, seen.staff)
    names = _names(submission.user_id for submission in found)
    items = [submissions.submission_view(s, names[s.user_id], seen.competition, seen.staff) for s in found]
    answer = {"items": items, "final_selections": seen.competition.final_selections}
    if _is_student(seen):
        answer |= submissions.allowance(session, seen.competition, user)
    return answer


@bp.post("/competitions/<competition_id>/submissions/<submission_id>/select")
def select_one(competition_id: str, submission_id: str):
    seen = _seen(competition_id)
    session, user = db_session(), current_user()
    selected = parse_spec(Selection, json_body()).selected if request.get_data(cache=True).strip() else True
    submission = submissions.select_submission(session, seen.competition, user, submission_id, selected)
    session.commit()
    return submissions.submission_view(submission, user.name, seen.competition, seen.staff)


@bp.get("/competitions/<competition_id>/leaderboard")
def get_leaderboard(competition_id: str):
    seen = _seen(competition_id)
    session, competition = db_session(), seen.competition
    submissions.refresh(session, competition)
    board = competitions.view(session, seen) | leaderboard.leaderboard(session, competition)
    if _is_student(seen):
        board |= submissions.allowance(session, competition, current_user())
    return board


@bp.get("/competitions/<competition_id>/grades.csv")
def grades(competition_id: str):
    seen = _seen(competition_id)
    if not seen.staff:
        raise Forbidden(f"only {seen.course.name}'s instructors and TAs download grades")
    session = db_session()
    submissions.refresh(session, seen.competition)
    disposition = f'attachment; filename="{seen.competition.name}-grades.csv"'
    body = leaderboard.grades_csv(session, seen.competition)
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": disposition})


def _seen(competition_id: str) -> Seen:
    return competitions.seen_competition(db_session(), current_user(), competition_id)


def _is_student(seen: Seen) -> bool:
    return STUDENT in roles_in(db_session(), current_user(), seen.course)


def _names(user_ids) -> dict[str, str]:
    ids = set(user_ids)
    if not ids:
        return {}
    return dict(db_session().execute(select(User.id, User.name).where(User.id.in_(ids))).all())
