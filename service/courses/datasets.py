"""A course's data sets: what its instructors publish for every member to read, as
`{"course": "DL-2026", "name": "aicup-train"}` in a spec (service/data/refs.py resolves it).

A course data set is a Dataset row owned by its uploader with `course_id` set; its name is
unique in the course. Only its owner (or an admin) could change it; members only read it."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.errors import Conflict, SpecError
from service.core.orm import Course, Dataset
from service.courses.courses import is_closed
from service.courses.spec import COURSE_NAME
from service.data.refs import published_dataset

DATASET_NAME = COURSE_NAME  # letters, digits, - _ . : a name that reads well in a spec


def course_dataset(session: Session, course: Course, name: str) -> Dataset | None:
    """The data set `course` published as `name` (no access check: the caller makes it)."""
    return published_dataset(session, course.name, name)


def course_datasets(session: Session, course: Course) -> list[Dataset]:
    return list(session.scalars(select(Dataset).where(Dataset.course_id == course.id).order_by(Dataset.name)))


def check_new_dataset(session: Session, course: Course, name: str | None) -> str:
    """The name a new data set of the course may take; a 409 once the course closed or for a
    name it has already, a 422 for a missing or malformed name."""
    if is_closed(course):
        raise Conflict(
            f"the course {course.name} closed on {course.term_end.isoformat()}; it takes no new data sets",
            field="course",
            code="course_closed",
        )
    if not name:
        raise SpecError("name the data set (a form field named name, e.g. aicup-train)", field="name")
    if not re.fullmatch(DATASET_NAME, name):
        raise SpecError(
            f"{name[:80]!r} cannot name a course data set: use letters, digits, - _ . (at most 64)", field="name"
        )
    if course_dataset(session, course, name) is not None:
        raise Conflict(
            f"{course.name} has a data set named {name!r} already; choose another name",
            field="name",
            code="dataset_exists",
        )
    return name
