"""Creating, finding and showing competitions. A competition is seen by its course's members and
admins (anyone else gets an unknown id's 404); its hidden test set is a CSV data set its creator
owns, never published to a course (students could read it then)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.competitions.spec import ID_COLUMN, CompetitionCreate, higher_is_better, task_of
from service.core.errors import Conflict, NotFound, SpecError
from service.core.orm import Competition, Course, Dataset, User, could_be_id, utcnow
from service.courses.courses import find_course
from service.courses.members import roles_in
from service.courses.roles import STAFF

PUBLIC, PRIVATE = "public", "private"


@dataclass
class Seen:
    """A competition as one caller sees it."""

    competition: Competition
    course: Course
    staff: bool  # an admin, or an instructor or TA of its course


def create_competition(session: Session, course: Course, creator: User, spec: CompetitionCreate) -> Competition:
    exists = session.scalar(
        select(Competition.id).where(Competition.course_id == course.id, Competition.name == spec.name)
    )
    if exists is not None:
        raise Conflict(
            f"{course.name} has a competition named {spec.name!r} already", field="name", code="competition_exists"
        )
    closes_at = spec.closes_at if spec.closes_at.tzinfo else spec.closes_at.replace(tzinfo=UTC)
    if closes_at <= utcnow():
        raise SpecError("closes_at must be in the future", field="closes_at")
    _check_test_set(session, creator, spec)
    train = spec.train.model_dump() if spec.train else None
    if spec.train is not None:
        _check_train(session, spec.train.course, spec.train.name)
    competition = Competition(
        course_id=course.id,
        name=spec.name,
        metric=spec.metric,
        train=train,
        test_dataset_id=spec.test,
        target=spec.target,
        public_fraction=spec.public_fraction,
        daily_limit=spec.daily_limit,
        final_selections=spec.final_selections,
        closes_at=closes_at,
        created_by=creator.id,
    )
    session.add(competition)
    session.flush()
    return competition


def _check_test_set(session: Session, creator: User, spec: CompetitionCreate) -> None:
    test = session.get(Dataset, spec.test) if could_be_id(spec.test) else None
    if test is None or (test.owner_id != creator.id and not creator.is_admin):
        raise NotFound(f"no data set with id {spec.test!r}", field="test")
    if test.kind != "csv":
        raise SpecError("the test set must be a CSV data set", field="test")
    if test.course_id is not None:
        raise SpecError(
            "the test set is published to a course, so its students could read its labels; upload it again "
            "as a data set of your own",
            field="test",
        )
    columns = {c["name"]: c for c in test.info.get("columns", [])}
    target = columns.get(spec.target)
    if target is None:
        raise SpecError(
            f"the test set has no column {spec.target!r}; its columns are {', '.join(columns)}", field="target"
        )
    if spec.target == ID_COLUMN:
        raise SpecError(f"the {ID_COLUMN} column names the rows; it cannot be the target", field="target")
    if target["missing"]:
        raise SpecError(f"{target['missing']} rows of the test set have no {spec.target}", field="target")
    if task_of(spec.metric) == "regression" and target["kind"] != "numeric":
        raise SpecError(f"{spec.metric} scores numbers; the column {spec.target!r} holds text", field="metric")
    if len(columns) < 2:
        raise SpecError("the test set needs input columns besides its target", field="test")
    ids = columns.get(ID_COLUMN)
    if ids is not None and (ids["missing"] or ids["distinct"] != test.rows):
        raise SpecError(f"the test set's {ID_COLUMN} column must name each row once", field="test")


def _check_train(session: Session, course_name: str, name: str) -> None:
    course = find_course(session, course_name)
    found = course and session.scalar(select(Dataset.id).where(Dataset.course_id == course.id, Dataset.name == name))
    if not found:
        raise SpecError(f"{course_name} has no course data set named {name!r}", field="train")


def seen_competition(session: Session, user: User, competition_id: str) -> Seen:
    """The competition, if the caller is a member of its course or an admin; else a 404."""
    competition = session.get(Competition, competition_id) if could_be_id(competition_id) else None
    course = session.get(Course, competition.course_id) if competition is not None else None
    roles = roles_in(session, user, course) if course is not None else []
    if competition is None or not (roles or user.is_admin):
        raise NotFound(f"no competition with id {competition_id!r}", field="id")
    return Seen(competition, course, user.is_admin or bool(set(roles) & set(STAFF)))


def in_course(session: Session, course: Course) -> list[Competition]:
    return list(session.scalars(select(Competition).where(Competition.course_id == course.id).order_by(Competition.id)))


def is_closed(competition: Competition, now: datetime | None = None) -> bool:
    return (now or utcnow()) >= competition.closes_at


def phase(competition: Competition) -> str:
    return PRIVATE if is_closed(competition) else PUBLIC


def id_column(test: Dataset) -> str | None:
    return ID_COLUMN if any(c["name"] == ID_COLUMN for c in test.info.get("columns", [])) else None


def view(session: Session, seen: Seen) -> dict[str, Any]:
    """Everything but the labels (and, for students, which data set holds them)."""
    competition = seen.competition
    test = session.get(Dataset, competition.test_dataset_id)
    described = {
        "id": competition.id,
        "name": competition.name,
        "course": seen.course.name,
        "metric": competition.metric,
        "task": task_of(competition.metric),
        "higher_is_better": higher_is_better(competition.metric),
        "train": competition.train,
        "target": competition.target,
        "inputs": [c["name"] for c in test.info["columns"] if c["name"] != competition.target],
        "test_rows": test.rows,
        "public_fraction": competition.public_fraction,
        "daily_limit": competition.daily_limit,
        "final_selections": competition.final_selections,
        "closes_at": iso(competition.closes_at),
        "closed": is_closed(competition),
        "phase": phase(competition),
        "created_at": iso(competition.created_at),
    }
    if seen.staff:
        described["test"] = competition.test_dataset_id
    return described


def iso(moment: datetime) -> str:
    """UTC, as the API writes times (...Z)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
