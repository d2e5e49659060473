"""One writer at a time on an SQLite file, woken the moment the last one commits.

SQLite lets one connection write at a time; another that wants to write sleeps in its busy
handler and tries again after 1, 2, 5, 10, 15... ms, whenever the lock was let go. In a burst
of small jobs the API's submits, the workers' claims, refills and outcomes all write, and a
fifth of a worker's time went to those sleeps. Here each connection takes an exclusive `flock`
on a file beside the database (`<database>-writer`) before its transaction's first write and
lets it go after its commit or rollback: a writer waits in the kernel, which wakes it at once.

- A connection holds the lock only between its first write and its commit or rollback (its
  pool's reset on return is a rollback); a process that dies lets go of it with its descriptors.
- A thread that already holds the lock through one connection and writes through another (a
  nested session) does not wait for itself: that write waits in SQLite's busy handler, as any
  write did before.
- A forked child closes its copies of the lock's descriptors (a copy would keep the lock held
  after its parent let go of it or died); the parent's own hold is not touched.
- A transaction already begun without it (a savepoint, a write this module did not see) takes it
  only if it is free: it may hold SQLite's lock, which the holder would wait for.
- A commit that fails keeps it until the rollback that follows.
- A writer waits for the lock as long as its holder holds it, as a PostgreSQL writer waits for a
  row's lock; SQLite's busy timeout (30 s) no longer ends that wait. A holder that is alive holds
  it only from its first write to its commit; one that dies lets go.
- Reads never take it: SQLite's write-ahead log lets them run beside a writer.
- The file is opened read-only (all `flock` needs), so one another user made serves too; where
  it cannot be opened at all, that connection's writers wait in the busy handler, as before.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import weakref

log = logging.getLogger(__name__)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")  # the statements sqlite3 begins a transaction for
_holders: dict[str, WriterLockedConnection] = {}  # lock file -> the connection of this process that holds it
_open_locks: weakref.WeakSet[WriterLockedConnection] = weakref.WeakSet()


class WriterLockedConnection(sqlite3.Connection):
    """An sqlite3 connection that takes its database's writer lock before it writes
    (`before_statement`) and lets it go after its commit, rollback or close."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self._lock_path = lock_path(str(database))
        self._lock_fd: int | None = None
        self._held = False

    def before_statement(self, statement: str) -> None:
        if self._held or self._lock_path is None or self.isolation_level is None:
            return  # held already, a database in memory, or autocommit (no commit would let go)
        if statement.lstrip()[:6].upper() not in _WRITES:
            return
        holder = _holders.get(self._lock_path)
        if holder is not None and holder._held_by_this_thread():
            return  # a nested write of the holding thread: SQLite's busy handler decides
        if self._lock_fd is None and not self._open_lock_file():
            return
        if self.in_transaction:
            # A transaction begun without the lock (a write this check did not see, a savepoint)
            # may hold SQLite's lock already, which the lock's holder may be waiting for: waiting
            # here could deadlock both, so it takes the lock only if it is free.
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
        else:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._held, self._thread = True, threading.get_ident()
        _holders[self._lock_path] = self

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._let_go_unless_open()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._let_go_unless_open()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._let_go()
            self._close_lock_file()

    def _open_lock_file(self) -> bool:
        # Read-only is enough for flock: a lock file another user made (an admin's command run
        # as root) still serves. One that cannot be opened leaves SQLite's busy handler to it.
        try:
            self._lock_fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            log.warning("no writer lock for %s (%s): writers wait in SQLite's busy handler", self._lock_path, exc)
            self._lock_path = None
            return False
        _open_locks.add(self)
        return True

    def _held_by_this_thread(self) -> bool:
        return self._held and self._thread == threading.get_ident()

    def _let_go_unless_open(self) -> None:
        # A commit that failed leaves its transaction open, and SQLite's lock held: so is this,
        # until the rollback that follows.
        if not self.in_transaction:
            self._let_go()

    def _let_go(self) -> None:
        if not self._held:
            return
        self._held = False
        if _holders.get(self._lock_path) is self:
            del _holders[self._lock_path]
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _close_lock_file(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._held = False


def lock_path(database: str) -> str | None:
    """The writer lock's file for an SQLite database given as sqlite3.connect takes it; None for
    one in memory, which no other process can write, or named by a URI (the service names its
    files by path)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer"


def before_cursor_execute(_conn, cursor, statement: str, *_args) -> None:
    """The engine's hook: each statement passes through its connection's `before_statement`."""
    connection = cursor.connection
    if isinstance(connection, WriterLockedConnection):
        connection.before_statement(statement)


def _forget_in_child() -> None:
    # A child's copy of a descriptor shares its parent's lock: close it, never unlock it.
    for connection in list(_open_locks):
        connection._close_lock_file()
    _open_locks.clear()
    _holders.clear()


os.register_at_fork(after_in_child=_forget_in_child)
