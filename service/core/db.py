"""Engine and session factory. Each process (API, each worker child) makes its own."""

from __future__ import annotations

import math
import select
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from service.core.sqlite_writer import WriterLockedConnection
from service.core.sqlite_writer import before_cursor_execute as writer_lock_before_statement

PING_IDLE_S = 10.0  # a pooled PostgreSQL connection unused this long is pinged before use


def make_engine(url: str, *, null_pool: bool = False) -> Engine:
    """An engine for `url`. SQLite gets WAL, a busy timeout and a writer lock that wakes the next
    writer at once (service/core/sqlite_writer.py), so API and workers can share it."""
    kwargs: dict = {"future": True}
    if null_pool:
        kwargs["poolclass"] = NullPool
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False, "factory": WriterLockedConnection}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", writer_lock_before_statement)
    else:
        event.listen(engine, "checkin", _note_idle)
        event.listen(engine, "checkout", partial(_check_alive, engine.dialect))
    return engine


def _note_idle(_dbapi_connection, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _check_alive(dialect, dbapi_connection, record, _proxy) -> None:
    """Instead of a ping on each checkout (a round trip, a fifth of all statements): a server that
    closed the connection (restarted, or ended its backend) has left its socket readable, which a
    poll sees at no cost; a connection idle for PING_IDLE_S, which a firewall may have dropped
    without a word, is pinged. A dead one is replaced by a new one (the pool's DisconnectionError)."""
    idle = time.monotonic() - record.info.get("idle_since", math.inf)  # a new connection: -inf
    try:
        poll = select.poll()  # poll, not select: no limit on the descriptor's number
        poll.register(dbapi_connection.fileno(), select.POLLIN)
        if poll.poll(0):
            raise DisconnectionError("the server closed the connection")
        if idle > PING_IDLE_S:
            dialect.do_ping(dbapi_connection)
    except DisconnectionError:
        raise
    except Exception as exc:  # closed, or the ping failed
        raise DisconnectionError(str(exc)) from exc


def sqlite_pragmas(dbapi_connection, _record) -> None:
    """Each SQLite connection's settings (the database's and the serverless broker's): a
    write-ahead log, synced at checkpoints rather than at each commit (a crash of any process
    loses nothing; a power cut may lose the last commits), and a writer waits for another."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class WriteInReads(RuntimeError):
    """A write on a session of Database.reads: a bug, which a transaction's session would have
    rolled back."""


def _refuse_writes(_conn, _cursor, statement: str, *_args) -> None:
    if statement.lstrip()[:6].upper() != "SELECT":
        raise WriteInReads(f"a read-only session may only SELECT, not: {statement[:80]}")


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, null_pool: bool = False):
        self.url = url
        self.engine = make_engine(url, null_pool=null_pool)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For reads (an event stream's, a view marked reads_only): on PostgreSQL outside a transaction, so
        # that neither its BEGIN nor the ROLLBACK when the session closes is a round trip; each
        # statement sees the database as of its own moment. A write there is refused, since it
        # would commit alone. SQLite begins no transaction for a read.
        reads_engine = self.engine
        if not url.startswith("sqlite"):
            reads_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            event.listen(reads_engine, "before_cursor_execute", _refuse_writes)
        self.reads = sessionmaker(reads_engine, expire_on_commit=False)
        alone = self.engine if url.startswith("sqlite") else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._statements_alone = sessionmaker(alone, expire_on_commit=False)

    def session(self) -> AbstractContextManager[Session]:
        """A session committed on success and rolled back on error."""
        return _committed(self.sessions)

    def each_statement_alone(self) -> AbstractContextManager[Session]:
        """On PostgreSQL, a session whose statements each commit alone: for writes that are each
        one statement (a worker's claim, an outcome without a model), which then cost one round
        trip, not three (BEGIN, the statement, COMMIT). What ran before an error stays. On SQLite,
        where a commit is no round trip, a transaction as `session`'s."""
        return _committed(self._statements_alone)

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _committed(sessions: sessionmaker) -> Iterator[Session]:
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def one_session(url: str) -> Iterator[Session]:
    """A session on its own short-lived engine: for one command-line action."""
    database = Database(url)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()
