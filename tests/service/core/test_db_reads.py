"""Database.reads: the sessions of an event stream's reads and of the views marked `reads_only`, which on
PostgreSQL open no transaction (no BEGIN and no ROLLBACK a round trip each) and refuse a write,
which would commit on its own there."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from service.core.db import WriteInReads
from service.core.orm import User


def _in_transaction(session) -> bool:
    status = session.connection().connection.driver_connection.info.transaction_status
    return status != psycopg.pq.TransactionStatus.IDLE


def test_a_read_session_opens_no_transaction_and_refuses_a_write(settings, db):
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite begins no transaction for a read")
    with db.reads() as session:
        assert session.execute(text("SELECT 1")).scalar_one() == 1
        assert not _in_transaction(session)  # no BEGIN went to the server
        assert session.query(User).count() >= 0  # the ORM's reads too
        assert not _in_transaction(session)
    with db.sessions() as session:  # a plain session begins one, as before
        session.execute(text("SELECT 1"))
        assert _in_transaction(session)
    with pytest.raises(WriteInReads, match="may only SELECT"), db.reads() as session:
        session.execute(text("CREATE TABLE never_made (x int)"))
    with db.sessions() as session:
        assert session.execute(text("SELECT to_regclass('never_made')")).scalar() is None
    with db.reads() as session:  # the connection it refused on is back in the pool, still reading
        assert session.execute(text("SELECT 2")).scalar_one() == 2
