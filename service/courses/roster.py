"""A course's roster: students read from a CSV (`id,name,email`) or a JSON list, created as
users where missing (their tokens seen once, in the answer) and enrolled as students."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.errors import SpecError
from service.core.orm import Course, User
from service.courses.members import add_role
from service.courses.roles import STUDENT
from service.courses.spec import Student
from service.lab.users import create_user

MAX_ROWS = 2000  # a large course's roster; the upload limit bounds the bytes
COLUMNS = ("id", "name", "email")


@dataclass
class Enrolment:
    created: list[tuple[str, str]] = field(default_factory=list)  # (user name, token)
    enrolled: list[str] = field(default_factory=list)  # every roster id, now a student


def parse_csv(data: bytes) -> list[Student]:
    """The students of a CSV with the header `id,name,email`; a bad row is a 422 naming its
    row (1 is the header) and column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError("the roster must be a UTF-8 CSV file", field="file") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if tuple(header) != COLUMNS:
        raise SpecError(
            f"the roster's header must be {','.join(COLUMNS)} (it is {','.join(header) or 'empty'})",
            field="file",
            details={"row": 1},
        )
    students: list[Student] = []
    rows: list[int] = []  # each student's row in the file
    try:
        for row_number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank lines, e.g. at the end
            if len(students) == MAX_ROWS:
                raise _row_error(row_number, "id", f"a roster holds at most {MAX_ROWS} students")
            if len(row) != len(COLUMNS):
                raise _row_error(
                    row_number, "id", f"expected {len(COLUMNS)} cells ({','.join(COLUMNS)}), got {len(row)}"
                )
            students.append(_student(row_number, dict(zip(COLUMNS, (cell.strip() for cell in row), strict=True))))
            rows.append(row_number)
    except csv.Error as exc:
        raise SpecError(f"the roster is not a readable CSV ({exc})", field="file") from None
    twice = first_repeat(students)
    if twice is not None:
        raise _row_error(rows[twice], "id", f"{students[twice].id!r} appears twice")
    return students


def _student(row_number: int, cells: dict[str, str]) -> Student:
    try:
        return Student.model_validate({key: value or None for key, value in cells.items()})
    except ValidationError as exc:
        column = str(exc.errors()[0]["loc"][0])
        raise _row_error(row_number, column, exc.errors()[0]["msg"]) from None


def _row_error(row_number: int, column: str, message: str) -> SpecError:
    return SpecError(
        f"roster row {row_number}, column {column}: {message}",
        field="file",
        details={"row": row_number, "column": column},
    )


def first_repeat(students: list[Student]) -> int | None:
    """The index of the first student whose id came before, if any."""
    seen: set[str] = set()
    for index, student in enumerate(students):
        if student.id in seen:
            return index
        seen.add(student.id)
    return None


def enrol(session: Session, course: Course, students: list[Student]) -> Enrolment:
    """Creates the missing users, gives every student the student role (kept if held)."""
    names = [student.id for student in students]
    existing = {user.name: user for user in session.scalars(select(User).where(User.name.in_(names)))}
    done = Enrolment()
    for student in students:
        user = existing.get(student.id)
        if user is None:
            user, token = create_user(session, student.id)
            done.created.append((user.name, token))
        # What the roster says of a person fills what is unknown, never overwrites it.
        user.full_name = user.full_name or student.name
        user.email = user.email or student.email
        add_role(session, course, user, STUDENT)
        done.enrolled.append(user.name)
    session.flush()
    return done
