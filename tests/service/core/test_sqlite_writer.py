"""The SQLite writer lock (service/core/sqlite_writer.py): held from a transaction's first write
to its end, let go by every way a transaction ends, and never left held by a child or a dead
process. Each check looks at the real lock file with a non-blocking `flock` of its own."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest
from sqlalchemy import text

from service.core.db import Database
from service.core.sqlite_writer import WriterLockedConnection, lock_path

pytestmark = pytest.mark.fast  # no server: SQLite files and processes of its own


@pytest.fixture
def database(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/lab.db")
    with db.session() as session:
        session.execute(text("CREATE TABLE rows (n INTEGER)"))
    yield db
    db.dispose()


def held(db: Database) -> bool:
    """Whether some open descriptor holds the database's writer lock."""
    fd = os.open(lock_path(db.engine.url.database), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_transaction_holds_the_lock_from_its_first_write_to_its_commit(database):
    with database.session() as session:
        session.execute(text("SELECT count(*) FROM rows"))
        assert not held(database)  # a read takes nothing
        session.execute(text("INSERT INTO rows VALUES (1)"))
        assert held(database)
        session.execute(text("UPDATE rows SET n = 2"))
        assert held(database)
    assert not held(database)


def test_a_rollback_an_error_and_a_session_closed_unfinished_let_it_go(database):
    with pytest.raises(RuntimeError), database.session() as session:
        session.execute(text("INSERT INTO rows VALUES (1)"))
        raise RuntimeError("the caller fails mid-transaction")
    assert not held(database)

    session = database.sessions()
    session.execute(text("DELETE FROM rows"))
    assert held(database)
    session.close()  # no commit: the close rolls its transaction back
    assert not held(database)

    with database.session() as session:
        assert session.execute(text("SELECT count(*) FROM rows")).scalar() == 0
        with pytest.raises(Exception, match="no such table"):
            session.execute(text("INSERT INTO missing VALUES (1)"))
    assert not held(database)


def run_script(source: str, database: Database, *args: str) -> subprocess.Popen:
    """`source` in a Python process of its own, given the database's URL and `args`; its stdout read
    line by line."""
    return subprocess.Popen(
        [sys.executable, "-c", source, str(database.engine.url), *args], stdout=subprocess.PIPE, text=True
    )


WRITER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import text
    from service.core.db import Database
    db = Database(sys.argv[1])
    print("started", flush=True)
    with db.session() as session:
        session.execute(text("INSERT INTO rows VALUES (2)"))
    print("wrote", flush=True)
    """
)


def test_a_write_waits_for_the_holder_and_goes_on_when_it_commits(database):
    session = database.sessions()
    session.execute(text("INSERT INTO rows VALUES (1)"))
    writer = run_script(WRITER, database)
    try:
        assert writer.stdout.readline().strip() == "started"
        # The writer waits for the lock (SQLite's own would hold it too: what this checks is that
        # the two together let it go on once the holder commits).
        session.commit()
        session.close()
        assert writer.stdout.readline().strip() == "wrote"
        assert writer.wait(60) == 0
    finally:
        writer.kill()
    with database.session() as check:
        assert check.execute(text("SELECT count(*) FROM rows")).scalar() == 2


HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from sqlalchemy import text
    from service.core.db import Database
    session = Database(sys.argv[1]).sessions()
    session.execute(text("INSERT INTO rows VALUES (1)"))
    print("holding", flush=True)
    if sys.argv[2:] == ["fork"] and os.fork() == 0:  # a child with a copy of every descriptor
        print("child", os.getpid(), flush=True)
    time.sleep(600)
    """
)


def test_a_process_killed_while_it_holds_the_lock_lets_it_go(database):
    holder = run_script(HOLDER, database)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert held(database)
    finally:
        holder.kill()
        holder.wait()
    assert not held(database)
    with database.session() as session:  # and the next writer writes
        session.execute(text("INSERT INTO rows VALUES (2)"))
        assert session.execute(text("SELECT count(*) FROM rows")).scalar() == 1


def test_a_child_forked_by_the_holder_does_not_keep_the_lock_when_its_parent_dies(database):
    holder = run_script(HOLDER, database, "fork")
    child = None
    try:
        assert holder.stdout.readline().strip() == "holding"
        child = int(holder.stdout.readline().split()[1])
        assert held(database)
        holder.kill()
        holder.wait()
        assert not held(database)  # the child lives on, its copy of the lock's descriptor closed
        os.kill(child, 0)
    finally:
        holder.kill()
        if child is not None:
            os.kill(child, signal.SIGKILL)


def returns(call, timeout: float = 60) -> bool:
    """Whether `call` returns within `timeout` (run on a thread of its own: a wait for the lock
    that would never end fails the test instead of hanging it)."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def test_a_thread_that_holds_it_does_not_wait_for_itself(tmp_path):
    first = WriterLockedConnection(str(tmp_path / "lab.db"), check_same_thread=False)
    second = WriterLockedConnection(str(tmp_path / "lab.db"), check_same_thread=False)
    first.execute("CREATE TABLE rows (n INTEGER)")
    seen = {}

    def nested_write() -> None:  # on one thread: a write through a second connection
        first.before_statement("INSERT INTO rows VALUES (1)")
        first.execute("INSERT INTO rows VALUES (1)")
        second.before_statement("INSERT INTO rows VALUES (2)")  # returns: it would wait for itself
        seen["first"], seen["second"] = first._held, second._held

    assert returns(nested_write)
    assert seen == {"first": True, "second": False}
    first.commit()
    second.before_statement("INSERT INTO rows VALUES (2)")
    assert second._held
    second.rollback()
    assert not second._held
    first.close()
    second.close()


def test_no_lock_for_a_database_in_memory_or_in_autocommit(tmp_path):
    assert lock_path(":memory:") is None
    assert lock_path("file:lab?mode=memory") is None
    autocommit = WriterLockedConnection(str(tmp_path / "lab.db"), isolation_level=None)
    autocommit.before_statement("INSERT INTO rows VALUES (1)")
    assert not autocommit._held  # no commit would come to let it go
    autocommit.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to write as another user")
def test_a_lock_file_another_user_made_still_serves():
    folder = tempfile.mkdtemp()  # not under pytest's folder, which only its owner may enter
    try:
        os.chmod(folder, 0o777)
        url = f"sqlite:///{folder}/lab.db"
        db = Database(url)
        with db.session() as session:  # root makes the database, and the lock file with its first write
            session.execute(text("CREATE TABLE rows (n INTEGER)"))
            session.execute(text("INSERT INTO rows VALUES (0)"))
        db.dispose()
        for name in os.listdir(folder):
            os.chmod(os.path.join(folder, name), 0o644 if name == "lab.db-writer" else 0o666)
        nobody = pwd.getpwnam("nobody")
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # a writer running as another user, with what this process has imported
            said = b"failed"
            try:
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                with Database(url).session() as session:
                    session.execute(text("INSERT INTO rows VALUES (1)"))
                    said = b"held" if session.connection().connection.dbapi_connection._held else b"not held"
            finally:
                os.write(write, said)
                os._exit(0)
        os.close(write)
        said = os.read(read, 100)
        os.waitpid(child, 0)
        os.close(read)
        assert said == b"held"
    finally:
        shutil.rmtree(folder)


def test_without_a_lock_file_a_writer_writes_as_before(tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    db = Database(f"sqlite:///{folder}/lab.db")
    with db.session() as session:
        session.execute(text("CREATE TABLE rows (n INTEGER)"))
    os.mkdir(lock_path(str(folder / "lab.db")))  # a folder in its place: the file cannot be opened for it
    try:
        with db.session() as session:
            session.execute(text("INSERT INTO rows VALUES (1)"))
        with db.session() as session:
            assert session.execute(text("SELECT count(*) FROM rows")).scalar() == 1
        assert "no writer lock" in caplog.text
    finally:
        db.dispose()


def test_a_failed_commit_keeps_the_lock_until_its_rollback(tmp_path):
    connection = WriterLockedConnection(str(tmp_path / "lab.db"))
    connection.execute("CREATE TABLE rows (n INTEGER)")
    connection.before_statement("INSERT INTO rows VALUES (1) RETURNING n")
    unread = connection.execute("INSERT INTO rows VALUES (1) RETURNING n")  # a statement still running
    with pytest.raises(sqlite3.OperationalError):
        connection.commit()
    assert connection.in_transaction and connection._held  # SQLite's lock is still held: so is this
    unread.close()
    connection.rollback()
    assert not connection._held
    connection.close()


def test_a_transaction_begun_without_the_lock_does_not_wait_for_its_holder(database):
    holder = run_script(HOLDER, database)
    connection = WriterLockedConnection(database.engine.url.database, check_same_thread=False)
    try:
        assert holder.stdout.readline().strip() == "holding"
        connection.execute("SAVEPOINT unseen")  # begun by a statement the lock does not look at
        assert returns(lambda: connection.before_statement("INSERT INTO rows VALUES (2)"))
        assert not connection._held  # it may hold SQLite's lock, which the holder would wait for
    finally:
        holder.kill()
        holder.wait()
        connection.close()
    fresh = WriterLockedConnection(database.engine.url.database)
    fresh.execute("SAVEPOINT unseen")
    fresh.before_statement("INSERT INTO rows VALUES (2)")
    assert fresh._held  # free: taken
    fresh.rollback()
    assert not fresh._held
    fresh.close()
