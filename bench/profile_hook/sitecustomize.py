"""Counts the SQL statements of every process of a deployment that bench/profile_job_path.py
starts: its folder is put first on their PYTHONPATH, so Python imports this at start-up in the
API, the dispatcher, the worker and the processes they fork or start. Each statement (with
BEGIN, COMMIT and the pool's pings) becomes one line of a file per process (line-buffered, so a process
killed at the end loses nothing): time, process role, thread, database, statement kind, and
the project functions that issued it. Does nothing unless LABTRAIN_BENCH_SQL_LOG names a folder.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time

FOLDER = os.environ.get("LABTRAIN_BENCH_SQL_LOG")
PROJECT = (f"{os.sep}service{os.sep}", f"{os.sep}workers{os.sep}")
SKIP = (f"core{os.sep}db.py", "sitecustomize.py")
TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)
CALL = re.compile(r"^\s*SELECT\s+(\w+)\s*\(", re.IGNORECASE)

_state: dict[str, object] = {"pid": None, "file": None}
_lock = threading.Lock()


def role() -> str:
    """`api`, `dispatcher`, `worker`, `up`, ... from `python -m service ROLE`; `+child` in a
    process forked from it (a Celery pool process, a gunicorn worker)."""
    words = [word for word in sys.argv[1:] if not word.startswith("-")]
    name = words[0] if words else os.path.basename(sys.argv[0] or "python")
    return name if os.getpid() == _STARTED_PID else f"{name}+child"


def kind(statement: str) -> str:
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "?"
    if verb == "PRAGMA":
        return statement.strip().split("(")[0].split("=")[0].strip().upper()
    call = CALL.match(statement)
    if call and not TABLE.search(statement):
        return f"SELECT {call.group(1)}()"
    table = TABLE.search(statement)
    return f"{verb} {table.group(1)}" if table else verb


def callers() -> str:
    """The nearest three project functions on the stack, innermost first."""
    names, frame = [], sys._getframe(2)
    while frame is not None and len(names) < 3:
        path = frame.f_code.co_filename
        if any(part in path for part in PROJECT) and not path.endswith(SKIP):
            module = os.path.splitext(os.path.basename(path))[0]
            names.append(f"{module}.{frame.f_code.co_name}")
        frame = frame.f_back
    return "<".join(names) or "-"


def write(database: str, what: str) -> None:
    line = f"{time.time():.6f}\t{role()}\t{threading.current_thread().name}\t{database}\t{what}\t{callers()}\n"
    with _lock:
        if _state["pid"] != os.getpid():  # a forked child writes a file of its own
            path = os.path.join(FOLDER, f"sql-{os.getpid()}.tsv")
            _state["pid"], _state["file"] = os.getpid(), open(path, "a", buffering=1)  # noqa: SIM115
        _state["file"].write(line)


def install() -> None:
    """SQLite: every statement its library runs, on every connection (SQLAlchemy's, the broker's,
    the wake-up checks' own), with the BEGIN and COMMIT it issues. PostgreSQL: SQLAlchemy's
    statements, transactions and the pool's pre-ping on each checkout."""
    import sqlite3
    import sqlite3.dbapi2

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    connect = sqlite3.dbapi2.connect

    def traced(database, *args, **kwargs):
        conn = connect(database, *args, **kwargs)
        name = os.path.basename(str(database).removeprefix("file:").split("?")[0])
        conn.set_trace_callback(lambda text: write(name, kind(text)))
        return conn

    sqlite3.connect = sqlite3.dbapi2.connect = traced

    def postgres(conn) -> str | None:
        return None if conn.engine.url.get_backend_name() == "sqlite" else conn.engine.url.database or "?"

    def statement(conn, _cursor, text, _parameters, _context, executemany) -> None:
        if name := postgres(conn):
            write(name, kind(text) + (" (many)" if executemany else ""))

    def sent(conn) -> bool:
        # Outside a transaction (isolation level AUTOCOMMIT: Database.reads) SQLAlchemy still
        # says it begins and commits, but nothing goes to the server.
        return not getattr(conn.connection.driver_connection, "autocommit", False)

    def begin(conn) -> None:
        if (name := postgres(conn)) and sent(conn):
            write(name, "BEGIN")

    def commit(conn) -> None:
        if (name := postgres(conn)) and sent(conn):
            write(name, "COMMIT")

    def checkout(dbapi_connection, record, _proxy) -> None:
        pool = getattr(record, "_ConnectionRecord__pool", None)
        name = getattr(getattr(dbapi_connection, "info", None), "dbname", None)
        if name and getattr(pool, "_pre_ping", False):
            write(name, "SELECT 1 (pool pre-ping)")

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "begin", begin)
    event.listen(Engine, "commit", commit)
    event.listen(Pool, "checkout", checkout)


_STARTED_PID = os.getpid()
if FOLDER:
    install()
