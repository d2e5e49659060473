"""The roles a user may hold in a course; a user may hold several, in several courses."""

from __future__ import annotations

from typing import Literal

INSTRUCTOR = "instructor"
TA = "ta"
STUDENT = "student"
ROLES = (INSTRUCTOR, TA, STUDENT)
STAFF = (INSTRUCTOR, TA)  # they see every job of their course

Role = Literal["instructor", "ta", "student"]
