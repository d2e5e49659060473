"""What the course routes accept: strict models, so a bad field is a 422 naming it."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field

from service.core.schema import Strict
from service.courses.roles import Role

COURSE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
USER_NAME = r"^[A-Za-z0-9_.@-]{1,64}$"
# "YYYY-MM-DD" arrives as a string: the strict base would refuse it as a date.
Day = Annotated[date, Field(strict=False, description="YYYY-MM-DD")]
Hours = Annotated[float, Field(ge=0, le=1e6, strict=False)]


class Budget(Strict):
    """Each student's device hours for the term (null: unlimited): service/courses/budgets.py."""

    gpu_hours: Hours | None = None
    cpu_hours: Hours | None = None
    week_gpu_hours: Hours | None = None


class CourseCreate(Strict):
    name: str = Field(pattern=COURSE_NAME, description="Letters, digits, - _ . (at most 64), e.g. DL-2026")
    term_end: Day = Field(description="The last day the course takes new jobs (YYYY-MM-DD)")
    instructors: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=100)
    budget: Budget | None = None
    share: Annotated[float, Field(gt=0, le=1e6, strict=False)] = 1.0


class CoursePatch(Strict):
    term_end: Day | None = None
    budget: Budget | None = None
    share: Annotated[float, Field(gt=0, le=1e6, strict=False)] | None = None


class MemberRole(Strict):
    role: Role


class Student(Strict):
    id: str = Field(pattern=USER_NAME, description="The user name to enrol (created when missing)")
    name: str | None = Field(None, max_length=255)
    email: str | None = Field(None, max_length=255)


class RosterJson(Strict):
    students: list[Student] = Field(max_length=2000)


class Grant(Strict):
    """Hours an instructor adds to one student's budget in the course (service/courses/budgets.py)."""

    user: str = Field(pattern=USER_NAME, description="The student's user name")
    gpu_hours: Hours = 0.0
    cpu_hours: Hours = 0.0
