"""Counting what a piece of code costs in SQL statements (a test of cost, not of time)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from service.core.db import Database


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements `db`'s engine runs meanwhile, each on one line."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
