"""The PostgreSQL pool without a ping per checkout: a connection the server closed (a restart,
an ended backend) is still replaced before use."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from service.core.db import Database
from tests.support.sql import statements


def backend(db: Database) -> int:
    with db.session() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_the_server_closed_is_replaced_with_no_ping_on_each_checkout(settings, db):
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to close a connection")
    with statements(db) as seen:
        pids = {backend(db) for _ in range(3)}
    assert len(pids) == 1 and seen == ["SELECT pg_backend_pid()"] * 3  # one pooled connection, no pings
    (pid,) = pids
    other = Database(settings.database_url)
    try:
        with other.session() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the backend has gone
            with other.session() as session:
                gone = not session.execute(
                    text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).first()
            if gone:
                break
            time.sleep(0.05)
    finally:
        other.dispose()
    assert backend(db) != pid  # a new connection, and no error
