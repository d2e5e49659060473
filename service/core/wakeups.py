"""Waking the processes that wait for a change, instead of having them poll the database.

On PostgreSQL a writer calls `notify` inside its transaction: `pg_notify` is delivered when
(and only if) the transaction commits, so a woken reader always finds what woke it. The
readers (the dispatcher, the API's event streams) hold one LISTEN connection per process.
A notification can still be lost (a listener reconnecting, a dropped connection), so every
reader also looks on a timer: a wake-up makes it faster, never correct.

SQLite has no notifications: there `notify` rings a doorbell (service/core/doorbell.py)
after the session's transaction commits, the ring carrying the transaction's payloads, and a
reader's `SqliteChanges.wait` sleeps on its own doorbell, then asks SQLite whether anyone
committed (`PRAGMA data_version`, which reads no table); only then does it run its queries.
A reader that filters as on PostgreSQL (the dispatcher) reads the payloads with
`SqliteChanges.wakes`. What commits without calling `notify` is seen at the reader's next
timer round.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import Insert, Table, Update, bindparam, event, func, insert, literal_column, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.core import doorbell

log = logging.getLogger(__name__)

JOB_EVENTS = "labtrain_job_events"  # an event was added to a job: {"job", "owner", "type", "status"}
WORKERS = "labtrain_workers"  # a worker came online (or changed what it offers)
MAX_PAYLOAD = 7900  # PostgreSQL refuses a payload of 8000 bytes or more
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")  # built once: every job event sends one


def notifies(url: str) -> bool:
    """Whether the database at `url` delivers notifications (PostgreSQL does, SQLite does not)."""
    return make_url(url).get_backend_name() == "postgresql"


class SqliteChanges:
    """Whether another connection committed to a SQLite database since the last look, and a
    doorbell to wait on for the next commit (polling every `fallback_s` where it cannot ring)."""

    def __init__(self, url: str, fallback_s: float = 0.02):
        path = make_url(url).database
        folder = doorbell.sqlite_folder(path)
        # Bound before the first look: a commit after it rings, however soon it comes.
        bell = doorbell.Doorbell(folder, fallback_s) if folder else None
        self.bell = bell if bell is not None and bell.ready else None  # None: polls every fallback_s
        self.fallback_s = fallback_s
        # Its own connection: data_version counts the commits of every other one.
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        self._version = self._read()

    def _read(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def changed(self) -> bool:
        version = self._read()
        changed, self._version = version != self._version, version
        return changed

    def wait(self, timeout: float) -> bool:
        """Whether a commit came within `timeout` seconds (after a ring, or at the timeout's end:
        a commit that rang no bell is found then)."""
        if self.bell is None:
            time.sleep(min(timeout, self.fallback_s))
        else:
            self.bell.wait(timeout)
        return self.changed()

    def wakes(self, timeout: float) -> list[Wake] | None:
        """The wake-ups rung within `timeout` seconds, as a Listener's ([]: none, and nothing
        committed); None for a commit whose wake-ups are unknown: one that rang none (found at
        the timeout's end), a ring that named none or may have been lost, or no doorbell."""
        if self.bell is None:
            time.sleep(min(timeout, self.fallback_s))
            return None if self.changed() else []
        rings = self.bell.take(timeout)
        changed = self.changed()  # after the rings: the next look counts from what they announced
        if not rings:
            return None if changed else []
        return ring_wakes(rings)

    def close(self) -> None:
        if self.bell is not None:
            self.bell.close()
        self._conn.close()


_RING = "labtrain_doorbell"  # session.info key: the folder to ring when the transaction commits


def notify(session: Session, channel: str, payload: dict[str, Any]) -> None:
    """Send `payload` to the listeners of `channel` when the session's transaction commits
    (on SQLite: ring the database's doorbells then, without a payload)."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        folder = doorbell.sqlite_folder(bind.url.database or "")
        if folder is not None:
            session.info.setdefault(_RING, (folder, []))[1].append([channel, payload])
        return
    if bind.dialect.name != "postgresql":
        return
    session.execute(_NOTIFY, {"channel": channel, "payload": payload_text(payload)})


def insert_and_notify(
    session: Session, table: Table, rows: list[dict[str, Any]], channel: str, payload: dict[str, Any]
) -> None:
    """`rows` inserted into `table`, and `payload` sent as `notify` sends it. On PostgreSQL in one
    statement, a round trip less (a job's submit, claim and end each write events and wake): the
    INSERT returns pg_notify's value for each row, and PostgreSQL delivers the same payload on a
    channel once a transaction."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        notify(session, channel, payload)
        return
    wake = {"channel": channel, "payload": payload_text(payload)}
    session.execute(_inserting_and_notifying(table), [{**row, **wake} for row in rows])


def update_and_notify(session: Session, statement: Update, channel: str, payload: dict[str, Any]) -> None:
    """`statement` (an UPDATE), and `payload` sent as `notify` sends it where it changed a row.
    On PostgreSQL in one statement, a round trip less: the UPDATE is a CTE that pg_notify reads."""
    if session.get_bind().dialect.name != "postgresql":
        if session.execute(statement).rowcount:
            notify(session, channel, payload)
        return
    written = statement.returning(literal_column("1")).cte("written")
    notifying = select(func.pg_notify(bindparam("channel"), bindparam("payload"))).select_from(written)
    session.execute(notifying, {"channel": channel, "payload": payload_text(payload)})


def payload_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))[:MAX_PAYLOAD]


@cache
def _inserting_and_notifying(table: Table) -> Insert:
    return insert(table).returning(func.pg_notify(bindparam("channel"), bindparam("payload")))


@event.listens_for(Session, "after_commit")
def _ring_after_commit(session: Session) -> None:
    # After the commit, so a woken reader always finds what woke it.
    ring = session.info.pop(_RING, None)
    if ring is not None:
        folder, wakes = ring
        doorbell.ring(folder, json.dumps(wakes, separators=(",", ":")).encode())


def ring_wakes(rings: list[bytes]) -> list[Wake] | None:
    """The wake-ups a doorbell's rings carry (`notify`'s payloads); None where one names none (a
    ring of `doorbell.ANY`, or one that may have been lost)."""
    found: list[Wake] = []
    for ring in rings:
        try:
            items = json.loads(ring)
        except ValueError:  # ANY, or cut short
            return None
        if not isinstance(items, list) or not all(isinstance(item, list) and len(item) == 2 for item in items):
            return None
        found += [Wake(str(channel), payload if isinstance(payload, dict) else {}) for channel, payload in items]
    return found


@event.listens_for(Session, "after_rollback")
def _no_ring_after_rollback(session: Session) -> None:
    session.info.pop(_RING, None)


def conninfo(url: str) -> str:
    """A SQLAlchemy URL as psycopg's connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Wake:
    channel: str
    payload: dict[str, Any]


def parse(channel: str, payload: str) -> Wake:
    try:
        data = json.loads(payload)
    except ValueError:
        data = {}
    return Wake(channel, data if isinstance(data, dict) else {})


class Listener:
    """A blocking LISTEN connection for one process (the dispatcher). `wait` returns the
    wake-ups that came within `timeout` seconds, or none; a lost connection is opened again
    on the next call, and until then `wait` just sleeps (the caller's timer round covers)."""

    def __init__(self, url: str, channels: tuple[str, ...]):
        self.url, self.channels = url, channels
        self._conn: psycopg.Connection | None = None
        self._retry_at = 0.0

    def wait(self, timeout: float) -> list[Wake]:
        conn = self._connection()
        if conn is None:
            time.sleep(timeout)
            return []
        try:
            # The first one within the timeout, then whatever else has come, without waiting.
            notes = [*conn.notifies(timeout=timeout, stop_after=1)]
            if notes:
                notes += conn.notifies(timeout=0)
        except (psycopg.Error, OSError):
            log.warning("lost the notification connection; polling until it is back", exc_info=True)
            self.close()
            return []
        return [parse(note.channel, note.payload) for note in notes]

    def _connection(self) -> psycopg.Connection | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() < self._retry_at:
            return None
        try:
            conn = psycopg.connect(conninfo(self.url), autocommit=True, connect_timeout=5)
            for channel in self.channels:
                conn.execute(f"LISTEN {channel}")  # channel names are our constants, not input
        except psycopg.Error:
            log.warning("cannot listen for notifications; polling until the database answers", exc_info=True)
            self._retry_at = time.monotonic() + 2.0
            return None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
